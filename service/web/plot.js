// scaletune dashboard: small SVG charts (log or linear axes), colour scales, and the
// evaluation of fitted laws from the rules JSON (estimate and interval), in plain JS.
"use strict";

(function () {
  const ST = (window.Scaletune = window.Scaletune || {});
  const SVG_NS = "http://www.w3.org/2000/svg";
  const MARGIN = { left: 62, right: 14, top: 14, bottom: 42 };

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(typeof child === "string" ? document.createTextNode(child) : child);
      }
    }
    return node;
  }

  // -- scales ------------------------------------------------------------------------------

  class Scale {
    constructor(lo, hi, log, pixelLo, pixelHi) {
      this.log = log;
      this.lo = log ? Math.log10(lo) : lo;
      this.hi = log ? Math.log10(hi) : hi;
      this.pixelLo = pixelLo;
      this.pixelHi = pixelHi;
      this.domain = [lo, hi];
    }
    map(v) {
      const t = ((this.log ? Math.log10(v) : v) - this.lo) / (this.hi - this.lo || 1);
      return this.pixelLo + t * (this.pixelHi - this.pixelLo);
    }
    ticks() {
      return this.log ? logTicks(this.domain) : linearTicks(this.domain);
    }
  }

  function niceStep(span, target) {
    const raw = span / target;
    const base = 10 ** Math.floor(Math.log10(raw));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * base >= raw) return m * base;
    return 10 * base;
  }

  function linearTicks([lo, hi]) {
    const step = niceStep(hi - lo || 1, 5);
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      ticks.push({ value: v, label: ST.fmt.num(Number(v.toPrecision(12)), 3), major: true });
    }
    return ticks;
  }

  const SUPERSCRIPT = { "-": "⁻", 0: "⁰", 1: "¹", 2: "²", 3: "³", 4: "⁴", 5: "⁵", 6: "⁶", 7: "⁷", 8: "⁸", 9: "⁹" };
  function powerOfTen(k) {
    return `10${String(k).replace(/./g, (c) => SUPERSCRIPT[c])}`;
  }

  // Decades as 10^k (every other one when there are many); 1-2-5 inside a short range.
  function logTicks([lo, hi]) {
    const k0 = Math.floor(Math.log10(lo));
    const k1 = Math.ceil(Math.log10(hi));
    const ticks = [];
    const every = k1 - k0 > 8 ? 2 : 1;
    for (let k = k0; k <= k1; k++) {
      for (const m of k1 - k0 <= 2 ? [1, 2, 5] : [1, 2, 3, 4, 5, 6, 7, 8, 9]) {
        const value = m * 10 ** k;
        if (value < lo * (1 - 1e-9) || value > hi * (1 + 1e-9)) continue;
        const major = m === 1 && k % every === 0;
        const shortRange = k1 - k0 <= 2;
        const label = major ? (shortRange ? ST.fmt.si(value) : powerOfTen(k)) : shortRange ? ST.fmt.si(value) : null;
        ticks.push({ value, label, major: major || shortRange });
      }
    }
    return ticks;
  }

  function extent(values, log) {
    const ok = values.filter((v) => Number.isFinite(v) && (!log || v > 0));
    if (ok.length === 0) return log ? [1, 10] : [0, 1];
    let lo = Math.min(...ok);
    let hi = Math.max(...ok);
    if (log) {
      const pad = 10 ** Math.max(0.05 * Math.log10(hi / lo), 0.08);
      return [lo / pad, hi * pad];
    }
    const pad = (hi - lo) * 0.06 || Math.abs(hi) * 0.1 || 1;
    lo -= pad;
    hi += pad;
    return [lo, hi];
  }

  // -- the chart ---------------------------------------------------------------------------

  // A chart collects layers (points, lines, bands, vertical rules), then draws them into
  // an SVG whose axes span every layer not marked `domain: false` (`domainY: false`: the
  // layer widens the x axis only, so a wide interval cannot squash the data).
  class Chart {
    constructor({ width = 560, height = 320, xLabel = "", yLabel = "", xLog = false, yLog = false, yMax = null }) {
      Object.assign(this, { width, height, xLabel, yLabel, xLog, yLog, yMax });
      this.layers = [];
    }
    points(points, style = {}) {
      this.layers.push({ kind: "points", points, style });
      return this;
    }
    line(points, style = {}) {
      this.layers.push({ kind: "line", points, style });
      return this;
    }
    band(points, style = {}) {
      this.layers.push({ kind: "band", points, style });
      return this;
    }
    vline(x, label, style = {}) {
      this.layers.push({ kind: "vline", points: [{ x }], label, style: { domain: false, ...style } });
      return this;
    }

    _scales() {
      const xs = [];
      const ys = [];
      for (const layer of this.layers) {
        if (layer.style.domain === false) continue;
        for (const p of layer.points) {
          xs.push(p.x);
          if (layer.style.domainY === false) continue;
          if (layer.kind === "band") ys.push(p.lo, p.hi);
          else ys.push(p.y);
        }
      }
      const [ylo, yhi] = extent(ys, this.yLog);
      const yTop = this.yMax !== null && this.yMax < yhi ? this.yMax : yhi;
      return {
        x: new Scale(...extent(xs, this.xLog), this.xLog, MARGIN.left, this.width - MARGIN.right),
        y: new Scale(ylo, yTop, this.yLog, this.height - MARGIN.bottom, MARGIN.top),
      };
    }

    render() {
      const scales = this._scales();
      const root = svg("svg", {
        class: "chart",
        viewBox: `0 0 ${this.width} ${this.height}`,
        width: this.width,
        height: this.height,
        role: "img",
      });
      const clipId = `clip-${Math.random().toString(36).slice(2)}`;
      const plotW = this.width - MARGIN.left - MARGIN.right;
      const plotH = this.height - MARGIN.top - MARGIN.bottom;
      root.append(
        svg("defs", {}, svg("clipPath", { id: clipId }, svg("rect", { x: MARGIN.left, y: MARGIN.top, width: plotW, height: plotH }))),
      );
      root.append(this._axes(scales));
      const body = svg("g", { "clip-path": `url(#${clipId})` });
      for (const layer of this.layers) body.append(DRAW[layer.kind](layer, scales, this));
      root.append(body);
      root.append(svg("rect", { class: "frame", x: MARGIN.left, y: MARGIN.top, width: plotW, height: plotH }));
      return root;
    }

    _axes({ x, y }) {
      const g = svg("g", { class: "axes" });
      const bottom = this.height - MARGIN.bottom;
      for (const t of x.ticks()) {
        const px = x.map(t.value);
        g.append(svg("line", { class: t.major ? "grid" : "grid minor", x1: px, x2: px, y1: MARGIN.top, y2: bottom }));
        if (t.label) g.append(svg("text", { class: "tick", x: px, y: bottom + 15, "text-anchor": "middle" }, t.label));
      }
      for (const t of y.ticks()) {
        const py = y.map(t.value);
        g.append(svg("line", { class: t.major ? "grid" : "grid minor", x1: MARGIN.left, x2: this.width - MARGIN.right, y1: py, y2: py }));
        if (t.label) g.append(svg("text", { class: "tick", x: MARGIN.left - 6, y: py + 4, "text-anchor": "end" }, t.label));
      }
      const midX = (MARGIN.left + this.width - MARGIN.right) / 2;
      const midY = (MARGIN.top + bottom) / 2;
      g.append(svg("text", { class: "axis-label", x: midX, y: this.height - 6, "text-anchor": "middle" }, this.xLabel));
      g.append(
        svg("text", { class: "axis-label", x: 14, y: midY, "text-anchor": "middle", transform: `rotate(-90 14 ${midY})` }, this.yLabel),
      );
      return g;
    }
  }

  function drawPoints(layer, { x, y }) {
    const g = svg("g", { class: layer.style.class || "points" });
    const top = y.pixelHi;
    for (const p of layer.points) {
      if (!Number.isFinite(p.x) || !Number.isFinite(p.y) || (x.log && p.x <= 0) || (y.log && p.y <= 0)) continue;
      const px = x.map(p.x);
      const offScale = y.map(p.y) < top;
      const py = offScale ? top + 5 : y.map(p.y);
      const r = p.r ?? layer.style.r ?? 3.5;
      const fill = p.color ?? layer.style.fill ?? "#4a6fa5";
      const attrs = { fill, stroke: p.stroke ?? layer.style.stroke ?? "none", "stroke-width": layer.style.strokeWidth ?? 1 };
      const shape = offScale
        ? svg("path", { ...attrs, d: `M${px},${py - r - 1} l${r + 1},${2 * r + 2} h${-2 * r - 2} z`, class: "off-scale" })
        : svg("circle", { ...attrs, cx: px, cy: py, r });
      if (p.id !== undefined) shape.setAttribute("data-trial", p.id);
      if (p.onclick) shape.addEventListener("click", p.onclick);
      if (p.title) shape.append(svg("title", {}, p.title));
      g.append(shape);
    }
    return g;
  }

  function path(points, { x, y }, key = "y") {
    const ok = points.filter((p) => Number.isFinite(p[key]) && (!y.log || p[key] > 0) && (!x.log || p.x > 0));
    return ok.map((p, i) => `${i ? "L" : "M"}${x.map(p.x).toFixed(2)},${y.map(p[key]).toFixed(2)}`).join("");
  }

  function drawLine(layer, scales) {
    const s = layer.style;
    return svg("path", {
      class: s.class || "line",
      d: path(layer.points, scales),
      fill: "none",
      stroke: s.stroke || "#c0392b",
      "stroke-width": s.width || 2,
      "stroke-dasharray": s.dash || null,
    });
  }

  function drawBand(layer, scales) {
    const upper = path(layer.points, scales, "hi");
    const lower = path([...layer.points].reverse(), scales, "lo").replace(/^M/, "L");
    return svg("path", {
      class: layer.style.class || "band",
      d: `${upper}${lower}Z`,
      fill: layer.style.fill || "#c0392b",
      "fill-opacity": layer.style.opacity ?? 0.18,
      stroke: "none",
    });
  }

  function drawVline(layer, { x, y }) {
    const px = x.map(layer.points[0].x);
    return svg(
      "g",
      { class: "vline" },
      svg("line", { x1: px, x2: px, y1: y.pixelHi, y2: y.pixelLo, stroke: "#777", "stroke-dasharray": "3 3" }),
      layer.label ? svg("text", { class: "tick", x: px + 4, y: y.pixelLo - 6 }, layer.label) : null,
    );
  }

  const DRAW = { points: drawPoints, line: drawLine, band: drawBand, vline: drawVline };

  // -- colours -----------------------------------------------------------------------------

  // A dark-blue -> teal -> yellow ramp (perceptually ordered, readable on white).
  const RAMP = ["#2d1e6b", "#2a5d9c", "#1e8e8a", "#4fb65b", "#c9cc3f", "#f2b134"];
  const CATEGORIES = ["#1f77b4", "#e6550d", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  function hexToRgb(hex) {
    const n = parseInt(hex.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  function ramp(t) {
    const u = Math.min(1, Math.max(0, t)) * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(u));
    const a = hexToRgb(RAMP[i]);
    const b = hexToRgb(RAMP[i + 1]);
    const f = u - i;
    return `rgb(${a.map((c, k) => Math.round(c + f * (b[k] - c))).join(",")})`;
  }

  // A colour for each value: continuous (log when positive over > 1.5 decades) or
  // categorical; `legend()` draws the matching key as HTML.
  ST.colourScale = function colourScale(values) {
    const defined = values.filter((v) => v !== null && v !== undefined);
    const numeric = defined.length > 0 && defined.every((v) => typeof v === "number");
    const distinct = [...new Set(defined.map(String))];
    if (!numeric || distinct.length <= 6) return categorical(defined, numeric);
    const lo = Math.min(...defined);
    const hi = Math.max(...defined);
    const log = lo > 0 && hi / lo > 30;
    const t = (v) => (log ? Math.log(v / lo) / Math.log(hi / lo) : (v - lo) / (hi - lo || 1));
    return {
      colour: (v) => (typeof v === "number" ? ramp(t(v)) : "#bbb"),
      legend: () =>
        ST.el(
          "div",
          { class: "legend-ramp" },
          ST.el("span", {}, ST.fmt.num(lo, 3)),
          ST.el("span", { class: "ramp", style: `background:linear-gradient(90deg,${RAMP.join(",")})` }),
          ST.el("span", {}, `${ST.fmt.num(hi, 3)}${log ? " (log)" : ""}`),
        ),
    };
  };

  function categorical(defined, numeric) {
    const keys = [...new Set(defined.map(String))];
    if (numeric) keys.sort((a, b) => Number(a) - Number(b));
    else keys.sort();
    const colourOf = new Map(keys.map((k, i) => [k, CATEGORIES[i % CATEGORIES.length]]));
    return {
      colour: (v) => colourOf.get(String(v)) || "#bbb",
      legend: () =>
        ST.el(
          "div",
          { class: "legend-swatches" },
          keys.map((k) => ST.el("span", { class: "swatch" }, ST.el("i", { style: `background:${colourOf.get(k)}` }), ST.fmt.value(numeric ? Number(k) : k))),
        ),
    };
  }

  // -- fitted laws -------------------------------------------------------------------------

  // Student's t quantile at probability p (> 0.5) with `dof` degrees of freedom.
  // With t = sqrt(dof) tan(theta) the density becomes proportional to cos(theta)^(dof-1)
  // on (-pi/2, pi/2), a smooth integrand: the CDF is a Simpson integral and the quantile
  // a bisection on theta.
  const quantileCache = new Map();
  ST.tQuantile = function tQuantile(p, dof) {
    const key = `${p}:${dof}`;
    if (quantileCache.has(key)) return quantileCache.get(key);
    const mass = (a) => simpson((th) => Math.cos(th) ** (dof - 1), 0, a, 400);
    const target = (p - 0.5) * 2 * mass(Math.PI / 2);
    let lo = 0;
    let hi = Math.PI / 2;
    for (let i = 0; i < 60; i++) {
      const mid = (lo + hi) / 2;
      if (mass(mid) < target) lo = mid;
      else hi = mid;
    }
    const t = Math.sqrt(dof) * Math.tan((lo + hi) / 2);
    quantileCache.set(key, t);
    return t;
  };

  function simpson(f, a, b, n) {
    const h = (b - a) / n;
    let sum = f(a) + f(b);
    for (let i = 1; i < n; i++) sum += f(a + i * h) * (i % 2 ? 4 : 2);
    return (sum * h) / 3;
  }

  const INVERSE = {
    ln: Math.exp,
    log2: (y) => 2 ** y,
    logit: (y) => 1 / (1 + Math.exp(-y)),
    identity: (y) => y,
  };

  // A LinearLaw (search/scaling/laws.py) at feature vector `features`: the estimate and
  // interval in the law's transformed space, mapped back through `transform`.
  ST.evalLaw = function evalLaw(law, features, transform) {
    const design = [1, ...features];
    const estimate = design.reduce((s, d, i) => s + d * law.coef[i], 0);
    let variance = 0;
    for (let i = 0; i < design.length; i++) {
      for (let j = 0; j < design.length; j++) variance += design[i] * law.coef_cov[i][j] * design[j];
    }
    const dof = Math.max(law.n_points - law.coef.length, 1);
    const half = ST.tQuantile(0.5 + law.level / 2, dof) * Math.sqrt(Math.max(variance, 0));
    const inv = INVERSE[transform] || INVERSE.identity;
    return { estimate: inv(estimate), lo: inv(estimate - half), hi: inv(estimate + half) };
  };

  // A law of ln(compute) over a log-spaced grid: points {x, y, lo, hi}.
  ST.lawCurve = function lawCurve(law, transform, cMin, cMax, n = 60) {
    const out = [];
    for (let i = 0; i < n; i++) {
      const c = cMin * (cMax / cMin) ** (i / (n - 1));
      const v = ST.evalLaw(law, [Math.log(c)], transform);
      out.push({ x: c, y: v.estimate, lo: v.lo, hi: v.hi });
    }
    return out;
  };

  ST.Chart = Chart;
})();
