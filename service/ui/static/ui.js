// slimserve trade-off page: a client of the service's JSON (GET /v1/families/{family}/tradeoff,
// PUT /v1/experiments/{name}); no library, no network access beyond this service.
// Every number cell carries the JSON value it shows in data-value, so a test can compare the two.
"use strict";

(function () {
  const REFRESH_MS = 2000;
  const SVG = "http://www.w3.org/2000/svg";
  const app = document.getElementById("app");
  const family = app.dataset.family;
  const statusLine = document.getElementById("status");
  const windowSelect = document.getElementById("window-select");
  const accuracySelect = document.getElementById("accuracy-select");
  let latest = null;
  let weightsShownFor = null; // the experiment configuration the weight inputs were filled from

  // formatting: what people read; data-value keeps the exact JSON value
  const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
  const percent = (v, digits = 1) => (isNumber(v) ? (v * 100).toFixed(digits) + " %" : "–");
  const integer = (v) => (isNumber(v) ? Math.round(v).toLocaleString("en-US") : "–");
  const milliseconds = (v) => (isNumber(v) ? (v * 1000).toFixed(v < 0.001 ? 3 : 2) + " ms" : "–");
  const rate = (v) => (isNumber(v) ? v.toFixed(v < 10 ? 2 : 1) : "–");
  const plain = (v, digits = 4) => (isNumber(v) ? v.toFixed(digits) : "–");

  function cell(row, field, value, text, numeric) {
    const td = document.createElement("td");
    td.dataset.field = field;
    if (value !== null && value !== undefined) td.dataset.value = String(value);
    if (numeric) td.className = "num";
    if (text instanceof Node) td.appendChild(text);
    else td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function span(text, className) {
    const element = document.createElement("span");
    element.className = className;
    element.textContent = text;
    return element;
  }

  function trafficShare(variant, data) {
    return data.experiment ? variant.experiment && variant.experiment.traffic_share : variant.live.share;
  }

  function renderTable(data) {
    const body = document.querySelector("#variants tbody");
    const rows = [];
    for (const variant of data.variants) {
      const row = document.createElement("tr");
      row.dataset.variant = variant.variant;
      const name = document.createElement("span");
      name.appendChild(span(variant.variant, "name"));
      if (variant.default) name.appendChild(span("default", "badge"));
      name.appendChild(span(" v" + variant.version, "sub"));
      cell(row, "variant", variant.variant, name);
      const format = span(variant.format, "");
      format.appendChild(span(variant.runtime, "sub"));
      cell(row, "format", variant.format, format);
      cell(row, "precision", variant.precision, variant.precision);
      cell(row, "bytes", variant.bytes, integer(variant.bytes), true);
      cell(row, "parameters", variant.parameters, integer(variant.parameters), true);
      cell(row, "offline_accuracy", variant.offline_accuracy, percent(variant.offline_accuracy, 2), true);
      const latency = variant.live.latency_seconds;
      cell(row, "p50", latency.p50, milliseconds(latency.p50), true);
      cell(row, "p99", latency.p99, milliseconds(latency.p99), true);
      cell(row, "requests_per_second", variant.live.requests_per_second, rate(variant.live.requests_per_second), true);
      const share = trafficShare(variant, data);
      cell(row, "traffic_share", share, percent(share), true);
      const report = variant.experiment || {};
      const online = document.createElement("span");
      online.textContent = percent(report.online_accuracy, 2);
      if (report.accuracy_ci95) {
        online.appendChild(span("[" + percent(report.accuracy_ci95[0]) + ", " + percent(report.accuracy_ci95[1]) + "]", "sub"));
      }
      if (variant.experiment) online.appendChild(span("n=" + integer(report.labelled), "sub"));
      const onlineCell = cell(row, "online_accuracy", report.online_accuracy, online, true);
      if (report.accuracy_ci95) onlineCell.dataset.ci95 = report.accuracy_ci95.join(",");
      if (variant.experiment) onlineCell.dataset.labelled = String(report.labelled);
      cell(row, "agreement_with_reference", report.agreement_with_reference, percent(report.agreement_with_reference, 2), true);
      cell(row, "kl_divergence_mean_nats", report.kl_divergence_mean_nats, plain(report.kl_divergence_mean_nats), true);
      const verdict = report.non_inferiority;
      const verdictText = verdict
        ? span(verdict.verdict, "verdict-" + verdict.verdict.replace(/ /g, "-"))
        : span(data.experiment && report.variant === data.experiment.reference ? "reference" : "–", "sub");
      if (verdict && isNumber(verdict.p_value)) verdictText.appendChild(span("p=" + verdict.p_value.toPrecision(2), "sub"));
      cell(row, "verdict", verdict ? verdict.verdict : null, verdictText);
      const state = span(variant.state, "state-" + variant.state);
      if (variant.reason) state.title = variant.reason;
      cell(row, "state", variant.state, state);
      rows.push(row);
    }
    body.replaceChildren(...rows);
  }

  // the chart: log-scaled cost on x, accuracy on y
  function svg(name, attributes, parent) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
    if (parent) parent.appendChild(element);
    return element;
  }

  function paretoFrontier(points) {
    // cheaper first; a point is on the frontier when it is more accurate than every cheaper one
    const sorted = [...points].sort((a, b) => a.x - b.x || b.y - a.y);
    const frontier = [];
    let best = -Infinity;
    for (const point of sorted) {
      if (point.y > best) {
        frontier.push(point);
        best = point.y;
      }
    }
    return frontier;
  }

  function drawChart(figure, points, xLabel, formatX) {
    const width = 520, height = 320, left = 56, right = 16, top = 16, bottom = 44;
    const old = figure.querySelector("svg");
    if (old) old.remove();
    const oldNote = figure.querySelector("p");
    if (oldNote) oldNote.remove();
    if (points.length === 0) {
      const note = document.createElement("p");
      note.className = "note";
      note.textContent = "No variant has both numbers yet (send traffic, or feedback for online accuracy).";
      figure.appendChild(note);
      return;
    }
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
                               "aria-label": "accuracy against " + xLabel });
    const xs = points.map((p) => Math.log10(p.x));
    const ys = points.flatMap((p) => [p.y, ...(p.ci || [])]);
    let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
    let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    const padX = Math.max((x1 - x0) * 0.08, 0.05), padY = Math.max((y1 - y0) * 0.1, 0.002);
    x0 -= padX; x1 += padX; y0 = Math.max(0, y0 - padY); y1 = Math.min(1, y1 + padY);
    if (y1 <= y0) y1 = y0 + 0.01;
    const sx = (v) => left + ((Math.log10(v) - x0) / (x1 - x0)) * (width - left - right);
    const sy = (v) => top + (1 - (v - y0) / (y1 - y0)) * (height - top - bottom);
    for (let i = 0; i <= 4; i++) {
      const y = y0 + ((y1 - y0) * i) / 4;
      svg("line", { x1: left, x2: width - right, y1: sy(y), y2: sy(y), class: "grid" }, chart);
      svg("text", { x: left - 6, y: sy(y) + 4, "text-anchor": "end" }, chart).textContent = (y * 100).toFixed(1) + "%";
    }
    for (let i = 0; i <= 3; i++) {
      const x = Math.pow(10, x0 + ((x1 - x0) * i) / 3);
      svg("text", { x: sx(x), y: height - bottom + 16, "text-anchor": i === 3 ? "end" : "middle" }, chart).textContent = formatX(x);
    }
    svg("line", { x1: left, x2: left, y1: top, y2: height - bottom, class: "axis" }, chart);
    svg("line", { x1: left, x2: width - right, y1: height - bottom, y2: height - bottom, class: "axis" }, chart);
    svg("text", { x: (left + width - right) / 2, y: height - 6, "text-anchor": "middle" }, chart).textContent = xLabel + " (log scale)";
    const frontier = paretoFrontier(points);
    // a staircase: every variant below it and to its right is beaten on both accuracy and cost
    const steps = frontier.flatMap((p, i) => (i === 0 ? [[sx(p.x), sy(p.y)]] : [[sx(p.x), sy(frontier[i - 1].y)], [sx(p.x), sy(p.y)]]));
    steps.push([width - right, sy(frontier[frontier.length - 1].y)]);
    svg("polyline", { points: steps.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "), class: "frontier" }, chart);
    const largest = Math.max(...points.map((p) => p.bytes || 1));
    const placed = [];  // label boxes already drawn: a label that would overlap one moves down a line
    for (const point of points) {
      const cx = sx(point.x), cy = sy(point.y);
      if (point.ci) svg("line", { x1: cx, x2: cx, y1: sy(point.ci[0]), y2: sy(point.ci[1]), class: "whisker" }, chart);
      const radius = 4 + 12 * Math.sqrt((point.bytes || 1) / largest);
      const onFrontier = frontier.includes(point);
      const marker = svg("circle", { cx, cy, r: radius.toFixed(1), class: "point" + (onFrontier ? " on-frontier" : ""),
                                     "data-variant": point.variant, "data-frontier": onFrontier }, chart);
      svg("title", {}, marker).textContent = `${point.variant}: ${(point.y * 100).toFixed(2)}%, ${formatX(point.x)}`;
      if (point.isDefault) svg("circle", { cx, cy, r: (radius + 4).toFixed(1), class: "default-ring", "data-default": point.variant }, chart);
      const toTheLeft = cx > width * 0.7;
      const labelWidth = point.variant.length * 6.2;
      const x = toTheLeft ? cx - radius - 3 : cx + radius + 3;
      const box = { left: toTheLeft ? x - labelWidth : x, right: toTheLeft ? x : x + labelWidth, y: cy - 3 };
      while (placed.some((o) => o.left < box.right && box.left < o.right && Math.abs(o.y - box.y) < 12)) box.y += 12;
      placed.push(box);
      svg("text", { x, y: box.y, class: "point-label", "text-anchor": toTheLeft ? "end" : "start" }, chart)
        .textContent = point.variant;
    }
    figure.appendChild(chart);
  }

  function renderCharts(data) {
    const online = accuracySelect.value === "online";
    const accuracyOf = (v) => (online ? v.experiment && v.experiment.online_accuracy : v.offline_accuracy);
    const base = data.variants
      .filter((v) => isNumber(accuracyOf(v)))
      .map((v) => ({ variant: v.variant, y: accuracyOf(v), bytes: v.bytes, isDefault: v.default,
                     ci: online && v.experiment ? v.experiment.accuracy_ci95 : null, p99: v.live.latency_seconds.p99 }));
    drawChart(document.getElementById("chart-latency"),
              base.filter((p) => isNumber(p.p99) && p.p99 > 0).map((p) => ({ ...p, x: p.p99 })),
              "p99 latency", (x) => milliseconds(x));
    drawChart(document.getElementById("chart-bytes"),
              base.filter((p) => isNumber(p.bytes) && p.bytes > 0).map((p) => ({ ...p, x: p.bytes })),
              "model bytes", (x) => (x >= 1e6 ? (x / 1e6).toFixed(1) + " MB" : (x / 1e3).toFixed(0) + " kB"));
  }

  // the experiment: configuration, verdicts, and the admin weight form
  const KNOWN = new Set(["name", "family", "variants", "salt", "sticky_key", "pin_header", "shadow", "margin",
                         "reference", "min_samples", "requests", "shadow_dropped"]);

  function renderExperiment(data) {
    const experiment = data.experiment;
    const summary = document.getElementById("experiment-summary");
    const form = document.getElementById("weights-form");
    document.getElementById("experiment-none").hidden = Boolean(experiment);
    form.hidden = !experiment;
    if (!experiment) {
      summary.replaceChildren();
      return;
    }
    const weights = data.variants
      .filter((v) => v.experiment && v.experiment.weight > 0)
      .map((v) => `${v.variant} ${v.experiment.weight}%`).join(", ");
    const verdicts = data.variants
      .filter((v) => v.experiment && v.experiment.non_inferiority)
      .map((v) => {
        const verdict = v.experiment.non_inferiority;
        const p = isNumber(verdict.p_value) ? `, p=${verdict.p_value.toPrecision(2)}` : "";
        return `${v.variant}: ${verdict.verdict} (${percent(v.experiment.online_accuracy, 2)}, n=${v.experiment.labelled}${p})`;
      }).join("; ");
    const entries = [
      ["experiment", experiment.name],
      ["weights", weights || "–"],
      ["shadow", experiment.shadow ? `${experiment.shadow.variant}, ${experiment.shadow.percent}% of requests` : "none"],
      ["non-inferiority", `against ${experiment.reference}, margin ${percent(experiment.margin, 1)}, ` +
                          `at least ${experiment.min_samples} labels per variant, one-sided test at 5%`],
      ["verdicts", verdicts || "–"],
      ["requests", `${integer(experiment.requests)} routed, ${integer(experiment.shadow_dropped)} shadow copies dropped`],
    ];
    for (const [key, value] of Object.entries(experiment)) {  // what newer services add, shown as it comes
      if (!KNOWN.has(key) && value !== null && value !== undefined) entries.push([key, typeof value === "object" ? JSON.stringify(value) : String(value)]);
    }
    summary.replaceChildren(...entries.flatMap(([key, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = key;
      const dd = document.createElement("dd");
      dd.textContent = value;
      dd.dataset.key = key;
      return [dt, dd];
    }));
    const configuration = JSON.stringify(data.variants.map((v) => [v.variant, v.experiment ? v.experiment.weight : 0]));
    if (configuration !== weightsShownFor && !form.contains(document.activeElement)) {
      weightsShownFor = configuration;
      const inputs = data.variants.map((v) => {
        const label = document.createElement("label");
        label.textContent = v.variant;
        const input = document.createElement("input");
        Object.assign(input, { type: "number", min: 0, max: 100, step: 1, value: v.experiment ? v.experiment.weight : 0 });
        input.dataset.variant = v.variant;
        label.appendChild(input);
        return label;
      });
      document.getElementById("weights-inputs").replaceChildren(...inputs);
    }
  }

  async function applyWeights(event) {
    event.preventDefault();
    const result = document.getElementById("weights-result");
    if (!latest || !latest.experiment) return;
    const weights = {};
    for (const input of document.querySelectorAll("#weights-inputs input")) {
      const weight = Number(input.value);
      if (weight > 0) weights[input.dataset.variant] = weight;
    }
    const token = document.getElementById("admin-token").value;  // read here, kept nowhere else
    const headers = { "content-type": "application/json" };
    if (token) headers.authorization = "Bearer " + token;
    result.className = "";
    result.textContent = "applying…";
    try {
      const response = await fetch("/v1/experiments/" + encodeURIComponent(latest.experiment.name), {
        method: "PUT", headers, body: JSON.stringify({ weights }), cache: "no-store", credentials: "omit",
      });
      const body = await response.json().catch(() => ({}));
      if (response.ok) {
        result.textContent = "applied: " + Object.entries(weights).map(([v, w]) => `${v} ${w}%`).join(", ");
        weightsShownFor = null;
        await refresh();
      } else {
        result.className = "error";
        result.textContent = `refused (${response.status}): ${body.error || response.statusText}`;
      }
      result.dataset.status = String(response.status);
    } catch (error) {
      result.className = "error";
      result.textContent = "could not reach the service: " + error;
    }
  }

  async function refresh() {
    const url = `/v1/families/${encodeURIComponent(family)}/tradeoff?window_s=${windowSelect.value}`;
    try {
      const response = await fetch(url, { cache: "no-store", credentials: "omit" });
      const body = await response.json();
      if (!response.ok) throw new Error(`${response.status}: ${body.error}`);
      latest = body;
      renderTable(body);
      renderCharts(body);
      renderExperiment(body);
      statusLine.className = "status";
      statusLine.textContent = "updated " + new Date().toLocaleTimeString();
      app.dataset.refreshes = String(Number(app.dataset.refreshes) + 1);
    } catch (error) {
      statusLine.className = "status error";
      statusLine.textContent = "cannot read " + url + ": " + error.message;
    }
  }

  document.getElementById("family-select").addEventListener("change", (event) => {
    window.location.assign("/ui/" + encodeURIComponent(event.target.value));
  });
  const asked = new URLSearchParams(window.location.search).get("window_s");
  if (asked && [...windowSelect.options].some((o) => o.value === asked)) windowSelect.value = asked;
  windowSelect.addEventListener("change", refresh);
  accuracySelect.addEventListener("change", () => latest && renderCharts(latest));
  document.getElementById("weights-form").addEventListener("submit", applyWeights);
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
