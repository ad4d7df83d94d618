// Talking to the gateway: the API key (kept in sessionStorage only), fetch
// with the Bearer header, and plain-language messages for failed responses.

const KEY_NAME = "infer.apiKey";

/** The API key saved for this tab, or "" when none. */
export function getApiKey() {
  try {
    return sessionStorage.getItem(KEY_NAME) || "";
  } catch {
    return "";
  }
}

/** Saves (or, with "", forgets) the API key for this tab. */
export function setApiKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_NAME, key);
    else sessionStorage.removeItem(KEY_NAME);
  } catch {
    // storage disabled: the key then lasts only as long as nothing asks for it again
  }
}

/**
 * fetch() with the Authorization header when a key is set. Paths are relative
 * ("v1/models") so the UI also works behind a proxy that adds a path prefix.
 */
export function apiFetch(path, init = {}) {
  const headers = new Headers(init.headers || {});
  const key = getApiKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  return fetch(path, { ...init, headers });
}

/** The server's own error text from an OpenAI-shaped body, or "". */
export function serverMessage(body) {
  if (!body) return "";
  if (typeof body === "string") return body.trim().slice(0, 500);
  const err = body.error;
  if (err && typeof err === "object" && typeof err.message === "string") return err.message;
  if (typeof err === "string") return err;
  if (typeof body.message === "string") return body.message;
  if (typeof body.detail === "string") return body.detail;
  return "";
}

/** A sentence for the user explaining a failed HTTP status. */
export function describeStatus(status, message = "", retryAfter = null) {
  const said = message ? ` Server said: ${message}` : "";
  switch (status) {
    case 400:
      return `The request was rejected: ${message || "bad request"}`;
    case 401:
    case 403:
      return getApiKey()
        ? `The API key was refused (${status}). Enter a valid key in Settings.`
        : `This server needs an API key (${status}). Enter it in Settings.`;
    case 404:
      return `Not found (404): ${message || "unknown model or path"}`;
    case 413:
      return `The message is too large for the server (413).${said}`;
    case 429:
    case 503: {
      const wait = retryAfter ? ` Try again in ${retryAfter} s.` : " Try again shortly.";
      return `The engine is overloaded (${status}).${wait}${said}`;
    }
    case 502:
      return `The engine is unavailable (502): it may be down or restarting.${said}`;
    case 504:
      return `The engine did not answer in time (504).${said}`;
    default:
      return `The server answered ${status}.${said}`;
  }
}

/** Reads a failed response and returns the sentence to show. */
export async function responseError(response) {
  let body = "";
  try {
    const text = await response.text();
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  } catch {
    body = "";
  }
  return describeStatus(response.status, serverMessage(body), response.headers.get("Retry-After"));
}

/** The sentence for a fetch that never got an answer. */
export function networkError(error) {
  return `Cannot reach the server (${error && error.message ? error.message : "network error"}).`;
}

/**
 * Wires the API-key form: shows it with `show(message)`, saves the key on
 * submit and calls `onSaved()`. Returns { show, hide }.
 */
export function keyForm(form, onSaved) {
  const input = form.querySelector("input");
  const hint = form.querySelector(".hint");
  const defaultHint = hint ? hint.textContent : "";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey(input.value.trim());
    input.value = "";
    onSaved();
  });
  return {
    show(message) {
      if (hint) hint.textContent = message || defaultHint;
      const wasHidden = form.hidden;
      form.hidden = false;
      const details = form.closest("details");
      if (details) details.open = true;
      if (wasHidden) input.focus();
    },
    hide() {
      form.hidden = true;
    },
  };
}
