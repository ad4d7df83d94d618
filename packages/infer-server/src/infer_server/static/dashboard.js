// The dashboard: polls /ready and /v1/metrics (every 2 s; ?interval=ms
// overrides) and charts the last five minutes. Missing fields show as gaps.

import { apiFetch, getApiKey, keyForm, networkError, responseError } from "./api.js";
import { LineChart, formatValue } from "./charts.js";

const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
const pct = (part, whole) => (num(part) != null && num(whole) > 0 ? (100 * part) / whole : null);

/**
 * The values to chart for one /v1/metrics body. `previous` is the last
 * {time, tokens} seen; output tokens/s is the token counter's rate since then
 * (null on the first sample or when the counter went back, e.g. a restart).
 */
/**
 * One table row of cell texts per engine of a /v1/metrics body (its
 * `engines` list), in the gateway's order; [] when there is none.
 */
export function engineRows(metrics) {
  const engines = Array.isArray(metrics.engines) ? metrics.engines : [];
  return engines.map((e) => ({
    state: String(e.state || "unknown"),
    cells: [
      String(e.id ?? "—"),
      String(e.state || "unknown").replace("_", " "),
      Array.isArray(e.models) ? e.models.join(", ") : "—",
      formatCount(e.in_flight),
      `${formatCount(e.running)} · ${formatCount(e.waiting)}`,
      num(e.kv_use) == null ? "—" : `${(num(e.kv_use) * 100).toFixed(1)}%`,
      formatCount(e.requests_routed),
      String(e.endpoint ?? "—"),
    ],
    title: e.detail ? String(e.detail) : "",
  }));
}

export function sample(metrics, time, previous) {
  const engine = metrics.engine || {};
  const cache = metrics.cache || {};
  const kv = metrics.kv || {};
  const cpu = metrics.cpu || {};
  const memory = metrics.memory || {};
  const gpu = metrics.gpu || null;
  const tokens = num(engine.total_tokens_generated);
  let tokensPerSecond = null;
  if (previous && tokens != null && previous.tokens != null && tokens >= previous.tokens && time > previous.time) {
    tokensPerSecond = (tokens - previous.tokens) / ((time - previous.time) / 1000);
  }
  const kvUse = num(kv.total_blocks) > 0 ? pct(kv.used_blocks, kv.total_blocks) : pct(cache.total_cached, cache.total_capacity);
  const hitRate = num(cache.hit_rate);
  return {
    time,
    tokens,
    tokensPerSecond,
    running: num(engine.concurrent_requests),
    waiting: num(engine.queue_size),
    queueMs: num(engine.avg_queue_time_ms),
    prefillMs: num(engine.avg_prefill_time_ms),
    decodeMs: num(engine.avg_decode_time_ms),
    kvUse,
    hitRate: hitRate == null ? null : hitRate * 100,
    cpu: num(cpu.utilization_percent),
    memory: num(memory.utilization_percent),
    gpu: gpu ? num(gpu.utilization_percent) : null,
    gpuMemory: gpu ? pct(gpu.memory_used_gb, gpu.memory_total_gb) : null,
  };
}

function createDashboard(doc, intervalMs) {
  const $ = (id) => doc.getElementById(id);
  const chart = (id, series, options = {}) =>
    new LineChart($(`chart-${id}`), { series, legend: $(`legend-${id}`), ...options });
  const charts = {
    tokens: chart("tokens", [{ label: "output tokens/s", color: "#2563eb" }]),
    requests: chart("requests", [
      { label: "running", color: "#16a34a" },
      { label: "waiting", color: "#d97706" },
    ], { minTop: 4 }),
    latency: chart(
      "latency",
      [
        { label: "queue", color: "#9333ea" },
        { label: "prefill", color: "#0891b2" },
        { label: "decode", color: "#dc2626" },
      ],
      { unit: " ms" },
    ),
    cache: chart(
      "cache",
      [
        { label: "KV cache use", color: "#2563eb" },
        { label: "prefix hit rate", color: "#16a34a" },
      ],
      { yMax: 100, unit: "%" },
    ),
    system: chart(
      "system",
      [
        { label: "CPU", color: "#dc2626" },
        { label: "memory", color: "#2563eb" },
        { label: "GPU", color: "#16a34a" },
        { label: "GPU memory", color: "#9333ea" },
      ],
      { yMax: 100, unit: "%" },
    ),
  };
  const notice = $("notice");
  const keys = keyForm($("key-form"), () => poll());
  let previous = null;
  let timer = null;

  const setText = (id, text) => {
    $(id).textContent = text;
  };

  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = !text;
  }

  function setStatus(kind, text) {
    const pill = $("engine-status");
    pill.className = `pill ${kind}`;
    pill.textContent = text;
    pill.dataset.state = kind;
  }

  async function checkReady() {
    let detail = "";
    try {
      const response = await fetch("ready", { headers: { Accept: "application/json" } });
      try {
        const body = await response.json();
        if (body && typeof body.detail === "string") detail = body.detail;
      } catch {
        detail = "";
      }
      if (response.ok) setStatus("ok", "Engine ready");
      else if (response.status === 503) setStatus("bad", "Engine not ready");
      else setStatus("unknown", `Readiness check answered ${response.status}`);
    } catch {
      setStatus("bad", "Gateway unreachable");
    }
    setText("status-detail", detail);
  }

  function showTiles(m, s) {
    const e = m.engine || {};
    const c = m.cache || {};
    setText("tile-requests", `${formatCount(e.total_requests)} / ${formatCount(e.completed_requests)} / ${formatCount(e.failed_requests)}`);
    setText("tile-tokens", formatCount(e.total_tokens_generated));
    setText("tile-queue", `${formatCount(e.concurrent_requests)} · ${formatCount(e.queue_size)}`);
    setText("tile-queue-cap", `queue capacity ${formatCount(e.queue_capacity)}`);
    setText("tile-cache", s.hitRate == null ? "—" : `${s.hitRate.toFixed(1)}%`);
    setText("tile-cache-detail", `hit rate · ${formatCount(c.node_count)} nodes · ${formatCount(c.evictions)} evictions`);
    setText("tile-cpu", s.cpu == null ? "—" : `${s.cpu.toFixed(1)}%`);
    setText("tile-cpu-detail", `${formatCount((m.cpu || {}).core_count)} cores`);
    const mem = m.memory || {};
    setText("tile-memory", s.memory == null ? "—" : `${s.memory.toFixed(1)}%`);
    setText("tile-memory-detail", `${formatValue(num(mem.used_gb))} / ${formatValue(num(mem.total_gb))} GB`);
    const gpu = m.gpu;
    setText("tile-gpu", gpu ? (s.gpu == null ? "—" : `${s.gpu.toFixed(1)}%`) : "none");
    setText(
      "tile-gpu-detail",
      gpu
        ? `${formatValue(num(gpu.memory_used_gb))} / ${formatValue(num(gpu.memory_total_gb))} GB · ${num(gpu.temperature_c) ?? "—"} °C`
        : "no GPU reported",
    );
  }

  function showEngines(m) {
    const body = $("engines-rows");
    const rows = engineRows(m).map((row) => {
      const tr = document.createElement("tr");
      tr.dataset.state = row.state;
      if (row.title) tr.title = row.title;
      for (const text of row.cells) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      return tr;
    });
    body.replaceChildren(...rows);
  }

  function plot(s) {
    charts.tokens.push(s.time, [s.tokensPerSecond]);
    charts.requests.push(s.time, [s.running, s.waiting]);
    charts.latency.push(s.time, [s.queueMs, s.prefillMs, s.decodeMs]);
    charts.cache.push(s.time, [s.kvUse, s.hitRate]);
    charts.system.push(s.time, [s.cpu, s.memory, s.gpu, s.gpuMemory]);
  }

  async function readMetrics() {
    let response;
    try {
      response = await apiFetch("v1/metrics", { headers: { Accept: "application/json" } });
    } catch (error) {
      showNotice(networkError(error));
      return;
    }
    if (response.status === 401 || response.status === 403) {
      keys.show(getApiKey() ? "That key was refused. Enter a valid API key." : null);
      showNotice("The metrics need an API key.");
      return;
    }
    if (!response.ok) {
      showNotice(await responseError(response));
      return;
    }
    let metrics;
    try {
      metrics = await response.json();
    } catch {
      showNotice("The metrics answer was not JSON.");
      return;
    }
    keys.hide();
    showNotice("");
    const now = Date.now();
    const s = sample(metrics || {}, now, previous);
    previous = { time: now, tokens: s.tokens };
    plot(s);
    showTiles(metrics || {}, s);
    showEngines(metrics || {});
    setText("updated", `Updated ${new Date(now).toLocaleTimeString()}`);
  }

  async function poll() {
    clearTimeout(timer);
    await Promise.all([checkReady(), readMetrics()]);
    clearTimeout(timer);
    timer = setTimeout(poll, intervalMs);
  }

  poll();
}

function formatCount(value) {
  return num(value) == null ? "—" : value.toLocaleString("en-US");
}

if (typeof document !== "undefined" && document.getElementById("chart-tokens")) {
  const asked = Number(new URLSearchParams(location.search).get("interval"));
  createDashboard(document, Number.isFinite(asked) && asked >= 250 ? Math.min(asked, 60000) : 2000);
}
