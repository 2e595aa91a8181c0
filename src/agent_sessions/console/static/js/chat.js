// One chat: its stored messages, the composer, and the live turn streamed as it runs.
//
// A turn's response is the UI message stream; it is folded chunk by chunk (stream.js) and the
// reply redrawn at most once a frame. After a reload, a live turn is picked up with
// GET /api/chat/{chatId}/stream from chunk 0 (its whole reply so far, then what follows). A
// connection that drops before the turn ends is picked up again from the last chunk read.
// Answers to approvals and questions re-post the assistant message, as the AI SDK does, and
// its continuation is folded into that same message.

import { ApiError, api } from "./api.js";
import { announce, h } from "./dom.js";
import { MessageView } from "./parts.js";
import { MessageFolder, isTool, sseChunks, touch } from "./stream.js";

const TAIL_INDEX = "x-workflow-stream-tail-index";
const MAX_RECONNECTS = 5;
let modelsCache = null;

function newId(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class ChatPanel {
  constructor(sessionId, chatId, { onTurnChange = () => {} } = {}) {
    this.sessionId = sessionId;
    this.chatId = chatId;
    this.onTurnChange = onTurnChange;
    this.destroyed = false;
    this.controller = new AbortController();
    this.views = new Map(); // message id → MessageView
    this.messages = [];
    this.live = false;

    // aria-live off: a streaming reply is redrawn many times a second; its end is announced.
    this.log = h("div", { class: "messages", role: "log", "aria-live": "off", "aria-label": "Conversation", tabindex: "0" });
    this.input = h("textarea", { id: "message", rows: "3", placeholder: "Ask the agent… (Enter sends, Shift+Enter for a new line)" });
    this.model = h("select", { id: "model" });
    this.send = h("button", { type: "submit", class: "primary", id: "send" }, "Send");
    this.stop = h("button", { type: "button", class: "danger", id: "stop", hidden: true, onclick: () => this.stopTurn() }, "Stop");
    this.status = h("p", { class: "chat-status muted", role: "status" });
    const form = h(
      "form",
      { class: "composer", "aria-label": "Composer" },
      h("label", { for: "message", class: "sr-only" }, "Message"),
      this.input,
      h(
        "div",
        { class: "composer-row" },
        h("label", { for: "model" }, "Model"),
        this.model,
        h("span", { class: "spacer" }),
        this.stop,
        this.send,
      ),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendMessage();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.sendMessage();
      }
    });
    this.el = h("section", { class: "chat", "aria-label": "Chat" }, this.log, this.status, form);
  }

  destroy() {
    this.destroyed = true;
    this.controller.abort();
  }

  handlers() {
    return {
      onApproval: (part, approved, reason) => this.answerApproval(part, approved, reason),
      onAnswer: (part, output) => this.answerQuestion(part, output),
    };
  }

  async load() {
    const [detail, models] = await Promise.all([
      api.getChat(this.sessionId, this.chatId),
      modelsCache || (modelsCache = api.models().catch(() => null)),
    ]);
    if (this.destroyed) return;
    this.chat = detail.chat;
    this.drawModels(models, detail.messages);
    this.drawMessages(detail.messages);
    api.markRead(this.sessionId, this.chatId).catch(() => {});
    if (detail.isStreaming) await this.resume();
  }

  drawModels(models, messages) {
    const list = (models && models.models) || [];
    // The model of the chat's last reply (a turn may name its own), else the chat's.
    const last = [...messages].reverse().find((m) => m.role === "assistant" && m.metadata?.model);
    const chosen = last?.metadata.model || this.chat.modelId || (models && models.defaultModelId) || "";
    const options = list.filter((m) => m.available || m.id === chosen);
    if (chosen && !options.some((m) => m.id === chosen)) options.unshift({ id: chosen });
    this.model.replaceChildren(
      ...options.map((m) => h("option", { value: m.id }, m.demo ? `${m.id} (demo)` : m.id)),
    );
    this.model.value = chosen;
  }

  drawMessages(messages) {
    this.messages = messages;
    this.views.clear();
    this.log.replaceChildren();
    if (!messages.length) this.log.append(h("p", { class: "empty muted" }, "No messages yet. Say what the agent should do."));
    for (const message of messages) this.addView(message);
    this.scrollDown(true);
  }

  addView(message) {
    this.log.querySelector(".empty")?.remove();
    const view = new MessageView(message, this.handlers());
    this.views.set(message.id, view);
    this.log.append(view.el);
    return view;
  }

  remember(message) {
    const at = this.messages.findIndex((m) => m.id === message.id);
    if (at >= 0) this.messages[at] = message;
    else this.messages.push(message);
  }

  scrollDown(force = false) {
    const near = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 120;
    if (force || near) this.log.scrollTop = this.log.scrollHeight;
  }

  setLive(live) {
    this.live = live;
    this.stop.hidden = !live;
    this.stop.disabled = false;
    this.send.disabled = live;
    this.el.classList.toggle("is-live", live);
    this.onTurnChange(live);
  }

  async sendMessage() {
    const text = this.input.value.trim();
    if (!text || this.live) return;
    const message = { id: newId("u-"), role: "user", parts: [{ type: "text", text }] };
    this.input.value = "";
    this.remember(message);
    this.addView(message);
    this.scrollDown(true);
    await this.run(() =>
      api.sendMessage(
        { id: this.chatId, sessionId: this.sessionId, model: this.model.value || undefined, messages: [message] },
        this.controller.signal,
      ),
    );
  }

  /** Pick up the chat's live turn from its first chunk (after a reload, or a new tab). */
  async resume() {
    await this.run(() => api.resumeStream(this.chatId, 0, this.controller.signal), { resumed: true });
  }

  async stopTurn() {
    this.stop.disabled = true;
    this.status.textContent = "Stopping…";
    try {
      await api.stop(this.chatId);
    } catch (err) {
      this.status.textContent = `Could not stop: ${err.message}`;
      this.stop.disabled = false;
    }
  }

  /** Run one response: open it with `open()`, fold its chunks into a message, draw it. */
  async run(open, { base = null, resumed = false } = {}) {
    this.setLive(true);
    this.status.textContent = resumed ? "Resuming the live turn…" : "Waiting for the agent…";
    const folder = new MessageFolder(base ? structuredClone(base) : undefined);
    let view = base ? this.views.get(base.id) : null;
    let frame = 0;
    const draw = (streaming) => {
      frame = 0;
      if (!view) return;
      view.update(folder.message, { streaming, error: folder.error, aborted: folder.aborted });
      this.scrollDown();
    };
    const attach = () => {
      const id = folder.message.id;
      view = (id && this.views.get(id)) || this.addView(folder.message);
      if (id) this.views.set(id, view);
    };
    let index = 0; // chunks read, counted from `from` (GET responses) to reconnect after a drop
    let from = resumed ? 0 : null;
    let ended = false;
    try {
      let response = await open();
      for (let attempt = 0; response && !this.destroyed; attempt++) {
        const tail = response.headers.get(TAIL_INDEX); // the last chunk written so far
        if (tail !== null && attempt === 0) {
          announce(`Resumed the live turn (${Number(tail) + 1} chunks so far)`);
        }
        try {
          for await (const chunk of sseChunks(response)) {
            index++;
            folder.apply(chunk); // a "start" names the message: its stored view is reused
            if (!view) attach();
            if (chunk.type === "finish" || chunk.type === "abort" || chunk.type === "error") ended = true;
            this.status.textContent = "Streaming…";
            if (!frame) frame = requestAnimationFrame(() => draw(true));
          }
        } catch (err) {
          if (this.destroyed) return;
          if (!(err instanceof TypeError)) throw err; // a network error is a TypeError: reconnect
        }
        if (ended || attempt >= MAX_RECONNECTS) break;
        // The connection ended before the turn did: read on from the last chunk we have. A
        // POST's chunks are not numbered from the run's start, so that one is replayed from 0.
        this.status.textContent = "Reconnecting…";
        if (from === null) {
          folder.message.parts = [];
          folder.open.clear();
          folder.tools.clear();
          from = 0;
          index = 0;
        }
        response = await api.resumeStream(this.chatId, from + index, this.controller.signal);
      }
    } catch (err) {
      if (this.destroyed || err.name === "AbortError") return;
      folder.error = err instanceof ApiError ? err.message : `The stream failed: ${err.message}`;
    } finally {
      if (frame) cancelAnimationFrame(frame);
    }
    if (this.destroyed) return;
    if (resumed && !view && !folder.error) {
      // The turn ended between reading the chat and asking for its stream: read it again.
      const detail = await api.getChat(this.sessionId, this.chatId).catch(() => null);
      if (detail && !this.destroyed) this.drawMessages(detail.messages);
    }
    draw(false);
    if (view && folder.message.id) this.remember(folder.message);
    this.setLive(false);
    this.status.textContent = folder.error
      ? view
        ? "The turn failed."
        : folder.error
      : folder.aborted
        ? "Stopped."
        : waitsForPerson(folder.message)
          ? "The agent waits for your answer."
          : "";
    announce(this.status.textContent || "The agent finished.");
    api.markRead(this.sessionId, this.chatId).catch(() => {});
    if (this.queued) {
      const queued = this.queued;
      this.queued = null;
      await this.postBack(queued);
    }
  }

  // --- answers: the assistant message goes back with the answer in its part ------------------

  async answerApproval(part, approved, reason) {
    const message = this.messageOf(part);
    if (!message) return;
    part.state = "approval-responded";
    part.approval = { ...part.approval, approved, ...(reason ? { reason } : {}) };
    touch(part);
    this.views.get(message.id)?.update(message);
    const left = message.parts.filter((p) => isTool(p) && p.state === "approval-requested").length;
    if (left) {
      announce(`${left} more call(s) wait for your answer; all are sent together.`);
      return;
    }
    await this.postBack(message);
  }

  async answerQuestion(part, output) {
    const message = this.messageOf(part);
    if (!message) return;
    part.state = "output-available";
    part.output = output;
    touch(part);
    this.views.get(message.id)?.update(message);
    await this.postBack(message);
  }

  messageOf(part) {
    return this.messages.find((m) => m.parts && m.parts.includes(part))
      || [...this.views.values()].map((v) => v.message).find((m) => m.parts.includes(part));
  }

  async postBack(message) {
    if (this.live) {
      // Answered before the response paused (its last chunks still coming): sent right after.
      this.queued = message;
      return;
    }
    await this.run(
      () => api.sendMessage({ id: this.chatId, sessionId: this.sessionId, messages: [message] }, this.controller.signal),
      { base: message },
    );
  }
}

function waitsForPerson(message) {
  return (message.parts || []).some(
    (p) => isTool(p) && (p.state === "approval-requested" || (p.type === "tool-ask_user_question" && p.state === "input-available")),
  );
}
