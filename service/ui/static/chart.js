// slimserve trade-off chart: accuracy against a cost (log scale) as inline SVG, the Pareto frontier drawn as a
// staircase, the default variant ringed. No library: ui.js calls SlimserveChart.draw(figure, points, ...).
"use strict";

const SlimserveChart = (function () {
  const SVG = "http://www.w3.org/2000/svg";

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

  return { draw: drawChart, paretoFrontier };
})();
