// The console's only way to the server: the public API under /api/v1, with the signed-in
// bearer token. The token lives in sessionStorage (gone with the tab) unless the user asked to
// be remembered on this device (localStorage).

const KEY = "herd.token";
export const BASE = "/api/v1";

export function token() {
  return sessionStorage.getItem(KEY) || localStorage.getItem(KEY) || "";
}

export function setToken(t, remember) {
  signOut();
  (remember ? localStorage : sessionStorage).setItem(KEY, t);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

/** An API answer that was not a success: `status` and the server's own message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function failure(r) {
  let msg = `${r.status} ${r.statusText}`;
  try {
    const body = await r.json();
    if (body && body.error) msg = body.error;
  } catch (_) { /* not JSON: keep the status line */ }
  return new ApiError(r.status, msg);
}

/** Calls the API; JSON in and out unless `body` is already a string, FormData or Blob. */
export async function call(method, path, body, headers = {}) {
  const h = { ...headers };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  let payload = body;
  if (body !== undefined && typeof body !== "string" && !(body instanceof FormData) && !(body instanceof Blob)) {
    payload = JSON.stringify(body);
    h["Content-Type"] = "application/json";
  }
  const r = await fetch(BASE + path, { method, headers: h, body: payload });
  if (!r.ok) {
    const e = await failure(r);
    if (r.status === 401) window.dispatchEvent(new CustomEvent("herd:unauthorized"));
    throw e;
  }
  if (r.status === 204) return null;
  const type = r.headers.get("content-type") || "";
  return type.includes("json") ? r.json() : r.text();
}

export const get = (path) => call("GET", path);

/** A result file as a Blob (for report.html and downloads: the browser cannot send the token
 *  with a plain link). */
export async function blob(path) {
  const r = await fetch(BASE + path, { headers: { Authorization: `Bearer ${token()}` } });
  if (!r.ok) throw await failure(r);
  return r.blob();
}

/**
 * Follows a Server-Sent Events stream. EventSource cannot send an Authorization header, so
 * this reads the stream with fetch and splits it into events itself. `onEvent(name, data)`
 * gets each event; the returned promise settles when the stream ends or `signal` aborts it.
 */
export async function stream(path, onEvent, signal) {
  const r = await fetch(BASE + path, {
    headers: { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" },
    signal,
  });
  if (!r.ok) throw await failure(r);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const frame = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, data.join("\n"));
    }
  }
}
