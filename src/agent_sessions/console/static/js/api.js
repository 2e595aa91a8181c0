// The HTTP API, as the console uses it. The API key lives in sessionStorage only (gone when the
// tab closes) and goes out as x-api-key; every error is the API's {status: "error", error}.

const KEY = "agent-sessions.apiKey";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const auth = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  },
};

const enc = encodeURIComponent;

/** fetch() with the key; answers the Response, throws ApiError for a non-2xx answer. */
export async function request(method, path, { body, signal, headers = {} } = {}) {
  const init = { method, signal, headers: { "x-api-key": auth.key || "", ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["content-type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const data = await response.json();
      if (data && data.error) message = data.error;
    } catch {
      /* not JSON: keep the status line */
    }
    throw new ApiError(response.status, message);
  }
  return response;
}

async function json(method, path, body) {
  const response = await request(method, path, { body });
  return response.status === 204 ? null : response.json();
}

const session = (id) => `/api/sessions/${enc(id)}`;

export const api = {
  listSessions: (status = "all", limit = 100, cursor = null) =>
    json("GET", `/api/sessions?status=${enc(status)}&limit=${limit}${cursor ? `&cursor=${enc(cursor)}` : ""}`),
  getSession: (id) => json("GET", session(id)),
  createSession: (body) => json("POST", "/api/sessions", body),
  patchSession: (id, body) => json("PATCH", session(id), body),

  listChats: (sid) => json("GET", `${session(sid)}/chats`),
  createChat: (sid) => json("POST", `${session(sid)}/chats`, {}),
  getChat: (sid, cid) => json("GET", `${session(sid)}/chats/${enc(cid)}`),
  markRead: (sid, cid) => json("POST", `${session(sid)}/chats/${enc(cid)}/read`),

  sandbox: (sid) => json("GET", `${session(sid)}/sandbox`),
  sandboxAction: (sid, action) => json("POST", `${session(sid)}/sandbox/${action}`),

  models: () => json("GET", "/api/models"),
  commit: (sid, message) => json("POST", `${session(sid)}/git/commit`, message ? { message } : {}),
  push: (sid) => json("POST", `${session(sid)}/git/push`),
  openPr: (sid) => json("POST", `${session(sid)}/pr`, {}),
  sessionUsage: (sid) => json("GET", `${session(sid)}/usage`),
  diff: (sid) => json("GET", `${session(sid)}/diff`),
  files: (sid, path = "") => json("GET", `${session(sid)}/files?path=${enc(path)}`),
  /** A file's bytes (for a download link: fetch() sends the key, a plain link could not). */
  fileBlob: async (sid, path) =>
    (await request("GET", `${session(sid)}/files/content?path=${enc(path)}&raw=true`)).blob(),
  archiveBlob: async (sid) =>
    (await request("GET", `${session(sid)}/files/archive?format=zip`)).blob(),

  /** Start a turn: the response is the UI message stream (SSE). */
  sendMessage: (body, signal) => request("POST", "/api/chat", { body, signal }),
  /** The live turn's stream from chunk startIndex; null (204) when no turn is live. */
  resumeStream: async (chatId, startIndex, signal) => {
    const response = await request("GET", `/api/chat/${enc(chatId)}/stream?startIndex=${startIndex}`, {
      signal,
    });
    return response.status === 204 ? null : response;
  },
  stop: (chatId) => json("POST", `/api/chat/${enc(chatId)}/stop`),
};
