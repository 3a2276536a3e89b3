// slimserve trade-off page (its chart: chart.js), a client of the service's JSON:
// GET /v1/families/{family}/tradeoff and PUT /v1/experiments/{name}; no library, nothing beyond this service.
// Every number cell carries the JSON value it shows in data-value, so a test can compare the two.
"use strict";

(function () {
  const REFRESH_MS = 2000;
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

  function renderCharts(data) {
    const online = accuracySelect.value === "online";
    const accuracyOf = (v) => (online ? v.experiment && v.experiment.online_accuracy : v.offline_accuracy);
    const base = data.variants
      .filter((v) => isNumber(accuracyOf(v)))
      .map((v) => ({ variant: v.variant, y: accuracyOf(v), bytes: v.bytes, isDefault: v.default,
                     ci: online && v.experiment ? v.experiment.accuracy_ci95 : null, p99: v.live.latency_seconds.p99 }));
    SlimserveChart.draw(document.getElementById("chart-latency"),
              base.filter((p) => isNumber(p.p99) && p.p99 > 0).map((p) => ({ ...p, x: p.p99 })),
              "p99 latency", (x) => milliseconds(x));
    SlimserveChart.draw(document.getElementById("chart-bytes"),
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
