// A tiny element builder: h("button", {class: "x", onclick}, "Label"). Text children are text
// nodes (never HTML), so nothing from the API is parsed as markup unless renderMarkdown does it.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace everything in `el` with `children`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** "3 min ago", "in 12 min" — for times the API gives as ISO strings. */
export function relative(iso, now = Date.now()) {
  if (!iso) return "";
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 5) return "just now"; // clocks a little apart
  const [value, unit] =
    abs < 60 ? [abs, "s"] : abs < 3600 ? [Math.round(abs / 60), "min"] : abs < 86400 ? [Math.round(abs / 3600), "h"] : [Math.round(abs / 86400), "d"];
  return seconds >= 0 ? `in ${value} ${unit}` : `${value} ${unit} ago`;
}

/** mm:ss (or h:mm:ss) of a number of seconds, for a countdown. */
export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(hh ? 2 : 1, "0");
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** Save a Blob as a file (a download the browser asks about). */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Announce a message to screen readers (and show it briefly). */
export function announce(text, kind = "info") {
  const region = document.getElementById("toast");
  if (!region) return;
  region.dataset.kind = kind;
  region.textContent = text;
  clearTimeout(announce.timer);
  announce.timer = setTimeout(() => (region.textContent = ""), 6000);
}

/** Redraw `container` with `draw()` and give focus back to the element of the same id (or
 * data-chat-id / data-session-id) that had it, so a periodic refresh does not lose it. */
export function keepFocus(container, draw) {
  const active = document.activeElement;
  const inside = active && container.contains(active);
  const key = inside && (active.id || active.dataset.chatId || active.dataset.sessionId);
  draw();
  if (!key) return;
  const again = container.querySelector(`#${CSS.escape(key)}`) || container.querySelector(`[data-chat-id="${CSS.escape(key)}"], [data-session-id="${CSS.escape(key)}"]`);
  again?.focus();
}
