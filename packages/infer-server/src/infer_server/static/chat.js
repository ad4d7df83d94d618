// The chat page: model picker, settings, streamed replies with Stop, and
// per-reply time to first token and tokens per second. With tools set, a
// reply's tool calls are shown, and the next messages are sent as their
// results (one per call, in order) before the model is asked again. The conversation
// lives in this tab only (see transcript.js); a failed turn is shown but not
// sent again.

import { apiFetch, getApiKey, keyForm, networkError, responseError } from "./api.js";
import { formatStats, streamCompletion } from "./completion.js";
import { messageList } from "./messages.js";
import { loadTranscript, saveTranscript } from "./transcript.js";

const RETRY_MS = 3000;

function createChat(doc) {
  const $ = (id) => doc.getElementById(id);
  const ui = {
    settings: $("settings"),
    model: $("model"),
    system: $("system-prompt"),
    temperature: $("temperature"),
    temperatureValue: $("temperature-value"),
    maxTokens: $("max-tokens"),
    tools: $("tools"),
    toolChoice: $("tool-choice"),
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
  const pending = []; // tool calls of the last reply still waiting for a result: {id, name}
  const list = messageList(ui.messages, ui.emptyHint);
  let preferredModel = "";
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

  function persist() {
    saveTranscript({
      entries: list.entries,
      history,
      settings: {
        model: ui.model.value || preferredModel,
        system: ui.system.value,
        temperature: ui.temperature.value,
        maxTokens: ui.maxTokens.value,
        tools: ui.tools.value,
        toolChoice: ui.toolChoice.value,
      },
      pending,
    });
  }

  function restore() {
    const saved = loadTranscript();
    if (!saved) return;
    const settings = saved.settings || {};
    preferredModel = settings.model || "";
    if (typeof settings.system === "string") ui.system.value = settings.system;
    if (settings.temperature != null) ui.temperature.value = settings.temperature;
    if (settings.maxTokens != null) ui.maxTokens.value = settings.maxTokens;
    if (typeof settings.tools === "string") ui.tools.value = settings.tools;
    if (settings.toolChoice) ui.toolChoice.value = settings.toolChoice;
    history.push(...saved.history);
    if (Array.isArray(saved.pending)) pending.push(...saved.pending);
    for (const entry of saved.entries) list.add(entry.role, entry.text, entry);
    if (pending.length) showPending();
  }

  function showPending() {
    showNotice(`The model called ${pending[0].name}(): your next message is sent as its result.`);
  }

  /** The tools field as an array ([] when empty), or {error}. */
  function readTools() {
    const text = ui.tools.value.trim();
    if (!text) return [];
    let tools;
    try {
      tools = JSON.parse(text);
    } catch (error) {
      return { error: `Tools must be a JSON array of tool definitions: ${error.message}` };
    }
    const valid = (t) => t && typeof t === "object" && t.function && typeof t.function.name === "string";
    if (!Array.isArray(tools) || !tools.every(valid)) {
      return { error: "Tools must be a JSON array of {\"type\": \"function\", \"function\": {\"name\": ...}} objects." };
    }
    return tools;
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
      response = await apiFetch("v1/models", { headers: { Accept: "application/json" } });
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
    else if (ids.includes(preferredModel)) ui.model.value = preferredModel;
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
    const tools = readTools();
    if (tools.error) return tools;
    return {
      model: ui.model.value,
      maxTokens,
      temperature,
      system: ui.system.value.trim(),
      tools,
      toolChoice: ui.toolChoice.value,
    };
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
    const call = pending.shift();
    const turn = call
      ? { role: "tool", tool_call_id: call.id, content: text }
      : { role: "user", content: text };
    const userView = list.add(turn.role, text);
    if (call) userView.setMeta(`result of ${call.name}()`);
    ui.prompt.value = "";
    if (pending.length) {
      // more calls to answer first: the model is asked once all results are in
      history.push(turn);
      showPending();
      persist();
      return;
    }
    hideNotice();
    const messages = settings.system ? [{ role: "system", content: settings.system }] : [];
    messages.push(...history, turn);
    const reply = list.add("assistant", "");
    reply.item.classList.add("streaming");
    const active = new AbortController();
    setBusy(active);

    const request = {
      model: settings.model,
      messages,
      temperature: settings.temperature,
      max_tokens: settings.maxTokens,
    };
    if (settings.tools.length) {
      request.tools = settings.tools;
      request.tool_choice = settings.toolChoice;
    }
    const result = await streamCompletion(
      request,
      active.signal,
      (content) => reply.setText(content),
      (calls) => reply.setToolCalls(calls),
    );
    setBusy(null);
    reply.item.classList.remove("streaming");

    const { content, toolCalls, finish, failure, stats } = result;
    if (failure && !content && !toolCalls.length) {
      if (call) {
        pending.unshift(call);
        showPending();
      }
      reply.remove();
      userView.fail();
      userView.setMeta("not sent");
      list.add("error", failure);
      persist();
      if (result.status === 401 || result.status === 403) keys.show(null);
      if (!ui.prompt.value) ui.prompt.value = text;
      return;
    }
    history.push(turn);
    if (toolCalls.length) {
      history.push({ role: "assistant", content: content || null, tool_calls: toolCalls });
      reply.setToolCalls(toolCalls);
      pending.push(...toolCalls.map((c) => ({ id: c.id, name: c.function.name })));
      showPending();
    } else if (content) history.push({ role: "assistant", content });
    else reply.setText(finish === "stopped" ? "(stopped before any text)" : "(empty reply)");
    reply.setMeta(formatStats(stats), {
      ttftMs: stats.ttftMs == null ? "" : stats.ttftMs.toFixed(1),
      tokensPerSecond: stats.tokensPerSecond == null ? "" : stats.tokensPerSecond.toFixed(2),
      tokens: stats.tokens,
      finish: finish || "",
    });
    const p = result.performance;
    if (p) {
      reply.item.title = `server: queue ${p.queue_time_ms} ms, prefill ${p.prefill_time_ms} ms, decode ${p.decode_time_ms} ms`;
    }
    if (failure) list.add("error", failure);
    persist();
  }

  function stop() {
    if (controller) controller.abort();
  }

  function clear() {
    stop();
    history.length = 0;
    pending.length = 0;
    hideNotice();
    list.clear();
    persist();
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
  for (const field of [ui.model, ui.system, ui.temperature, ui.maxTokens, ui.tools, ui.toolChoice]) {
    field.addEventListener("change", persist);
  }
  if (window.matchMedia("(max-width: 700px)").matches) ui.settings.open = false;
  restore();
  ui.temperatureValue.textContent = Number(ui.temperature.value).toFixed(2);
  loadModels();
}

if (typeof document !== "undefined" && document.getElementById("composer")) createChat(document);
