// The console's entry point: a hash router over three screens (sign in, sessions, a session).
// Each screen returns a cleanup function, called when the route changes (pollers, streams).

import { ApiError, api, auth } from "./api.js";
import { announce, fill, h } from "./dom.js";
import { sessionsView } from "./sessions.js";
import { sessionView } from "./session.js";

const app = document.getElementById("app");
const signOut = document.getElementById("sign-out");
let cleanup = () => {};

function route() {
  cleanup();
  cleanup = () => {};
  signOut.hidden = !auth.key;
  if (!auth.key) {
    cleanup = signInView(app) || cleanup;
    return;
  }
  const path = location.hash.replace(/^#/, "") || "/";
  const match = path.match(/^\/s\/([^/]+)(?:\/c\/([^/]+))?/);
  try {
    if (match) cleanup = sessionView(app, decodeURIComponent(match[1]), match[2] && decodeURIComponent(match[2])) || cleanup;
    else cleanup = sessionsView(app) || cleanup;
  } catch (err) {
    fill(app, h("p", { class: "error-box", role: "alert" }, String(err)));
  }
}

function signInView(root) {
  const input = h("input", { id: "api-key", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const error = h("p", { class: "error-box", role: "alert", hidden: true });
  const form = h(
    "form",
    { class: "card sign-in", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h("p", { class: "muted" }, "Paste an API key (", h("code", {}, "agent-sessions accounts create"), " prints one). It is kept in this tab only."),
    h("label", { for: "api-key" }, "API key"),
    input,
    error,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    auth.key = input.value.trim();
    try {
      await api.listSessions("active", 1);
      announce("Signed in");
      route();
    } catch (err) {
      auth.key = null;
      error.hidden = false;
      error.textContent = err instanceof ApiError && err.status === 401 ? "That key was refused." : `Could not sign in: ${err.message}`;
      input.focus();
    }
  });
  fill(root, form);
  input.focus();
}

signOut.addEventListener("click", () => {
  auth.key = null;
  location.hash = "#/";
  route();
});

// A key the server stops accepting (revoked) sends the user back to sign in.
window.addEventListener("unhandledrejection", (event) => {
  if (event.reason instanceof ApiError && event.reason.status === 401) {
    auth.key = null;
    route();
  }
});

// The skip link focuses the content; as a plain #app link it would change the route.
document.querySelector(".skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  app.focus();
});

window.addEventListener("hashchange", route);
route();
