// The REST client: every call goes through api(), which adds the bearer key when the
// tab has one, asks for a key once when the API answers 401, and turns error responses
// into ApiError carrying the RFC 9457 problem detail.

const KEY_NAME = "memeforge-key";

export class ApiError extends Error {
  constructor(problem, status) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.problem = problem;
    this.status = status;
  }
}

export function storedKey() {
  return sessionStorage.getItem(KEY_NAME);
}

let pendingKey = null; // one prompt shared by every request that met the same 401

function askForKey(reason) {
  if (pendingKey) return pendingKey;
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  const form = document.getElementById("key-form");
  const cancel = document.getElementById("key-cancel");
  document.getElementById("key-reason").textContent = reason ? `The API said: ${reason}` : "";
  input.value = "";
  pendingKey = new Promise((resolve) => {
    const done = (key) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      pendingKey = null;
      resolve(key);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (key) sessionStorage.setItem(KEY_NAME, key);
      done(key || null);
    };
    const onCancel = (event) => {
      event.preventDefault();
      done(null);
    };
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    input.focus();
  });
  return pendingKey;
}

async function problemOf(response) {
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) {
    try {
      return await response.json();
    } catch {
      /* fall through to a synthetic problem */
    }
  }
  return { title: response.statusText || "Request failed", status: response.status, code: "http-error" };
}

const RETRIED = [429, 503]; // back-pressure and AWS outages: wait as the API says, retry
const MAX_RETRIES = 3;
const MAX_WAIT_S = 30;

function sleep(seconds, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, seconds * 1000);
    signal?.addEventListener("abort", () => { clearTimeout(timer); reject(signal.reason); }, { once: true });
  });
}

/** fetch() against the API; resolves with the Response when it is 2xx. */
export async function api(path, options = {}) {
  for (let attempt = 0, retries = 0; ; attempt++) {
    const headers = new Headers(options.headers || {});
    const key = storedKey();
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const response = await fetch(path, { ...options, headers });
    if (response.ok) return response;
    const problem = await problemOf(response);
    if (RETRIED.includes(response.status) && retries < MAX_RETRIES && !(options.body instanceof FormData)) {
      retries++;
      const wait = Number(response.headers.get("retry-after")) || 2 ** retries;
      await sleep(Math.min(wait, MAX_WAIT_S), options.signal);
      continue;
    }
    if (response.status === 401 && attempt < 2) {
      if (key) sessionStorage.removeItem(KEY_NAME); // the kept key was refused
      const reason = key ? `That key was refused: ${problem.detail || problem.title}` : problem.detail;
      if (await askForKey(reason)) continue;
    }
    throw new ApiError(problem, response.status);
  }
}

export async function apiJson(path, options = {}) {
  const response = await api(path, options);
  return response.status === 204 ? null : response.json();
}

export function postJson(path, body) {
  return apiJson(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** The presigned URL of an image route: an <img> cannot send the API key, so the page
 * asks for the URL (which carries its own expiring authorisation) and shows that. */
export async function presigned(path, signal) {
  return apiJson(`${path}?redirect=false`, { signal });
}
