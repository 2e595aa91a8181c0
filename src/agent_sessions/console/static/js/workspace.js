// The session's workspace: its diff (per file, line counts, unified or side by side) and its
// files (browse, view, download one or the whole workspace as a zip).

import { api } from "./api.js";
import { announce, fill, h, saveBlob } from "./dom.js";
import { highlight, languageOf } from "./markdown.js";

export function diffPanel(sessionId) {
  const layout = h("select", { id: "diff-layout" }, h("option", { value: "unified" }, "Unified"), h("option", { value: "split" }, "Side by side"));
  layout.value = localStorage.getItem("agent-sessions.diffLayout") || "unified";
  const body = h("div", { class: "diff-body", "aria-live": "polite" });
  let diff = null;

  async function load() {
    fill(body, h("p", { class: "muted" }, "Loading the diff… (a hibernated sandbox is restored first)"));
    try {
      diff = await api.diff(sessionId);
      draw();
    } catch (err) {
      fill(body, h("p", { class: "error-box", role: "alert" }, `Could not load the diff: ${err.message}`));
    }
  }

  function draw() {
    const { summary, files } = diff;
    fill(
      body,
      h("p", { class: "diff-summary" }, `${summary.totalFiles} file(s) changed, `, h("span", { class: "add" }, `+${summary.totalAdditions}`), " ", h("span", { class: "del" }, `−${summary.totalDeletions}`), diff.baseRef ? ` against ${diff.baseRef}` : "", diff.truncated ? " (some files too large to show)" : ""),
      files.length ? null : h("p", { class: "muted" }, "No changes."),
      files.map((file) => fileDiff(file, layout.value)),
    );
  }

  const message = h("input", { id: "commit-message", type: "text", placeholder: "written from the diff when empty", autocomplete: "off" });
  const outcome = h("p", { class: "git-outcome muted", role: "status" });
  const git = (label, action) => async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    outcome.textContent = `${label}…`;
    try {
      outcome.textContent = await action();
      load();
    } catch (err) {
      outcome.textContent = `${label} failed: ${err.message}`;
    }
    button.disabled = false;
  };
  const gitBar = h(
    "div",
    { class: "toolbar git-bar", role: "group", "aria-label": "Git" },
    h("label", { for: "commit-message" }, "Commit message"),
    message,
    h("button", { type: "button", onclick: git("Commit", async () => {
      const c = await api.commit(sessionId, message.value.trim());
      message.value = "";
      return `Committed ${c.commitSha.slice(0, 10)} on ${c.branch || "a detached HEAD"}: ${c.message.split("\n")[0]}`;
    }) }, "Commit"),
    h("button", { type: "button", onclick: git("Push", async () => {
      const p = await api.push(sessionId);
      return p.pushed ? `Pushed ${p.branch} (${p.commitSha.slice(0, 10)})` : `${p.branch} was already pushed`;
    }) }, "Push"),
    h("button", { type: "button", onclick: git("Pull request", async () => {
      const pr = await api.openPr(sessionId);
      return `Pull request #${pr.number}: ${pr.url}`;
    }) }, "Open pull request"),
  );

  layout.addEventListener("change", () => {
    localStorage.setItem("agent-sessions.diffLayout", layout.value);
    if (diff) draw();
  });
  const el = h(
    "section",
    { class: "workspace-panel", "aria-label": "Changes" },
    h("div", { class: "toolbar" }, h("button", { type: "button", onclick: load }, "Refresh"), h("label", { for: "diff-layout" }, "Layout"), layout),
    gitBar,
    outcome,
    body,
  );
  return { el, load };
}

function fileDiff(file, layout) {
  const name = file.oldPath && file.oldPath !== file.path ? `${file.oldPath} → ${file.path}` : file.path;
  let content;
  if (file.binary) content = h("p", { class: "muted" }, "Binary file.");
  else if (file.generated) content = h("p", { class: "muted" }, "Generated or lock file: counted, not shown.");
  else if (!file.diff) content = h("p", { class: "muted" }, "Too large to show.");
  else content = layout === "split" ? splitDiff(file.diff) : unifiedDiff(file.diff);
  return h(
    "details",
    { class: "diff-file", open: true },
    h("summary", {}, h("span", { class: `badge badge-diff-${file.status}` }, file.status), " ", h("code", {}, name), " ", h("span", { class: "add" }, `+${file.additions}`), " ", h("span", { class: "del" }, `−${file.deletions}`)),
    content,
  );
}

function lineClass(line) {
  if (line.startsWith("@@")) return "hunk";
  if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff ") || line.startsWith("index ")) return "head";
  if (line.startsWith("+")) return "add";
  if (line.startsWith("-")) return "del";
  return "ctx";
}

function unifiedDiff(text) {
  const pre = h("pre", { class: "diff unified", tabindex: "0" });
  for (const line of text.replace(/\n$/, "").split("\n")) pre.append(h("span", { class: `line ${lineClass(line)}` }, `${line}\n`));
  return pre;
}

/** Side by side: context on both sides, a run of removals paired row by row with the additions
 * that follow it. */
function splitDiff(text) {
  const rows = [];
  let dels = [];
  let adds = [];
  const flush = () => {
    for (let i = 0; i < Math.max(dels.length, adds.length); i++) rows.push([dels[i], adds[i]]);
    dels = [];
    adds = [];
  };
  for (const line of text.replace(/\n$/, "").split("\n")) {
    const kind = lineClass(line);
    if (kind === "head") continue;
    if (kind === "del") dels.push(line);
    else if (kind === "add") adds.push(line);
    else {
      flush();
      rows.push(kind === "hunk" ? [line, line, "hunk"] : [line, line]);
    }
  }
  flush();
  const cell = (line, hunk) => {
    if (line === undefined) return h("td", { class: "empty" });
    const kind = hunk ? "hunk" : lineClass(line);
    return h("td", { class: kind }, kind === "hunk" ? line : line.slice(1));
  };
  return h(
    "div",
    { class: "diff split", tabindex: "0" },
    h(
      "table",
      {},
      h("caption", { class: "sr-only" }, "Before on the left, after on the right"),
      rows.map(([left, right, hunk]) => h("tr", {}, cell(left, hunk), cell(right, hunk))),
    ),
  );
}

export function filesPanel(sessionId) {
  const filter = h("input", { id: "file-filter", type: "search", placeholder: "Filter paths", autocomplete: "off" });
  const list = h("ul", { class: "file-list", "aria-label": "Files" });
  const viewer = h("div", { class: "file-viewer" });
  let entries = [];

  async function load() {
    fill(list, h("li", { class: "muted" }, "Loading files…"));
    try {
      const tree = await api.files(sessionId);
      entries = tree.entries;
      draw();
      if (tree.truncated) list.append(h("li", { class: "muted" }, "(list truncated)"));
    } catch (err) {
      fill(list, h("li", { class: "error-box", role: "alert" }, `Could not list files: ${err.message}`));
    }
  }

  function draw() {
    const q = filter.value.trim().toLowerCase();
    const shown = entries.filter((e) => !q || e.path.toLowerCase().includes(q)).slice(0, 1000);
    fill(
      list,
      shown.map((e) => {
        const depth = e.path.split("/").length - 1;
        const label = e.path.split("/").pop() + (e.type === "directory" ? "/" : "");
        return h(
          "li",
          { class: `file-entry type-${e.type}`, dataset: { depth: String(Math.min(depth, 8)) } },
          e.type === "file"
            ? h("button", { type: "button", class: "link", title: e.path, onclick: () => show(e) }, label)
            : h("span", { title: e.path }, label),
          e.type === "file" ? h("span", { class: "muted size" }, formatSize(e.size)) : null,
          e.type === "file" ? h("button", { type: "button", class: "small", "aria-label": `Download ${e.path}`, onclick: () => download(e.path) }, "Download") : null,
        );
      }),
    );
  }

  async function show(entry) {
    fill(viewer, h("p", { class: "muted" }, `Loading ${entry.path}…`));
    try {
      const blob = await api.fileBlob(sessionId, entry.path);
      if (blob.size > 512 * 1024) return fill(viewer, h("p", { class: "muted" }, `${entry.path} is large: download it.`));
      const text = await blob.text();
      if (text.includes("\u0000")) return fill(viewer, h("p", { class: "muted" }, `${entry.path} is binary: download it.`));
      const code = h("code", { class: "hljs" });
      const language = languageOf(entry.path);
      if (language) code.innerHTML = highlight(text, language);
      else code.textContent = text;
      fill(viewer, h("h3", {}, entry.path), h("pre", { class: "code", tabindex: "0" }, code));
    } catch (err) {
      fill(viewer, h("p", { class: "error-box", role: "alert" }, err.message));
    }
  }

  async function download(path) {
    try {
      saveBlob(await api.fileBlob(sessionId, path), path.split("/").pop());
    } catch (err) {
      announce(`Download failed: ${err.message}`, "error");
    }
  }

  async function downloadAll() {
    try {
      saveBlob(await api.archiveBlob(sessionId), `workspace-${sessionId}.zip`);
    } catch (err) {
      announce(`Download failed: ${err.message}`, "error");
    }
  }

  filter.addEventListener("input", draw);
  const el = h(
    "section",
    { class: "workspace-panel", "aria-label": "Files" },
    h(
      "div",
      { class: "toolbar" },
      h("button", { type: "button", onclick: load }, "Refresh"),
      h("label", { for: "file-filter" }, "Filter"),
      filter,
      h("button", { type: "button", onclick: downloadAll }, "Download all (zip)"),
    ),
    h("div", { class: "files-split" }, list, viewer),
  );
  return { el, load };
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
