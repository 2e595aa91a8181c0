// The sessions screen: the list (status, lifecycle state, unread and streaming badges), a
// search box and a status filter, and the form for a new session. The list refreshes every
// few seconds while it is shown, so badges follow turns that run elsewhere.

import { api } from "./api.js";
import { announce, fill, h, keepFocus, relative } from "./dom.js";

const REFRESH_MS = 5000;

export function sessionsView(root) {
  let sessions = [];
  let older = []; // pages after the first, loaded with "Load more" (the refresh keeps them)
  let cursor = null; // the next page's, once the first page's is passed
  let archivedCount = 0;
  const more = h("button", { type: "button", id: "load-more", hidden: true, onclick: () => loadMore() }, "Load more");
  const search = h("input", { id: "session-search", type: "search", placeholder: "Title, repository or id", autocomplete: "off" });
  const status = h(
    "select",
    { id: "session-status" },
    h("option", { value: "active" }, "Active"),
    h("option", { value: "archived" }, "Archived"),
    h("option", { value: "all" }, "All"),
  );
  status.value = sessionStorage.getItem("agent-sessions.statusFilter") || "active";
  const list = h("ul", { class: "session-list", "aria-label": "Sessions" });
  const summary = h("p", { class: "muted", "aria-live": "polite" });

  function draw() {
    const q = search.value.trim().toLowerCase();
    const shown = sessions.filter((s) =>
      !q || [s.title, s.id, s.repoOwner, s.repoName, s.branch].some((v) => v && String(v).toLowerCase().includes(q)),
    );
    keepFocus(list, () => fill(list, shown.map(item)));
    const loaded = `${sessions.length}${cursor ? "+" : ""}`;
    summary.textContent = `${shown.length} of ${loaded} sessions shown · ${archivedCount} archived`;
    if (!shown.length) list.append(h("li", { class: "empty" }, sessions.length ? "No session matches." : "No sessions yet: create one above."));
  }

  async function load() {
    try {
      const page = await api.listSessions(status.value);
      const first = new Set(page.sessions.map((s) => s.id));
      sessions = [...page.sessions, ...older.filter((s) => !first.has(s.id))];
      if (!older.length) cursor = page.nextCursor;
      more.hidden = !cursor;
      archivedCount = page.archivedCount;
      draw();
    } catch (err) {
      summary.textContent = `Could not load sessions: ${err.message}`;
    }
  }

  async function loadMore() {
    try {
      const page = await api.listSessions(status.value, 100, cursor);
      older = [...older, ...page.sessions];
      cursor = page.nextCursor;
      more.hidden = !cursor;
      const known = new Set(sessions.map((s) => s.id));
      sessions = [...sessions, ...page.sessions.filter((s) => !known.has(s.id))];
      draw();
    } catch (err) {
      announce(`Could not load more sessions: ${err.message}`, "error");
    }
  }

  search.addEventListener("input", draw);
  status.addEventListener("change", () => {
    sessionStorage.setItem("agent-sessions.statusFilter", status.value);
    older = [];
    cursor = null;
    load();
  });

  fill(
    root,
    h(
      "section",
      { class: "page", "aria-labelledby": "sessions-title" },
      h("div", { class: "page-head" }, h("h1", { id: "sessions-title" }, "Sessions")),
      newSessionForm(),
      h(
        "div",
        { class: "toolbar", role: "search" },
        h("label", { for: "session-search" }, "Search"),
        search,
        h("label", { for: "session-status" }, "Show"),
        status,
      ),
      summary,
      list,
      more,
    ),
  );
  load();
  const timer = setInterval(load, REFRESH_MS);
  return () => clearInterval(timer);
}

function item(s) {
  const repo = s.repoOwner && s.repoName ? `${s.repoOwner}/${s.repoName}` : s.cloneUrl || "";
  const target = s.latestChatId ? `#/s/${encodeURIComponent(s.id)}/c/${encodeURIComponent(s.latestChatId)}` : `#/s/${encodeURIComponent(s.id)}`;
  return h(
    "li",
    { class: "session-item" },
    h(
      "a",
      { href: target, class: "session-link", dataset: { sessionId: s.id } },
      h("span", { class: "session-title" }, s.title),
      h(
        "span",
        { class: "badges" },
        s.hasStreaming ? h("span", { class: "badge badge-live" }, "streaming") : null,
        s.hasUnread ? h("span", { class: "badge badge-unread" }, "unread") : null,
        h("span", { class: `badge badge-status-${s.status}` }, s.status),
        s.lifecycleState ? h("span", { class: `badge badge-life-${s.lifecycleState}` }, s.lifecycleState) : null,
      ),
      h(
        "span",
        { class: "session-sub muted" },
        repo ? `${repo}${s.branch ? ` @ ${s.branch}` : ""} · ` : "",
        `updated ${relative(s.updatedAt)}`,
        s.linesAdded || s.linesRemoved ? ` · +${s.linesAdded || 0} −${s.linesRemoved || 0}` : "",
      ),
    ),
  );
}

function newSessionForm() {
  const field = (id, label, attrs = {}) => [h("label", { for: id }, label), h("input", { id, type: "text", autocomplete: "off", ...attrs })];
  const error = h("p", { class: "error-box", role: "alert", hidden: true });
  const form = h(
    "form",
    { class: "new-session grid-form" },
    field("ns-title", "Title", { placeholder: "optional" }),
    field("ns-owner", "Repository owner", { placeholder: "optional, e.g. octocat" }),
    field("ns-repo", "Repository name", { placeholder: "optional, e.g. hello-world" }),
    field("ns-branch", "Branch", { placeholder: "default branch" }),
    h("label", { class: "check" }, h("input", { id: "ns-new-branch", type: "checkbox" }), " Work on a new branch"),
    error,
    h("button", { type: "submit", class: "primary" }, "Create session"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = (id) => form.querySelector(`#${id}`).value.trim() || undefined;
    const body = {
      title: value("ns-title"),
      repoOwner: value("ns-owner"),
      repoName: value("ns-repo"),
      branch: value("ns-branch"),
      isNewBranch: form.querySelector("#ns-new-branch").checked,
    };
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const { session, chat } = await api.createSession(body);
      announce(`Session “${session.title}” created`);
      location.hash = `#/s/${encodeURIComponent(session.id)}/c/${encodeURIComponent(chat.id)}`;
    } catch (err) {
      error.hidden = false;
      error.textContent = err.message;
      button.disabled = false;
    }
  });
  return h("details", { class: "card", id: "new-session" }, h("summary", {}, "New session"), form);
}
