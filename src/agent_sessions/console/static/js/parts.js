// A message drawn from its parts: text as markdown, reasoning folded away, each tool call with
// its input and output (bash as a terminal), todo lists, questions and approvals waiting for an
// answer. A MessageView redraws only the parts whose revision moved, so a streaming reply does
// not reflow the whole conversation (and an opened <details> stays open).

import { h } from "./dom.js";
import { highlight, renderMarkdown } from "./markdown.js";
import { isTool, revision, toolName } from "./stream.js";

const STATE_LABELS = {
  "input-streaming": "preparing",
  "input-available": "running",
  "approval-requested": "needs approval",
  "approval-responded": "answered",
  "output-available": "done",
  "output-error": "error",
  "output-denied": "denied",
};

export class MessageView {
  /** handlers: {onApproval(part, approved, reason), onAnswer(part, output)} */
  constructor(message, handlers = {}) {
    this.handlers = handlers;
    this.body = h("div", { class: "msg-body" });
    this.footer = h("footer", { class: "msg-meta" });
    this.el = h(
      "article",
      { class: `msg msg-${message.role}`, "aria-label": message.role === "user" ? "Your message" : "Agent reply" },
      this.body,
      this.footer,
    );
    this.drawn = []; // per part index: {part, rev, el}
    this.update(message);
  }

  update(message, { streaming = false, error = null, aborted = false } = {}) {
    this.message = message;
    this.el.dataset.messageId = message.id || "";
    const parts = message.parts || [];
    parts.forEach((part, i) => {
      const old = this.drawn[i];
      if (old && old.part === part && old.rev === revision(part)) return;
      const el = this.part(part, message.role) || h("span", { hidden: true });
      if (old) {
        if (old.el.tagName === "DETAILS" && el.tagName === "DETAILS" && old.el.dataset.toggled) {
          el.open = old.el.open;
          el.dataset.toggled = "1";
        }
        old.el.replaceWith(el);
      } else this.body.append(el);
      this.drawn[i] = { part, rev: revision(part), el };
    });
    for (const old of this.drawn.splice(parts.length)) old.el.remove();
    this.el.classList.toggle("streaming", streaming);
    this.drawFooter(message, { streaming, error, aborted });
  }

  drawFooter(message, { streaming, error, aborted }) {
    const bits = [];
    if (streaming) bits.push(h("span", { class: "typing", role: "status" }, "Streaming…"));
    if (aborted) bits.push(h("span", { class: "badge badge-warn" }, "stopped"));
    if (error) bits.push(h("div", { class: "error-box", role: "alert" }, error));
    const meta = message.metadata || {};
    const usage = meta.usage;
    if (message.role === "assistant" && usage && !streaming) {
      const figures = [];
      if (usage.inputTokens != null) figures.push(`${usage.inputTokens} in`);
      if (usage.outputTokens != null) figures.push(`${usage.outputTokens} out`);
      if (usage.costUsd != null) figures.push(`$${Number(usage.costUsd).toFixed(4)}`);
      if (meta.durationMs != null) figures.push(`${(meta.durationMs / 1000).toFixed(1)} s`);
      if (figures.length) bits.push(h("span", { class: "usage" }, figures.join(" · ")));
    }
    if (meta.compaction) bits.push(h("div", { class: "divider" }, "context compacted"));
    this.footer.replaceChildren(...bits);
  }

  part(part, role) {
    if (part.type === "text") {
      if (role === "user") return h("div", { class: "user-text" }, part.text);
      const el = h("div", { class: "md" });
      renderMarkdown(el, part.text);
      return el;
    }
    if (part.type === "reasoning") {
      const details = h(
        "details",
        { class: "reasoning", ontoggle: (e) => (e.target.dataset.toggled = "1") },
        h("summary", {}, part.state === "streaming" ? "Thinking…" : "Reasoning"),
        h("div", { class: "reasoning-text" }, part.text),
      );
      return details;
    }
    if (part.type === "file") {
      return h("div", { class: "file-chip" }, `📎 ${part.filename || part.mediaType || "file"}`);
    }
    if (isTool(part)) return this.tool(part);
    if (part.type.startsWith("data-")) return dataPart(part);
    return null; // step-start, source-*, …
  }

  tool(part) {
    const name = toolName(part);
    const failed = part.state === "output-error" || part.state === "output-denied";
    const waiting = part.state === "approval-requested" || (name === "ask_user_question" && part.state === "input-available");
    const details = h(
      "details",
      {
        class: `tool tool-${name} state-${part.state}`,
        open: name === "bash" || failed || waiting || name === "todo_write",
        dataset: { toolCallId: part.toolCallId },
        ontoggle: (e) => (e.target.dataset.toggled = "1"),
      },
      h(
        "summary",
        {},
        h("span", { class: "tool-name" }, name),
        h("code", { class: "tool-arg" }, headline(name, part)),
        waiting && part.state === "input-available"
          ? h("span", { class: "badge badge-approval-requested" }, "needs your answer")
          : part.preliminary
            ? h("span", { class: "badge badge-input-available" }, "running")
            : h("span", { class: `badge badge-${part.state}` }, STATE_LABELS[part.state] || part.state),
      ),
      h("div", { class: "tool-body" }, toolBody(name, part), this.interaction(name, part)),
    );
    return details;
  }

  interaction(name, part) {
    if (part.state === "approval-requested") return this.approvalForm(part);
    if (name === "ask_user_question" && part.state === "input-available") return this.questionForm(part);
    return null;
  }

  approvalForm(part) {
    const reason = h("input", { type: "text", class: "reason", placeholder: "Reason (optional, sent when denying)", "aria-label": "Reason for denying" });
    const decide = (approved) => () => this.handlers.onApproval?.(part, approved, reason.value.trim() || null);
    return h(
      "div",
      { class: "approval", role: "group", "aria-label": `Approve the ${toolName(part)} call` },
      h("p", {}, "This call waits for your approval."),
      h("button", { type: "button", class: "primary", onclick: decide(true) }, "Approve"),
      h("button", { type: "button", class: "danger", onclick: decide(false) }, "Deny"),
      reason,
    );
  }

  questionForm(part) {
    const questions = (part.input && part.input.questions) || [];
    const form = h("form", { class: "questions" });
    questions.forEach((q, qi) => {
      const type = q.multiSelect ? "checkbox" : "radio";
      form.append(
        h(
          "fieldset",
          {},
          h("legend", {}, q.header ? `${q.header}: ${q.question}` : q.question),
          (q.options || []).map((opt, oi) =>
            h(
              "label",
              { class: "option" },
              h("input", { type, name: `q${qi}`, value: opt.label, required: type === "radio" && oi === 0 }),
              h("span", {}, opt.label),
              opt.description ? h("small", {}, ` — ${opt.description}`) : null,
            ),
          ),
        ),
      );
    });
    form.append(h("button", { type: "submit", class: "primary" }, "Send answers"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const answers = {};
      questions.forEach((q, qi) => {
        const picked = [...form.querySelectorAll(`input[name="q${qi}"]:checked`)].map((i) => i.value);
        answers[q.question] = q.multiSelect ? picked : picked[0] ?? null;
      });
      this.handlers.onAnswer?.(part, { answers });
    });
    return form;
  }
}

/** One line saying what a call does: its command, path or pattern. */
function headline(name, part) {
  const input = part.input || {};
  if (part.state === "input-streaming" && !part.input) return (part.inputText || "").slice(0, 80);
  const line = input.command ?? input.filePath ?? input.pattern ?? input.skill ?? input.description ?? "";
  if (name === "todo_write") return `${(input.todos || []).length} items`;
  if (name === "ask_user_question") return `${(input.questions || []).length} question(s)`;
  return String(line).split("\n")[0].slice(0, 120);
}

function toolBody(name, part) {
  const blocks = [];
  const input = part.input;
  if (name === "bash") {
    blocks.push(terminal(input, part));
  } else if (name === "ask_user_question") {
    blocks.push(answers(input, part)); // while it waits, the questions are the form's
  } else if (name === "todo_write") {
    blocks.push(todoList((part.output && part.output.todos) || (input && input.todos) || []));
  } else {
    if (input !== undefined || part.inputText) {
      const text = input !== undefined ? JSON.stringify(input, null, 2) : part.inputText;
      blocks.push(h("div", { class: "io-label" }, "Input"), codeBlock(text, "json"));
    }
    if (part.state === "output-available") {
      const out = part.output;
      const text = typeof out === "string" ? out : JSON.stringify(out, null, 2);
      blocks.push(h("div", { class: "io-label" }, "Output"), codeBlock(text ?? "", typeof out === "string" ? null : "json"));
    }
  }
  if (part.errorText) blocks.push(h("div", { class: "error-box", role: "alert" }, part.errorText));
  if (part.state === "output-denied") blocks.push(h("div", { class: "error-box" }, "Denied."));
  return blocks;
}

/** bash: the command and its output as a terminal would show them. */
function terminal(input, part) {
  const out = part.output;
  const pre = h("pre", { class: "terminal", tabindex: "0", "aria-label": "Terminal output" });
  const command = input?.command ?? part.inputText ?? "";
  pre.append(h("span", { class: "prompt" }, `$ ${command}\n`));
  if (part.preliminary && out && typeof out === "object") {
    // Still running: the latest of its output, kept in view as it grows.
    if (out.truncated) pre.append(h("span", { class: "exit" }, "… (earlier output not shown)\n"));
    if (out.stdout) pre.append(out.stdout);
    if (out.stderr) pre.append(h("span", { class: "stderr" }, out.stderr));
    pre.append(h("span", { class: "running" }, "running…"));
    queueMicrotask(() => (pre.scrollTop = pre.scrollHeight));
  } else if (out && typeof out === "object") {
    if (out.stdout) pre.append(out.stdout);
    if (out.stderr) pre.append(h("span", { class: "stderr" }, out.stderr));
    const code = out.exitCode ?? out.exit_code;
    if (code !== undefined) pre.append(h("span", { class: code === 0 ? "exit ok" : "exit fail" }, `\n[exit ${code}]`));
    if (out.truncated) pre.append(h("span", { class: "exit" }, " (output truncated)"));
    const rest = Object.fromEntries(Object.entries(out).filter(([k]) => !["stdout", "stderr", "exitCode", "exit_code", "truncated"].includes(k)));
    if (Object.keys(rest).length) pre.append(`\n${JSON.stringify(rest)}`);
  } else if (typeof out === "string") pre.append(out);
  else if (part.state === "input-available") pre.append(h("span", { class: "running" }, "running…"));
  return pre;
}

/** The questions asked and the answers given (`{answers: {question: label(s)}}`). */
function answers(input, part) {
  if (part.state !== "output-available") return null;
  const given = (part.output && part.output.answers) || {};
  return h(
    "dl",
    { class: "answers" },
    ((input && input.questions) || []).map((q) => [
      h("dt", {}, q.question),
      h("dd", {}, [].concat(given[q.question] ?? "—").join(", ")),
    ]),
  );
}

function todoList(todos) {
  const mark = { completed: "☑", in_progress: "◐", pending: "☐" };
  return h(
    "ul",
    { class: "todos" },
    todos.map((t) => h("li", { class: `todo todo-${t.status}` }, h("span", { "aria-hidden": "true" }, `${mark[t.status] || "☐"} `), t.content, h("span", { class: "sr-only" }, ` (${t.status})`))),
  );
}

function codeBlock(text, language) {
  const code = h("code", { class: "hljs" });
  const shown = text.length > 20000 ? `${text.slice(0, 20000)}\n…` : text;
  if (language) code.innerHTML = highlight(shown, language); // highlight.js escapes the text
  else code.textContent = shown;
  return h("pre", { class: "code", tabindex: "0" }, code);
}

function dataPart(part) {
  const kind = part.type.slice(5);
  const data = part.data || {};
  if (kind === "sandbox") return h("div", { class: "note" }, `sandbox ${data.state || ""}`);
  let text;
  if (kind === "commit") text = `commit ${data.sha ? String(data.sha).slice(0, 10) : ""} ${data.message || data.error || ""}`;
  else if (kind === "pr") text = `pull request ${data.url || data.number || data.error || ""}`;
  else if (kind === "hook") text = `hook ${data.event || ""}: ${data.message || data.reason || data.error || ""}`;
  else text = `${kind}: ${JSON.stringify(data).slice(0, 200)}`;
  return h("div", { class: `note note-${kind}` }, text);
}
