// The streamrank monitor page: polls the worker's JSON APIs and draws the charts as inline SVG.
//
// Times from the worker are Unix seconds. Stream-time axes (event_ts) are labelled in UTC,
// because the events' own time zone is unknown, and wall-time axes in the browser's zone.
// Every value from the worker is inserted as text, never as HTML.
"use strict";

(function () {
  const POLL_INTERVAL_MS = 2000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const MAX_ALARM_ROWS = 50;
  // Above this many alarms in view, markers keep their hover title but lose their text label.
  const MAX_ALARM_LABELS = 12;
  const MARGIN = { top: 30, right: 18, bottom: 40, left: 58 };
  // Separator of the two values in a tile. Thin spaces keep "0.308 / 0.179" inside a narrow tile.
  const PAIR = "\u2009/\u2009";

  const state = { stats: null, timeline: [], alarms: [], user: null, lookupNumber: 0, lookupInFlight: false };

  // ---- formatting ---------------------------------------------------------------------------

  function isNumber(value) {
    return typeof value === "number" && Number.isFinite(value);
  }

  function formatNumber(value, digits) {
    if (!isNumber(value)) return "–";
    return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function formatCount(value) {
    return isNumber(value) ? Math.round(value).toLocaleString("en-US") : "–";
  }

  function formatSignificant(value) {
    if (!isNumber(value)) return "–";
    if (value !== 0 && (Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3)) return value.toExponential(2);
    return String(Number(value.toPrecision(3)));
  }

  function formatDuration(seconds) {
    if (!isNumber(seconds)) return "–";
    if (seconds < 10) return formatNumber(Math.max(0, seconds), 1) + " s";
    const s = Math.round(seconds);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  function pad2(n) {
    return String(n).padStart(2, "0");
  }

  function formatTime(ts, utc, withDate, withSeconds) {
    const d = new Date(ts * 1000);
    const get = utc
      ? [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()]
      : [d.getFullYear(), d.getMonth() + 1, d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds()];
    let text = pad2(get[3]) + ":" + pad2(get[4]);
    if (withSeconds) text += ":" + pad2(get[5]);
    if (withDate) text = get[0] + "-" + pad2(get[1]) + "-" + pad2(get[2]) + " " + text;
    return text;
  }

  function formatStreamTime(ts) {
    return isNumber(ts) ? formatTime(ts, true, true, true) + " UTC" : "–";
  }

  // ---- DOM helpers --------------------------------------------------------------------------

  function el(tag, attributes, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    for (const child of children || []) node.append(child);
    return node;
  }

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function cssColor(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function setTile(id, value, unit) {
    const node = document.getElementById(id);
    node.replaceChildren(value);
    if (unit) node.append(el("span", { class: "unit" }, [unit]));
  }

  // ---- scales -------------------------------------------------------------------------------

  // Round [min, max] out to a "nice" step (1, 2 or 5 times a power of ten) and list the ticks.
  function niceTicks(min, max, count) {
    if (min === max) {
      const spread = Math.abs(min) > 0 ? Math.abs(min) * 0.1 : 1;
      min -= spread;
      max += spread;
    }
    const rough = (max - min) / count;
    const power = Math.pow(10, Math.floor(Math.log10(rough)));
    const fraction = rough / power;
    let multiple = 10;
    if (fraction <= 1) multiple = 1;
    else if (fraction <= 2) multiple = 2;
    else if (fraction <= 5) multiple = 5;
    const step = multiple * power;
    const low = Math.floor(min / step) * step;
    const high = Math.ceil(max / step) * step;
    const ticks = [];
    for (let value = low; value <= high + step / 2; value += step) ticks.push(Number(value.toPrecision(12)));
    return { min: low, max: high, ticks };
  }

  const TIME_STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
    86400, 172800, 604800, 2592000];

  // Ticks at round times. On wall-time axes, offsetS makes them round in the browser's time zone.
  function timeTicks(min, max, count, utc) {
    const span = Math.max(max - min, 1);
    const step = TIME_STEPS_S.find((candidate) => span / candidate <= count) || TIME_STEPS_S[TIME_STEPS_S.length - 1];
    const offsetS = utc ? 0 : -new Date(min * 1000).getTimezoneOffset() * 60;
    const first = Math.ceil((min + offsetS) / step) * step - offsetS;
    const withDate = step >= 86400 || span > 86400;
    const withSeconds = step < 60;
    const ticks = [];
    let previousDate = null;
    for (let value = first; value <= max; value += step) {
      const date = formatTime(value, utc, true, false).slice(0, 10);
      let label = step >= 86400 ? date : formatTime(value, utc, withDate, withSeconds);
      // Within one day the ticks show only the time, plus the month and day where the date changes.
      if (!withDate && previousDate !== null && date !== previousDate) label = date.slice(5) + " " + label;
      previousDate = date;
      ticks.push({ value, label });
    }
    return ticks;
  }

  // ---- charts -------------------------------------------------------------------------------

  // A line chart of timeline points. Each series reads one key of the points, and a null value
  // breaks its line. options.xKey is "event_ts" (stream time, UTC) or "wall" (wall time).
  class LineChart {
    constructor(name, options) {
      this.svg = document.getElementById("chart-" + name);
      this.legend = document.getElementById(name + "-legend");
      this.options = options;
      this.tooltip = el("div", { class: "tooltip", hidden: "" });
      this.svg.parentElement.append(this.tooltip);
      this.layout = null;
      this.svg.addEventListener("mousemove", (event) => this.hover(event));
      this.svg.addEventListener("mouseleave", () => this.unhover());
    }

    render(points, alarms) {
      const options = this.options;
      const width = this.svg.clientWidth || 640;
      const height = this.svg.clientHeight || 240;
      const plot = { left: MARGIN.left, top: MARGIN.top, right: width - MARGIN.right, bottom: height - MARGIN.bottom };
      const usable = points.filter((point) => isNumber(point[options.xKey]));
      const series = options.series.map((spec) => ({
        ...spec,
        color: cssColor(spec.colorVar),
        values: usable.map((point) => (isNumber(point[spec.key]) ? point[spec.key] : null)),
      }));
      const nValues = series.reduce((sum, s) => sum + s.values.filter((v) => v !== null).length, 0);
      const nodes = [];
      this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
      this.renderLegend(series, options.showAlarms && alarms.length > 0);

      if (nValues === 0) {
        this.layout = null;
        nodes.push(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty-note" }, options.emptyText));
        this.svg.replaceChildren(...nodes);
        this.svg.dataset.points = "0";
        this.svg.dataset.alarms = "0";
        this.svg.setAttribute("aria-label", options.title + ": " + options.emptyText);
        return;
      }

      const xs = usable.map((point) => point[options.xKey]);
      let xMin = Math.min(...xs);
      let xMax = Math.max(...xs);
      if (xMin === xMax) {
        xMin -= 1;
        xMax += 1;
      }
      const ys = series.flatMap((s) => s.values.filter((v) => v !== null));
      const y = niceTicks(options.yFromZero ? Math.min(0, ...ys) : Math.min(...ys), Math.max(...ys), 4);
      const xScale = (value) => plot.left + ((value - xMin) / (xMax - xMin)) * (plot.right - plot.left);
      const yScale = (value) => plot.bottom - ((value - y.min) / (y.max - y.min)) * (plot.bottom - plot.top);

      for (const tick of y.ticks) {
        const ty = yScale(tick);
        nodes.push(svg("line", { x1: plot.left, x2: plot.right, y1: ty, y2: ty, class: "grid-line" }));
        nodes.push(svg("text", { x: plot.left - 8, y: ty + 4, "text-anchor": "end" }, formatSignificant(tick)));
      }
      for (const tick of timeTicks(xMin, xMax, Math.max(2, Math.floor((plot.right - plot.left) / 110)), options.xKey === "event_ts")) {
        const tx = xScale(tick.value);
        nodes.push(svg("line", { x1: tx, x2: tx, y1: plot.bottom, y2: plot.bottom + 5, class: "axis-line" }));
        nodes.push(svg("text", { x: tx, y: plot.bottom + 18, "text-anchor": "middle" }, tick.label));
      }
      nodes.push(svg("line", { x1: plot.left, x2: plot.right, y1: plot.bottom, y2: plot.bottom, class: "axis-line" }));
      nodes.push(svg("text", { x: (plot.left + plot.right) / 2, y: height - 4, "text-anchor": "middle", class: "axis-title" }, options.xLabel));
      nodes.push(svg("text", {
        x: 0, y: 0, transform: `translate(13 ${(plot.top + plot.bottom) / 2}) rotate(-90)`,
        "text-anchor": "middle", class: "axis-title",
      }, options.yLabel));

      const nAlarms = options.showAlarms ? this.renderAlarms(nodes, alarms, xMin, xMax, xScale, plot) : 0;

      for (const s of series) {
        nodes.push(svg("path", {
          d: linePath(xs, s.values, xScale, yScale), class: "series", stroke: s.color,
          "stroke-dasharray": s.dash || "none", "data-series": s.key,
        }));
        const last = lastIndex(s.values);
        if (last >= 0) {
          nodes.push(svg("circle", { cx: xScale(xs[last]), cy: yScale(s.values[last]), r: 3.5, fill: s.color }));
        }
      }
      this.guide = svg("line", { x1: 0, x2: 0, y1: plot.top, y2: plot.bottom, class: "guide", visibility: "hidden" });
      nodes.push(this.guide);

      this.svg.replaceChildren(...nodes);
      this.svg.dataset.points = String(nValues);
      this.svg.dataset.alarms = String(nAlarms);
      this.layout = { xs, series, xScale, plot, width };
      this.svg.setAttribute("aria-label", this.summary(series, xs, nAlarms));
    }

    renderAlarms(nodes, alarms, xMin, xMax, xScale, plot) {
      const inView = alarms.filter((alarm) => isNumber(alarm.event_ts) && alarm.event_ts >= xMin && alarm.event_ts <= xMax);
      const rowEnds = [-Infinity, -Infinity];
      for (const alarm of inView) {
        const x = xScale(alarm.event_ts);
        const text = `${alarm.detector} · ${alarm.signal}`;
        const title = `Drift alarm: ${alarm.detector} on ${alarm.signal} at ${formatStreamTime(alarm.event_ts)}, ` +
          `model version ${alarm.model_version}, value ${formatSignificant(alarm.value)}, threshold ${formatSignificant(alarm.threshold)}`;
        const group = svg("g", { class: "alarm", "data-detector": alarm.detector });
        group.append(svg("title", {}, title));
        group.append(svg("line", { x1: x, x2: x, y1: plot.top - 4, y2: plot.bottom, class: "alarm-line" }));
        group.append(svg("line", { x1: x, x2: x, y1: plot.top - 4, y2: plot.bottom, class: "alarm-hit" }));
        // Labels go in one of two rows above the plot, right of the line, where they do not overlap.
        const labelWidth = text.length * 6.2;
        const row = rowEnds.findIndex((end) => x + 3 > end + 6);
        if (inView.length <= MAX_ALARM_LABELS && row >= 0 && x + 3 + labelWidth <= plot.right + MARGIN.right) {
          group.append(svg("text", { x: x + 3, y: plot.top - 18 + row * 11, class: "alarm-label" }, text));
          rowEnds[row] = x + 3 + labelWidth;
        }
        nodes.push(group);
      }
      return inView.length;
    }

    renderLegend(series, withAlarms) {
      const items = series.map((s) => {
        const last = lastIndex(s.values);
        const swatch = legendSwatch(s.color, s.dash);
        const value = last >= 0 ? s.format(s.values[last]) : "–";
        return el("span", { class: "legend-item" }, [swatch, s.label + " ", el("b", {}, [value])]);
      });
      if (withAlarms) items.push(el("span", { class: "legend-item" }, [legendSwatch(cssColor("--alarm"), "5 4"), "drift alarm"]));
      this.legend.replaceChildren(...items);
    }

    summary(series, xs, nAlarms) {
      const parts = series.map((s) => {
        const last = lastIndex(s.values);
        return s.label + " " + (last >= 0 ? s.format(s.values[last]) : "no data");
      });
      const at = this.options.xKey === "event_ts" ? formatStreamTime(xs[xs.length - 1]) : formatTime(xs[xs.length - 1], false, false, true);
      let text = `${this.options.title}, latest at ${at}: ${parts.join(", ")}`;
      if (this.options.showAlarms) text += `; ${nAlarms} drift alarm${nAlarms === 1 ? "" : "s"} in view`;
      return text;
    }

    hover(event) {
      const layout = this.layout;
      if (!layout) return;
      const box = this.svg.getBoundingClientRect();
      const x = ((event.clientX - box.left) / box.width) * layout.width;
      if (x < layout.plot.left || x > layout.plot.right) return this.unhover();
      let nearest = 0;
      for (let i = 1; i < layout.xs.length; i++) {
        if (Math.abs(layout.xScale(layout.xs[i]) - x) < Math.abs(layout.xScale(layout.xs[nearest]) - x)) nearest = i;
      }
      const gx = layout.xScale(layout.xs[nearest]);
      this.guide.setAttribute("x1", gx);
      this.guide.setAttribute("x2", gx);
      this.guide.setAttribute("visibility", "visible");
      const ts = layout.xs[nearest];
      const lines = [this.options.xKey === "event_ts" ? formatStreamTime(ts) : formatTime(ts, false, true, true)];
      for (const s of layout.series) lines.push(`${s.label}: ${s.values[nearest] === null ? "–" : s.format(s.values[nearest])}`);
      this.tooltip.replaceChildren(...lines.flatMap((line, i) => (i === 0 ? [line] : [el("br"), line])));
      this.tooltip.hidden = false;
      const left = (gx / layout.width) * box.width;
      this.tooltip.style.left = Math.min(left + 12, box.width - this.tooltip.offsetWidth) + "px";
      this.tooltip.style.top = "8px";
    }

    unhover() {
      this.tooltip.hidden = true;
      if (this.guide) this.guide.setAttribute("visibility", "hidden");
    }
  }

  function linePath(xs, values, xScale, yScale) {
    let d = "";
    let pen = "M";
    for (let i = 0; i < xs.length; i++) {
      if (values[i] === null) {
        pen = "M";
        continue;
      }
      d += `${pen}${xScale(xs[i]).toFixed(1)},${yScale(values[i]).toFixed(1)}`;
      pen = "L";
    }
    return d;
  }

  function lastIndex(values) {
    for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null) return i;
    return -1;
  }

  function legendSwatch(color, dash) {
    const swatch = svg("svg", { width: 22, height: 10, "aria-hidden": "true" });
    swatch.append(svg("line", { x1: 1, x2: 21, y1: 5, y2: 5, stroke: color, "stroke-width": 2.5, "stroke-dasharray": dash || "none" }));
    return swatch;
  }

  const ratio = (value) => formatNumber(value, 3);
  const charts = {
    quality: new LineChart("quality", {
      title: "Ranking quality over stream time", xKey: "event_ts", xLabel: "stream time (event_ts, UTC)",
      yLabel: "rolling metric (0–1)", yFromZero: true, showAlarms: true,
      emptyText: "No quality points yet: they appear once users return after a recommendation.",
      series: [
        { key: "hr_at_10", label: "HR@10", colorVar: "--series-1", format: ratio },
        { key: "ndcg_at_10", label: "NDCG@10", colorVar: "--series-2", dash: "6 3", format: ratio },
      ],
    }),
    loss: new LineChart("loss", {
      title: "Training loss over stream time", xKey: "event_ts", xLabel: "stream time (event_ts, UTC)",
      yLabel: "loss (sampled softmax)", yFromZero: false, showAlarms: true,
      emptyText: "No training step yet.",
      series: [{ key: "loss", label: "loss", colorVar: "--series-3", format: (v) => formatNumber(v, 3) }],
    }),
    throughput: new LineChart("throughput", {
      title: "Throughput over wall time", xKey: "wall", xLabel: "wall time (this browser's time zone)",
      yLabel: "events / s", yFromZero: true, showAlarms: false,
      emptyText: "No events yet.",
      series: [{ key: "events_per_s", label: "events/s", colorVar: "--series-1", format: (v) => formatNumber(v, 1) }],
    }),
    latency: new LineChart("latency", {
      title: "Event to recommendation latency over wall time", xKey: "wall", xLabel: "wall time (this browser's time zone)",
      yLabel: "latency (ms)", yFromZero: true, showAlarms: false,
      emptyText: "No recommendations published yet.",
      series: [
        { key: "latency_ms_p50", label: "p50", colorVar: "--series-1", format: (v) => formatNumber(v, 1) + " ms" },
        { key: "latency_ms_p95", label: "p95", colorVar: "--series-2", dash: "6 3", format: (v) => formatNumber(v, 1) + " ms" },
      ],
    }),
  };

  // ---- summary, alarms, lookup --------------------------------------------------------------

  function renderStats(stats) {
    setState(stats.ready ? "state-ready" : "state-waiting",
      stats.ready ? "ready" : "not ready: waiting for partitions or recovering tables");
    setTile("kpi-events-per-s", formatNumber(stats.events_per_s, 1), "/s");
    setTile("kpi-consumer-lag", formatCount(stats.consumer_lag), isNumber(stats.consumer_lag) ? "messages" : "");
    // Seconds once p95 reaches 1 s, so that both values fit the tile.
    const inSeconds = isNumber(stats.latency_ms_p95) && stats.latency_ms_p95 >= 1000;
    const latency = (ms) => (inSeconds ? formatNumber(ms / 1000, 2) : formatNumber(ms, 1));
    setTile("kpi-latency", latency(stats.latency_ms_p50) + PAIR + latency(stats.latency_ms_p95), inSeconds ? "s" : "ms");
    setTile("kpi-dlq", formatCount(stats.events_invalid), "events");
    setTile("kpi-model-version", formatCount(stats.model_version));
    setTile("kpi-model-age", formatDuration(stats.model_age_s));
    setTile("kpi-examples", formatCount(stats.pending_examples) + PAIR + formatCount(stats.examples_dropped));
    setTile("kpi-quality", formatNumber(stats.hr_at_10, 3) + PAIR + formatNumber(stats.ndcg_at_10, 3));
    setTile("kpi-alarms", formatCount(isNumber(stats.drift_alarms) ? stats.drift_alarms : state.alarms.length));
    document.getElementById("updated").textContent =
      "updated " + formatTime(Date.now() / 1000, false, false, true) + " · up " + formatDuration(stats.uptime_s);
  }

  function renderUnreachable(error) {
    setState("state-down", "worker unreachable: " + error.message);
  }

  // The state line is a live region, so it changes only when the state does.
  function setState(className, text) {
    const node = document.getElementById("state");
    node.className = "state " + className;
    if (node.textContent !== text) node.textContent = text;
  }

  function describeChange(before, after) {
    if (!before || !after || typeof before !== "object" || typeof after !== "object") return "–";
    const keys = Object.keys(before).filter((key) => key in after);
    if (keys.length === 0) return "–";
    return keys.map((key) => `${key} ${formatSignificant(before[key])} → ${formatSignificant(after[key])}`).join(", ");
  }

  function renderAlarms(alarms) {
    const rows = alarms.slice(-MAX_ALARM_ROWS).reverse().map((alarm) => el("tr", {}, [
      el("td", {}, [formatStreamTime(alarm.event_ts)]),
      el("td", { class: "detector" }, [String(alarm.detector)]),
      el("td", {}, [String(alarm.signal)]),
      el("td", { class: "num" }, [formatSignificant(alarm.value) + " / " + formatSignificant(alarm.threshold)]),
      el("td", { class: "num" }, [formatCount(alarm.model_version)]),
      el("td", {}, [describeChange(alarm.before, alarm.after)]),
    ]));
    if (rows.length === 0) rows.push(el("tr", {}, [el("td", { colspan: "6", class: "empty" }, ["No drift alarms yet."])]));
    document.getElementById("alarms-body").replaceChildren(...rows);
  }

  function renderRecommendation(rec, announce) {
    const published = isNumber(rec.published_at) ? formatDuration(Date.now() / 1000 - rec.published_at) + " ago" : "–";
    setLookupStatus(`User ${rec.user_id}: ${rec.items.length} items from the ${rec.source}, model version ` +
      `${rec.model_version}, after event ${rec.event_id} at ${formatStreamTime(rec.ts)}, published ${published}.`, false, announce);
    const scores = rec.items.map((item) => item.score).filter(isNumber);
    const low = Math.min(...scores);
    const high = Math.max(...scores);
    const items = rec.items.map((item, index) => {
      const share = high > low ? 0.06 + 0.94 * ((item.score - low) / (high - low)) : 1;
      const reason = item.reason || {};
      const reasonNode = el("div", { class: "rec-reason" }, []);
      if (reason.kind) reasonNode.append(el("span", { class: "kind" }, [String(reason.kind)]));
      reasonNode.append(reason.text ? String(reason.text) : "no reason given");
      if (Array.isArray(reason.items) && reason.items.length > 0) reasonNode.title = "related items: " + reason.items.join(", ");
      const bar = el("div", { class: "rec-bar", "aria-hidden": "true" }, [el("span", { style: `width: ${(share * 100).toFixed(1)}%` })]);
      return el("li", { class: "rec-item" }, [
        el("span", { class: "rec-rank", "aria-hidden": "true" }, [String(index + 1)]),
        el("span", { class: "rec-item-id" }, [String(item.item_id)]),
        el("span", { class: "rec-score" }, ["score " + formatNumber(item.score, 3)]),
        bar,
        reasonNode,
      ]);
    });
    document.getElementById("recommendation").replaceChildren(...items);
  }

  // Screen readers announce explicit lookups only, not the refresh every 2 s.
  function setLookupStatus(text, isError, announce) {
    const node = document.getElementById("lookup-status");
    node.setAttribute("aria-live", announce ? "polite" : "off");
    node.textContent = text;
    node.classList.toggle("error", isError);
  }

  // Each lookup gets a number, and only the newest one may render, so a slow quiet refresh
  // of the previous user never overwrites the user just typed.
  async function lookup(userId, quiet) {
    if (quiet && state.lookupInFlight) return;
    const number = ++state.lookupNumber;
    state.lookupInFlight = true;
    if (!quiet) setLookupStatus(`Looking up user ${userId}…`, false, true);
    try {
      const response = await fetch("/api/recommendations/" + encodeURIComponent(userId) + "/", { cache: "no-store" });
      const body = await response.json().catch(() => null);
      if (number !== state.lookupNumber) return;
      if (!response.ok) {
        setLookupStatus((body && body.error) || `lookup failed: HTTP ${response.status}`, true, !quiet);
        document.getElementById("recommendation").replaceChildren();
        return;
      }
      renderRecommendation(body, !quiet);
    } catch (error) {
      if (number === state.lookupNumber) setLookupStatus("lookup failed: " + error.message, true, !quiet);
    } finally {
      if (number === state.lookupNumber) state.lookupInFlight = false;
    }
  }

  function startLookup(userId) {
    state.user = userId;
    const url = new URL(window.location.href);
    url.searchParams.set("user", userId);
    window.history.replaceState(null, "", url);
    lookup(userId, false);
  }

  // ---- polling ------------------------------------------------------------------------------

  async function getJson(path) {
    const response = await fetch(path, { cache: "no-store" });
    if (!response.ok) throw new Error(`${path} returned HTTP ${response.status}`);
    return response.json();
  }

  function renderCharts() {
    charts.quality.render(state.timeline, state.alarms);
    charts.loss.render(state.timeline, state.alarms);
    charts.throughput.render(state.timeline, []);
    charts.latency.render(state.timeline, []);
  }

  async function poll() {
    try {
      const [stats, timeline, alarms] = await Promise.all([getJson("/api/stats/"), getJson("/api/timeline/"), getJson("/api/alarms/")]);
      Object.assign(state, { stats, timeline, alarms });
      renderStats(stats);
      renderAlarms(alarms);
      renderCharts();
      if (state.user && document.getElementById("follow").checked) lookup(state.user, true);
    } catch (error) {
      renderUnreachable(error);
    } finally {
      window.setTimeout(poll, POLL_INTERVAL_MS);
    }
  }

  document.getElementById("lookup").addEventListener("submit", (event) => {
    event.preventDefault();
    const userId = document.getElementById("user-id").value.trim();
    if (userId) startLookup(userId);
  });
  window.addEventListener("resize", renderCharts);

  const requested = new URLSearchParams(window.location.search).get("user");
  if (requested) {
    document.getElementById("user-id").value = requested;
    startLookup(requested);
  }
  poll();
})();
