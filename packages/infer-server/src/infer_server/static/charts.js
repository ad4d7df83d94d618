// A small time-series line chart drawn on a <canvas>, with an HTML legend
// that shows each series' latest value. No library: plain Canvas 2D.

/** The smallest of 1, 2, 5 x 10^n that is >= value (1 for value <= 0). */
export function niceCeil(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  const mantissa = value / power;
  const step = mantissa <= 1 ? 1 : mantissa <= 2 ? 2 : mantissa <= 5 ? 5 : 10;
  return step * power;
}

/** A short label for an axis or legend value. */
export function formatValue(value) {
  if (value == null || !Number.isFinite(value)) return "—";
  const abs = Math.abs(value);
  if (Number.isInteger(value) && abs < 10000) return String(value);
  if (abs >= 10000) return `${(value / 1000).toFixed(0)}k`;
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  return value.toFixed(abs >= 1 || abs === 0 ? 1 : 2);
}

const MIN_SPAN_MS = 60 * 1000;

/** Spacing of time ticks so that a span gets at most six of them. */
export function tickStepMs(span) {
  for (const seconds of [10, 15, 30, 60, 120, 300, 600]) if (span / (seconds * 1000) <= 6) return seconds * 1000;
  return 3600 * 1000;
}

/** "45s", "2m", "1m30s" for a duration in milliseconds. */
export function formatAgo(ms) {
  const total = Math.round(ms / 1000);
  const minutes = Math.floor(total / 60);
  const seconds = total % 60;
  if (!minutes) return `${seconds}s`;
  return seconds ? `${minutes}m${seconds}s` : `${minutes}m`;
}

/**
 * Line chart of several series over time. The x axis spans the data seen so
 * far, from one minute up to `windowMs`; the y axis runs from 0 to `yMax`, or
 * scales itself to at least `minTop`. `series` is a list of {label, color};
 * each push() gives one value per series (null = no data, drawn as a gap).
 * Invariant: only points inside the window (plus one before it) are kept.
 */
export class LineChart {
  constructor(canvas, { series, legend = null, windowMs = 5 * 60 * 1000, yMax = null, minTop = 1, unit = "" }) {
    this.canvas = canvas;
    this.series = series;
    this.windowMs = windowMs;
    this.yMax = yMax;
    this.minTop = minTop;
    this.unit = unit;
    this.points = [];
    this.valueCells = legend ? this.buildLegend(legend) : [];
    if (typeof ResizeObserver !== "undefined") {
      new ResizeObserver(() => this.draw()).observe(canvas);
    }
  }

  buildLegend(list) {
    list.replaceChildren();
    return this.series.map((s) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = s.color;
      const name = document.createElement("span");
      name.textContent = s.label;
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = "—";
      item.append(swatch, name, value);
      list.append(item);
      return value;
    });
  }

  push(time, values) {
    this.points.push({ time, values });
    const oldest = time - this.windowMs;
    while (this.points.length > 2 && this.points[1].time < oldest) this.points.shift();
    values.forEach((v, i) => {
      if (this.valueCells[i]) this.valueCells[i].textContent = formatValue(v) + (v == null ? "" : this.unit);
    });
    this.canvas.dataset.points = String(this.points.length);
    this.canvas.dataset.latest = JSON.stringify(values);
    const peak = this.points.reduce(
      (m, p) => Math.max(m, ...p.values.filter((v) => Number.isFinite(v))),
      0,
    );
    this.canvas.dataset.max = String(peak);
    this.draw();
  }

  draw() {
    const canvas = this.canvas;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);

    const style = getComputedStyle(canvas);
    const textColor = style.color || "#444";
    const gridColor = style.getPropertyValue("--grid").trim() || "rgba(128,128,128,0.25)";
    const pad = { left: 42, right: 8, top: 8, bottom: 18 };
    const plotW = Math.max(1, width - pad.left - pad.right);
    const plotH = Math.max(1, height - pad.top - pad.bottom);
    const end = this.points.length ? this.points[this.points.length - 1].time : Date.now();
    const first = this.points.length ? this.points[0].time : end;
    const span = Math.min(this.windowMs, Math.max(MIN_SPAN_MS, end - first));
    const start = end - span;
    let top = this.yMax;
    if (top == null) {
      let peak = 0;
      for (const p of this.points) for (const v of p.values) if (Number.isFinite(v)) peak = Math.max(peak, v);
      top = Math.max(this.minTop, niceCeil(peak));
    }
    const x = (t) => pad.left + ((t - start) / span) * plotW;
    const y = (v) => pad.top + plotH - (Math.min(v, top) / top) * plotH;

    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    ctx.strokeStyle = gridColor;
    ctx.fillStyle = textColor;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i += 1) {
      const value = (top * i) / 4;
      const yy = Math.round(y(value)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.left, yy);
      ctx.lineTo(width - pad.right, yy);
      ctx.stroke();
      ctx.fillText(formatValue(value), pad.left - 4, yy);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const step = tickStepMs(span);
    for (let ago = 0; ago <= span + 1; ago += step) {
      const xx = x(end - ago);
      ctx.fillText(ago === 0 ? "now" : `-${formatAgo(ago)}`, Math.min(Math.max(xx, pad.left + 10), width - 14), height - pad.bottom + 4);
    }

    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.left, pad.top - 2, plotW, plotH + 4);
    ctx.clip();
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    this.series.forEach((s, i) => {
      ctx.strokeStyle = s.color;
      ctx.fillStyle = s.color;
      ctx.beginPath();
      let drawing = false;
      let lone = null;
      for (const p of this.points) {
        const v = p.values[i];
        if (!Number.isFinite(v)) {
          drawing = false;
          continue;
        }
        if (drawing) {
          ctx.lineTo(x(p.time), y(v));
          lone = null;
        } else {
          ctx.moveTo(x(p.time), y(v));
          lone = p;
        }
        drawing = true;
      }
      ctx.stroke();
      if (lone) {
        ctx.beginPath();
        ctx.arc(x(lone.time), y(lone.values[i]), 2.5, 0, 2 * Math.PI);
        ctx.fill();
      }
    });
    ctx.restore();
  }
}
