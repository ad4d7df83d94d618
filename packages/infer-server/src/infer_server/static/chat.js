// The chat page: model picker, settings, streamed replies with Stop, and
// per-reply time to first token and tokens per second. The conversation
// lives in this page only; a failed turn is shown but not sent again.

import { apiFetch, getApiKey, keyForm, networkError, responseError, serverMessage } from "./api.js";
import { sseData } from "./sse.js";

const RETRY_MS = 3000;

/** "TTFT 120 ms · 35.2 tok/s · 64 tokens · length" for a finished reply. */
export function formatStats({ ttftMs, tokensPerSecond, tokens, finish }) {
  const parts = [];
  if (finish === "stopped") parts.push("stopped");
  parts.push(ttftMs == null ? "TTFT —" : `TTFT ${Math.round(ttftMs)} ms`);
  parts.push(tokensPerSecond == null ? "— tok/s" : `${tokensPerSecond.toFixed(1)} tok/s`);
  parts.push(`${tokens} token${tokens === 1 ? "" : "s"}`);
  if (finish && finish !== "stopped") parts.push(finish);
  return parts.join(" · ");
}

/** Stats of one reply from client timings, the usage chunk and `performance`. */
export function replyStats({ started, firstAt, endedAt, chunks, usage, performance: perf, finish }) {
  const tokens = usage && Number.isFinite(usage.completion_tokens) ? usage.completion_tokens : chunks;
  let tokensPerSecond = null;
  if (perf && Number.isFinite(perf.tokens_per_second) && perf.tokens_per_second > 0) {
    tokensPerSecond = perf.tokens_per_second;
  } else if (firstAt != null && tokens > 1 && endedAt > firstAt) {
    tokensPerSecond = (tokens - 1) / ((endedAt - firstAt) / 1000);
  }
  return { ttftMs: firstAt == null ? null : firstAt - started, tokensPerSecond, tokens, finish };
}

function createChat(doc) {
  const $ = (id) => doc.getElementById(id);
  const ui = {
    settings: $("settings"),
    model: $("model"),
    system: $("system-prompt"),
    temperature: $("temperature"),
    temperatureValue: $("temperature-value"),
    maxTokens: $("max-tokens"),
    clear: $("clear"),
    messages: $("messages"),
    emptyHint: $("empty-hint"),
    notice: $("notice"),
    composer: $("composer"),
    prompt: $("prompt"),
    send: $("send"),
    stop: $("stop"),
  };
  const history = [];
  let controller = null;
  let retryTimer = null;
  const keys = keyForm($("key-form"), () => loadModels());

  function showNotice(text) {
    ui.notice.textContent = text;
    ui.notice.hidden = false;
  }

  function hideNotice() {
    ui.notice.hidden = true;
    ui.notice.textContent = "";
  }

  function nearBottom() {
    const box = ui.messages;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  }

  function addMessage(role, text) {
    ui.emptyHint.hidden = true;
    const stick = nearBottom();
    const item = doc.createElement("article");
    item.className = `msg ${role}`;
    const label = doc.createElement("div");
    label.className = "role";
    label.textContent = { user: "You", assistant: "Assistant", error: "Error" }[role] || role;
    const body = doc.createElement("div");
    body.className = "text";
    body.textContent = text;
    const meta = doc.createElement("div");
    meta.className = "meta";
    item.append(label, body, meta);
    ui.messages.append(item);
    if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
    return {
      item,
      setText(value) {
        const keep = nearBottom();
        body.textContent = value;
        if (keep) ui.messages.scrollTop = ui.messages.scrollHeight;
      },
      setMeta(value, data = {}) {
        const keep = nearBottom();
        meta.textContent = value;
        for (const [key, val] of Object.entries(data)) meta.dataset[key] = String(val);
        if (keep) ui.messages.scrollTop = ui.messages.scrollHeight;
      },
    };
  }

  function setBusy(active) {
    controller = active;
    ui.send.disabled = Boolean(active);
    ui.stop.disabled = !active;
    ui.messages.setAttribute("aria-busy", active ? "true" : "false");
  }

  function scheduleRetry() {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(loadModels, RETRY_MS);
  }

  async function loadModels() {
    clearTimeout(retryTimer);
    let response;
    try {
      response = await apiFetch("/v1/models", { headers: { Accept: "application/json" } });
    } catch (error) {
      showNotice(`${networkError(error)} Retrying…`);
      scheduleRetry();
      return;
    }
    if (response.status === 401 || response.status === 403) {
      setModels([], "API key needed");
      keys.show(getApiKey() ? "That key was refused. Enter a valid API key." : null);
      showNotice("This server needs an API key: enter it in Settings.");
      return;
    }
    if (!response.ok) {
      setModels([], "No models");
      showNotice(`${await responseError(response)} Retrying…`);
      scheduleRetry();
      return;
    }
    let ids = [];
    try {
      const body = await response.json();
      ids = (body.data || []).map((m) => m && m.id).filter((id) => typeof id === "string" && id);
    } catch {
      ids = [];
    }
    keys.hide();
    if (!ids.length) {
      setModels([], "No models");
      showNotice("The server lists no models. Retrying…");
      scheduleRetry();
      return;
    }
    setModels(ids);
    hideNotice();
  }

  function setModels(ids, placeholder = "") {
    const previous = ui.model.value;
    ui.model.replaceChildren();
    if (!ids.length) {
      ui.model.append(new Option(placeholder, ""));
      ui.model.disabled = true;
      return;
    }
    for (const id of ids) ui.model.append(new Option(id, id));
    if (ids.includes(previous)) ui.model.value = previous;
    ui.model.disabled = false;
  }

  function readSettings() {
    const maxTokens = Number(ui.maxTokens.value);
    if (!Number.isInteger(maxTokens) || maxTokens < 1) {
      return { error: "Max tokens must be a whole number of at least 1." };
    }
    const temperature = Number(ui.temperature.value);
    if (!Number.isFinite(temperature) || temperature < 0) {
      return { error: "Temperature must be a number of at least 0." };
    }
    if (!ui.model.value) return { error: "No model is available yet." };
    return { model: ui.model.value, maxTokens, temperature, system: ui.system.value.trim() };
  }

  async function send() {
    if (controller) return;
    const text = ui.prompt.value;
    if (!text.trim()) return;
    const settings = readSettings();
    if (settings.error) {
      showNotice(settings.error);
      return;
    }
    const turn = { role: "user", content: text };
    const messages = settings.system ? [{ role: "system", content: settings.system }] : [];
    messages.push(...history, turn);
    const userView = addMessage("user", text);
    ui.prompt.value = "";
    const reply = addMessage("assistant", "");
    reply.item.classList.add("streaming");
    const active = new AbortController();
    setBusy(active);

    const run = { started: performance.now(), firstAt: null, chunks: 0, usage: null, performance: null };
    let content = "";
    let finish = null;
    let done = false;
    let failure = null;
    let status = 0;
    try {
      const response = await apiFetch("/v1/chat/completions", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify({
          model: settings.model,
          messages,
          temperature: settings.temperature,
          max_tokens: settings.maxTokens,
          stream: true,
          stream_options: { include_usage: true },
        }),
        signal: active.signal,
      });
      status = response.status;
      if (!response.ok) {
        failure = await responseError(response);
      } else {
        for await (const data of sseData(response.body)) {
          if (data === "[DONE]") {
            done = true;
            break;
          }
          let chunk;
          try {
            chunk = JSON.parse(data);
          } catch {
            continue;
          }
          if (chunk.error) {
            failure = `The stream failed: ${serverMessage(chunk) || "unknown error"}`;
            break;
          }
          const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : null;
          const delta = choice && choice.delta ? choice.delta.content : null;
          if (typeof delta === "string" && delta) {
            if (run.firstAt === null) run.firstAt = performance.now();
            run.chunks += 1;
            content += delta;
            reply.setText(content);
          }
          if (choice && choice.finish_reason) finish = choice.finish_reason;
          if (chunk.usage) run.usage = chunk.usage;
          if (chunk.performance) run.performance = chunk.performance;
        }
      }
    } catch (error) {
      if (!active.signal.aborted) failure = networkError(error);
    } finally {
      setBusy(null);
      reply.item.classList.remove("streaming");
    }

    if (active.signal.aborted) finish = "stopped";
    else if (!failure && !done && !finish) failure = "The reply was cut off: the stream ended early.";
    if (failure && !content) {
      reply.item.remove();
      userView.item.classList.add("failed");
      userView.setMeta("not sent");
      addMessage("error", failure);
      if (status === 401 || status === 403) keys.show(null);
      if (!ui.prompt.value) ui.prompt.value = text;
      return;
    }
    history.push(turn);
    if (content) history.push({ role: "assistant", content });
    else reply.setText(finish === "stopped" ? "(stopped before any text)" : "(empty reply)");
    const stats = replyStats({ ...run, endedAt: performance.now(), finish });
    reply.setMeta(formatStats(stats), {
      ttftMs: stats.ttftMs == null ? "" : stats.ttftMs.toFixed(1),
      tokensPerSecond: stats.tokensPerSecond == null ? "" : stats.tokensPerSecond.toFixed(2),
      tokens: stats.tokens,
      finish: finish || "",
    });
    if (run.performance) {
      const p = run.performance;
      reply.item.title = `server: queue ${p.queue_time_ms} ms, prefill ${p.prefill_time_ms} ms, decode ${p.decode_time_ms} ms`;
    }
    if (failure) addMessage("error", failure);
  }

  function stop() {
    if (controller) controller.abort();
  }

  function clear() {
    stop();
    history.length = 0;
    for (const item of ui.messages.querySelectorAll(".msg")) item.remove();
    ui.emptyHint.hidden = false;
    ui.prompt.focus();
  }

  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  ui.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  doc.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && controller) {
      event.preventDefault();
      stop();
    }
  });
  ui.stop.addEventListener("click", stop);
  ui.clear.addEventListener("click", clear);
  ui.temperature.addEventListener("input", () => {
    ui.temperatureValue.textContent = Number(ui.temperature.value).toFixed(2);
  });
  if (window.matchMedia("(max-width: 700px)").matches) ui.settings.open = false;
  ui.temperatureValue.textContent = Number(ui.temperature.value).toFixed(2);
  loadModels();
}

if (typeof document !== "undefined" && document.getElementById("composer")) createChat(document);
