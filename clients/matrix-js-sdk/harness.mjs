// What every client check in this folder needs, in one place: the Node 20 polyfill matrix-js-sdk
// expects, the loopback-only base URL from argv, timed step logging that fails fast with the step's
// name, polling, a small fetch-based API caller, registration and login, and a quiet SDK logger.
// Import it first (ES modules evaluate imports in order), so the polyfill is there before the SDK.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new Promise((r, j) => { resolve = r; reject = j; });
    return { promise, resolve, reject };
  };
}
// The SDK's own debug and info chatter (its loggers call console.debug/info); PARLEY_JS_DEBUG=1 keeps it.
if (!process.env.PARLEY_JS_DEBUG) { console.debug = () => {}; console.info = () => {}; }

export const base = process.argv[2] ?? "http://127.0.0.1:8008";
const host = new URL(base).hostname;
if (!["127.0.0.1", "localhost", "::1", "[::1]"].includes(host)) { console.error("loopback URLs only"); process.exit(2); }

const t0 = Date.now();
export const log = (...a) => console.log(`${((Date.now() - t0) / 1000).toFixed(2).padStart(6)}s`, ...a);
export const fail = (msg) => { console.log("FAIL:", msg); process.exit(1); };

let current = "start";
/** Fails the whole check if it has not finished in `defaultMs` (PARLEY_JS_TIMEOUT_MS overrides). */
export function deadline(defaultMs) {
  const total = Number(process.env.PARLEY_JS_TIMEOUT_MS ?? defaultMs);
  setTimeout(() => fail(`did not finish in ${total} ms (last step: ${current})`), total).unref();
  process.on("unhandledRejection", (e) => fail(`unhandled rejection during "${current}": ${e?.stack ?? e}`));
}
export async function step(name, fn) {
  current = name;
  try {
    const r = await fn();
    log("ok:", name);
    return r;
  } catch (e) {
    fail(`${name}: ${e?.stack ?? e}${e?.data ? " " + JSON.stringify(e.data) : ""}`);
  }
}
export function check(cond, msg) { if (!cond) throw new Error(msg); }
export async function until(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last instanceof Error ? ": " + last.message : ""}`);
}

export const PASSWORD = "pw-" + Math.random().toString(36).slice(2);
export async function api(method, path, token, body) {
  const r = await fetch(base + (path.startsWith("/_matrix") ? path : "/_matrix/client/v3" + path), {
    method, headers: {"Content-Type": "application/json", ...(token ? {Authorization: "Bearer " + token} : {})},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`${method} ${path} -> ${r.status} ${JSON.stringify(j)}`);
  return j;
}
export const register = (name) => api("POST", "/register", null, {username: name, password: PASSWORD, auth: {type: "m.login.dummy"}});
export const login = (user) => api("POST", "/login", null, {type: "m.login.password", identifier: {type: "m.id.user", user}, password: PASSWORD});

// Errors from the SDK's logger are shown (they explain most failures); the rest is quiet.
export const quiet = {debug() {}, info() {}, warn() {}, error(...x) { console.log("  sdk error:", ...x.map(String)); }, trace() {}, getChild() { return quiet; }};
