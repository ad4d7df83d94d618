// One streamed chat completion: POST /v1/chat/completions with stream: true,
// read its SSE, and measure time to first token and tokens per second.

import { apiFetch, networkError, responseError, serverMessage } from "./api.js";
import { sseData } from "./sse.js";

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

/**
 * Adds one chunk's tool-call deltas (OpenAI's: the id and name first, then
 * argument fragments, by index) to `calls`; returns true when there were any.
 */
export function addToolCallDeltas(calls, deltas) {
  if (!Array.isArray(deltas)) return false;
  for (const d of deltas) {
    if (!d || !Number.isInteger(d.index) || d.index < 0) continue;
    const call = (calls[d.index] ||= { id: "", type: "function", function: { name: "", arguments: "" } });
    if (typeof d.id === "string" && d.id) call.id = d.id;
    const fn = d.function || {};
    if (typeof fn.name === "string") call.function.name += fn.name;
    if (typeof fn.arguments === "string") call.function.arguments += fn.arguments;
  }
  return deltas.length > 0;
}

/**
 * Streams one completion of `request` (model, messages, sampling fields, tools),
 * calling onText(textSoFar) as text arrives and onToolCalls(calls) as tool calls
 * do. Never throws: resolves to {content, toolCalls, finish, failure, status,
 * stats, performance}, where finish is "stopped" when `signal` aborted it and
 * failure a sentence for the user.
 */
export async function streamCompletion(request, signal, onText, onToolCalls = () => {}) {
  const run = { started: performance.now(), firstAt: null, chunks: 0, usage: null, performance: null };
  let content = "";
  const toolCalls = [];
  let finish = null;
  let done = false;
  let failure = null;
  let status = 0;
  try {
    const response = await apiFetch("v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({ ...request, stream: true, stream_options: { include_usage: true } }),
      signal,
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
          onText(content);
        }
        if (choice && choice.delta && addToolCallDeltas(toolCalls, choice.delta.tool_calls)) {
          if (run.firstAt === null) run.firstAt = performance.now();
          run.chunks += 1;
          onToolCalls(toolCalls.filter(Boolean));
        }
        if (choice && choice.finish_reason) finish = choice.finish_reason;
        if (chunk.usage) run.usage = chunk.usage;
        if (chunk.performance) run.performance = chunk.performance;
      }
    }
  } catch (error) {
    if (!signal.aborted) failure = networkError(error);
  }
  if (signal.aborted) finish = "stopped";
  else if (!failure && !done && !finish) failure = "The reply was cut off: the stream ended early.";
  const stats = replyStats({ ...run, endedAt: performance.now(), finish });
  const calls = toolCalls.filter(Boolean);
  return { content, toolCalls: calls, finish, failure, status, stats, performance: run.performance };
}
