// The AI SDK v6 UI message stream, read by hand: Server-Sent Events → chunks → the parts of one
// assistant message. MessageFolder folds chunks the way the server's MessageBuilder
// (agent/sink.py) does, so what is drawn live is what a reload shows from storage.

/** Each chunk of an SSE response body, in order, until `data: [DONE]` or the end. */
export async function* sseChunks(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
        const data = event
          .split(/\r?\n/)
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (!data) continue; // a comment (keep-alive) or an empty event
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  } finally {
    reader.releaseLock();
  }
}

const revisions = new WeakMap();
/** How many times a part changed: views redraw a part only when this moves. */
export const revision = (part) => revisions.get(part) || 0;
/** Mark a part changed (the folder does it; so does a view that records an answer in it). */
export const touch = (part) => revisions.set(part, revision(part) + 1);

/** Folds chunks into a UIMessage ({id, role: "assistant", parts, metadata}). */
export class MessageFolder {
  constructor(message = { id: "", role: "assistant", parts: [], metadata: {} }) {
    this.message = message;
    message.parts ||= [];
    message.metadata ||= {};
    this.open = new Map(); // text/reasoning chunk id → part
    this.tools = new Map(); // toolCallId → part
    for (const part of message.parts) if (part.toolCallId) this.tools.set(part.toolCallId, part);
    this.error = null; // the stream's error chunk
    this.finishReason = null;
    this.aborted = false;
  }

  get parts() {
    return this.message.parts;
  }

  apply(chunk) {
    const kind = chunk.type;
    if (kind === "start") {
      if (chunk.messageId) this.message.id = chunk.messageId;
      if (chunk.messageMetadata) Object.assign(this.message.metadata, chunk.messageMetadata);
    } else if (kind === "start-step") {
      this.parts.push({ type: "step-start" });
    } else if (kind === "text-start" || kind === "reasoning-start") {
      const part = { type: kind.split("-")[0], text: "", state: "streaming" };
      this.open.set(chunk.id, part);
      this.parts.push(part);
    } else if (kind === "text-delta" || kind === "reasoning-delta") {
      const part = this.open.get(chunk.id);
      if (part) {
        part.text += chunk.delta;
        touch(part);
      }
    } else if (kind === "text-end" || kind === "reasoning-end") {
      const part = this.open.get(chunk.id);
      this.open.delete(chunk.id);
      if (part) {
        part.state = "done";
        touch(part);
      }
    } else if (kind === "tool-input-start") {
      this.tool(chunk, "input-streaming", { inputText: "" });
    } else if (kind === "tool-input-delta") {
      const part = this.tools.get(chunk.toolCallId);
      if (part) {
        part.inputText = (part.inputText || "") + chunk.inputTextDelta;
        touch(part);
      }
    } else if (kind === "tool-input-available") {
      this.tool(chunk, "input-available", { input: chunk.input });
    } else if (kind === "tool-input-error") {
      this.tool(chunk, "output-error", { input: chunk.input, errorText: chunk.errorText });
    } else if (kind === "tool-output-available") {
      // A preliminary output (a command's output while it runs) is replaced by the next one.
      this.tool(chunk, "output-available", { output: chunk.output, preliminary: chunk.preliminary || undefined });
    } else if (kind === "tool-output-error") {
      this.tool(chunk, "output-error", { errorText: chunk.errorText });
    } else if (kind === "tool-approval-request") {
      this.tool(chunk, "approval-requested", { approval: { id: chunk.approvalId } });
    } else if (kind === "tool-output-denied") {
      this.tool(chunk, "output-denied", {});
    } else if (kind.startsWith("data-")) {
      this.data(chunk);
    } else if (kind === "error") {
      this.error = chunk.errorText || "The turn failed";
    } else if (kind === "abort") {
      this.aborted = true;
    } else if (kind === "finish" || kind === "message-metadata") {
      if (kind === "finish") this.finishReason = chunk.finishReason || null;
      if (chunk.messageMetadata) Object.assign(this.message.metadata, chunk.messageMetadata);
    }
  }

  tool(chunk, state, fields) {
    let part = this.tools.get(chunk.toolCallId);
    if (!part) {
      part = { type: `tool-${chunk.toolName || "unknown"}`, toolCallId: chunk.toolCallId, state };
      this.tools.set(chunk.toolCallId, part);
      this.parts.push(part);
    }
    part.state = state;
    delete part.preliminary; // unset by every update, as the AI SDK client does
    if (state === "output-error") delete part.output;
    for (const [key, value] of Object.entries(fields)) {
      if (value !== undefined || key === "output") part[key] = value;
    }
    touch(part);
  }

  data(chunk) {
    if (chunk.transient) return;
    const part = { type: chunk.type, data: chunk.data };
    if (chunk.id !== undefined) {
      part.id = chunk.id;
      const at = this.parts.findIndex((p) => p.type === chunk.type && p.id === chunk.id);
      if (at >= 0) {
        this.parts[at] = part;
        return;
      }
    }
    this.parts.push(part);
  }
}

/** The tool name of a tool part ("tool-bash" → "bash"). */
export const toolName = (part) => part.type.slice(5);
export const isTool = (part) => part.type.startsWith("tool-");
