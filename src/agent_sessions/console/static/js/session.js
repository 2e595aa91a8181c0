// A session: its header (archive), its sandbox (state, hibernate/resume, the countdown to
// hibernation), its chats, and tabs for the chat, the diff and the files.

import { api } from "./api.js";
import { announce, clock, fill, h, keepFocus } from "./dom.js";
import { ChatPanel } from "./chat.js";
import { diffPanel, filesPanel } from "./workspace.js";

const POLL_MS = 5000;
const enc = encodeURIComponent;

export function sessionView(root, sessionId, chatId) {
  const timers = [];
  let chat = null;
  let closed = false;

  if (!chatId) {
    // No chat in the route: open the most recent one.
    api.listChats(sessionId).then(
      ({ chats }) => {
        if (closed) return;
        const latest = [...chats].sort((a, b) => b.updatedAt.localeCompare(a.updatedAt))[0];
        if (latest) location.replace(`#/s/${enc(sessionId)}/c/${enc(latest.id)}`);
        else fill(root, h("p", {}, "This session has no chat."));
      },
      (err) => fill(root, h("p", { class: "error-box", role: "alert" }, err.message)),
    );
    fill(root, h("p", { class: "muted" }, "Loading…"));
    return () => (closed = true);
  }

  const header = h("div", { class: "session-head" });
  const sandbox = h("section", { class: "card sandbox", "aria-labelledby": "sandbox-title" });
  const chatList = h("ul", { class: "chat-list", "aria-label": "Chats" });
  const newChat = h("button", { type: "button", id: "new-chat", onclick: createChat }, "New chat");
  const usage = h("section", { class: "card usage-card", "aria-labelledby": "usage-title" });

  chat = new ChatPanel(sessionId, chatId, {
    onTurnChange: (live) => {
      refreshChats();
      refreshSandbox();
      if (!live) refreshUsage();
    },
  });
  const diff = diffPanel(sessionId);
  const files = filesPanel(sessionId);
  const tabs = [
    { id: "chat", label: "Chat", panel: chat.el },
    { id: "diff", label: "Changes", panel: diff.el, load: diff.load },
    { id: "files", label: "Files", panel: files.el, load: files.load },
  ];
  const tablist = h("div", { role: "tablist", class: "tabs", "aria-label": "Session views" });
  const panels = h("div", { class: "tab-panels" });
  for (const tab of tabs) {
    tab.button = h("button", { type: "button", role: "tab", id: `tab-${tab.id}`, "aria-controls": `panel-${tab.id}`, onclick: () => select(tab) }, tab.label);
    tab.wrapper = h("div", { role: "tabpanel", id: `panel-${tab.id}`, "aria-labelledby": `tab-${tab.id}`, class: "tab-panel" }, tab.panel);
    tablist.append(tab.button);
    panels.append(tab.wrapper);
  }
  tablist.addEventListener("keydown", (event) => {
    const at = tabs.findIndex((t) => t.button === document.activeElement);
    if (at < 0) return;
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    event.preventDefault();
    const next = tabs[(at + step + tabs.length) % tabs.length];
    select(next);
    next.button.focus();
  });
  function select(tab) {
    for (const t of tabs) {
      const on = t === tab;
      t.button.setAttribute("aria-selected", String(on));
      t.button.tabIndex = on ? 0 : -1;
      t.wrapper.hidden = !on;
    }
    if (tab.load && !tab.loaded) {
      tab.loaded = true;
      tab.load();
    }
  }
  select(tabs[0]);

  fill(
    root,
    h(
      "div",
      { class: "session-layout" },
      header,
      h(
        "aside",
        { class: "sidebar", "aria-label": "Session" },
        sandbox,
        h("section", { class: "card", "aria-labelledby": "chats-title" }, h("div", { class: "card-head" }, h("h2", { id: "chats-title" }, "Chats"), newChat), chatList),
        usage,
      ),
      h("div", { class: "main-col" }, tablist, panels),
    ),
  );

  // --- the session and its archive button -----------------------------------------------------

  async function refreshSession() {
    try {
      const { session } = await api.getSession(sessionId);
      drawHeader(session);
    } catch (err) {
      fill(header, h("p", { class: "error-box", role: "alert" }, err.message));
    }
  }

  function drawHeader(s) {
    const archived = s.status === "archived";
    const repo = s.repoOwner && s.repoName ? `${s.repoOwner}/${s.repoName}` : s.cloneUrl;
    fill(
      header,
      h("h1", { id: "session-title" }, s.title),
      h("p", { class: "muted" }, repo ? `${repo}${s.branch ? ` @ ${s.branch}` : ""}` : "No repository", " · ", h("code", {}, s.id)),
      h("p", { class: "badges" }, h("span", { class: `badge badge-status-${s.status}` }, s.status)),
      h("button", { type: "button", id: "archive", onclick: () => setArchived(!archived) }, archived ? "Unarchive" : "Archive"),
    );
  }

  async function setArchived(archive) {
    try {
      const { session } = await api.patchSession(sessionId, { status: archive ? "archived" : "active" });
      drawHeader(session);
      announce(archive ? "Session archived" : "Session unarchived");
      refreshSandbox();
    } catch (err) {
      announce(err.message, "error");
    }
  }

  // --- the sandbox -----------------------------------------------------------------------------

  let state = null;
  let skew = 0; // server clock minus ours
  let busy = null;
  const countdown = h("span", { class: "countdown", id: "hibernate-countdown" });

  async function refreshSandbox() {
    try {
      state = await api.sandbox(sessionId);
      skew = Date.parse(state.serverTime) - Date.now();
      drawSandbox();
    } catch (err) {
      fill(sandbox, h("p", { class: "error-box" }, err.message));
    }
  }

  function tick() {
    if (!state || state.lifecycleState !== "active" || !state.hibernateAfter) {
      countdown.textContent = "";
      return;
    }
    const left = (Date.parse(state.hibernateAfter) - (Date.now() + skew)) / 1000;
    countdown.textContent = left > 0 ? `Hibernates in ${clock(left)}` : "Hibernating when idle";
  }

  function drawSandbox() {
    const lifecycle = state.lifecycleState || "none";
    const canHibernate = lifecycle === "active" && !busy;
    const canResume = ["hibernated", "failed"].includes(lifecycle) && !busy;
    keepFocus(sandbox, () => fill(
      sandbox,
      h("h2", { id: "sandbox-title" }, "Sandbox"),
      h("p", {}, h("span", { class: `badge badge-life-${lifecycle}`, id: "sandbox-state" }, busy || lifecycle), " ", countdown),
      state.lifecycleError ? h("p", { class: "error-box" }, state.lifecycleError) : null,
      h(
        "div",
        { class: "row" },
        h("button", { type: "button", id: "hibernate", disabled: !canHibernate, onclick: () => act("hibernate", "hibernating…") }, "Hibernate"),
        h("button", { type: "button", id: "resume", disabled: !canResume, onclick: () => act("resume", "restoring…") }, "Resume"),
      ),
    ));
    tick();
  }

  async function act(action, label) {
    busy = label;
    drawSandbox();
    try {
      state = await api.sandboxAction(sessionId, action);
      announce(action === "hibernate" ? "Sandbox hibernated" : "Sandbox resumed");
    } catch (err) {
      announce(`${action} failed: ${err.message}`, "error");
    }
    busy = null;
    await refreshSandbox();
  }

  // --- usage of this chat and of the whole session (finished runs) ------------------------------

  async function refreshUsage() {
    try {
      const { usage: all, chats } = await api.sessionUsage(sessionId); // this chat's among them
      const c = chats.find((x) => x.chatId === chatId)?.usage ?? { runs: 0, inputTokens: 0, outputTokens: 0, toolCalls: 0, costUsd: null };
      const cost = (u) => (u.costUsd == null ? "unpriced" : `$${u.costUsd.toFixed(4)}`);
      const row = (label, pick) => h("tr", {}, h("th", { scope: "row" }, label), h("td", {}, pick(c)), h("td", {}, pick(all)));
      fill(
        usage,
        h("h2", { id: "usage-title" }, "Usage"),
        h(
          "table",
          { class: "figures-table" },
          h("thead", {}, h("tr", {}, h("td", {}), h("th", { scope: "col" }, "This chat"), h("th", { scope: "col", title: `${chats.length} ${chats.length === 1 ? "chat" : "chats"} with finished turns` }, "Session"))),
          h(
            "tbody",
            {},
            row("Turns", (u) => String(u.runs)),
            row("Tokens in / out", (u) => `${u.inputTokens} / ${u.outputTokens}`),
            row("Tool calls", (u) => String(u.toolCalls)),
            row("Cost", cost),
          ),
        ),
      );
    } catch {
      usage.replaceChildren();
    }
  }

  // --- chats -----------------------------------------------------------------------------------

  async function refreshChats() {
    try {
      const { chats } = await api.listChats(sessionId);
      keepFocus(chatList, () => fill(
        chatList,
        chats.map((c) =>
          h(
            "li",
            {},
            h(
              "a",
              { href: `#/s/${enc(sessionId)}/c/${enc(c.id)}`, "aria-current": c.id === chatId ? "page" : undefined, dataset: { chatId: c.id } },
              h("span", {}, c.title),
              c.isStreaming ? h("span", { class: "badge badge-live" }, "streaming") : null,
              c.hasUnread && c.id !== chatId ? h("span", { class: "badge badge-unread" }, "unread") : null,
              c.pendingApprovals.length || c.pendingQuestions.length ? h("span", { class: "badge badge-warn" }, "waits for you") : null,
            ),
          ),
        ),
      ));
    } catch (err) {
      fill(chatList, h("li", { class: "error-box" }, err.message));
    }
  }

  async function createChat() {
    try {
      const { chat: created } = await api.createChat(sessionId);
      location.hash = `#/s/${enc(sessionId)}/c/${enc(created.id)}`;
    } catch (err) {
      announce(err.message, "error");
    }
  }

  refreshSession();
  refreshSandbox();
  refreshChats();
  refreshUsage();
  chat.load().catch((err) => fill(chat.log, h("p", { class: "error-box", role: "alert" }, `Could not load the chat: ${err.message}`)));
  timers.push(setInterval(tick, 1000));
  timers.push(setInterval(() => !busy && refreshSandbox(), POLL_MS));
  timers.push(setInterval(refreshChats, POLL_MS));
  return () => {
    closed = true;
    timers.forEach(clearInterval);
    chat.destroy();
  };
}
