// One target: card facts, figures of the selected range, uPlot charts with event markers, the
// figures by probe region and probes vs gateway traffic, and the latest raw checks. The range
// is kept in the URL (?range=24h).

import {
  reportBug,
  $id, ApiError, OFFICIAL_LABEL, TimeChart, api, el, errorColor, errorOrder, fmtAgo, fmtInt,
  fmtMs, fmtMsAxis, fmtNum, fmtPct, fmtSince, fmtTime, fmtTps, fmtUsd, fmtDuration, maintenanceText, poll, renderNav,
  rangeSwitch, replace, setAttr, setStatusBadge, setText, setValue, showError, statusLabel,
  targetFromPath, toTs, withQuery,
} from "/static/common.js";

const RANGES = ["1h", "24h", "7d", "30d"];
const DEFAULT_RANGE = "24h";
const REFRESH_MS = {"1h": 30000, "24h": 60000, "7d": 120000, "30d": 300000};

renderNav(null);
const name = targetFromPath();
setText($id("target-name"), name);
document.title = `${name} · llmpulse`;

const charts = {};
let seq = 0;
let known = false;

// The range buttons; ``poller`` is defined below, before any click can reach it.
const currentRange = rangeSwitch(
  RANGES,
  DEFAULT_RANGE,
  () => poller.refresh(),
  (range) => setText($id("window-label"), range),
);

// ---- charts ----------------------------------------------------------------------------------

const SYNC = "target";
const mkChart = (id, opts) => {
  charts[id] = new TimeChart($id(id), {sync: SYNC, ...opts});
  return charts[id];
};

function ensureCharts() {
  if (charts["chart-ttft"]) return;
  const pct = (v) => fmtPct(v);
  mkChart("chart-ttft", {
    yFormat: fmtMs,
    axisFormat: fmtMsAxis,
    series: [
      {label: "p50", color: "#0969da"},
      {label: "p95", color: "#bc4c00"},
      {label: "p99", color: "#cf222e", dash: [4, 3]},
    ],
  });
  mkChart("chart-latency", {
    yFormat: fmtMs,
    axisFormat: fmtMsAxis,
    series: [
      {label: "p50", color: "#0969da"},
      {label: "p95", color: "#bc4c00"},
      {label: "p99", color: "#cf222e", dash: [4, 3]},
    ],
  });
  mkChart("chart-tps", {yFormat: (v) => fmtNum(v), series: [{label: "tokens/s p50", color: "#1a7f37"}]});
  mkChart("chart-errors", {yFormat: pct, bars: true, stacked: true, yMax: null, series: []});
  mkChart("chart-ratelimit", {
    yFormat: (v) => fmtPct(v, 0),
    yMin: 0,
    yMax: 1,
    thresholds: [
      {value: 0.7, color: "#bf8700"},
      {value: 0.9, color: "#cf222e"},
    ],
    series: [{label: "utilization", color: "#8250df", fill: "rgba(130,80,223,0.08)"}],
  });
  mkChart("chart-tokens", {yFormat: (v) => fmtNum(v), series: [{label: "tokens/request", color: "#1b7c83"}]});
  // Context window use, probes and traffic apart: a probe's prompt is a few tokens, so on one
  // scale with real requests it would be a flat line, and together they would hide both.
  for (const source of ["traffic", "probe"]) {
    mkChart(`chart-context-${source}`, {
      yFormat: fmtShare,
      axisSize: 80, // room for a probe's "0.0040 %"
      series: [
        {label: "p95", color: "#bc4c00"},
        {label: "max", color: "#cf222e", dash: [4, 3]},
      ],
    });
  }
  mkChart("chart-cost", {yFormat: fmtUsd, bars: true, series: [{label: "cost", color: "#9a6700"}]});
}

/** A share of the context window: percent, with the digits a probe's tiny share needs. */
function fmtShare(v) {
  if (typeof v === "number" && v > 0 && v < 1e-4) return `${(v * 100).toPrecision(2)} %`;
  return fmtPct(v);
}

function drawCharts(s, context, markers) {
  ensureCharts();
  const ts = s.ts || [];
  const n = ts.length;
  const col = (c) => (Array.isArray(c) && c.length === n ? c : new Array(n).fill(null));
  for (const c of Object.values(charts)) c.opts.step = s.step_s;
  charts["chart-ttft"].setData(ts, [col(s.ttft_p50), col(s.ttft_p95), col(s.ttft_p99)], markers);
  charts["chart-latency"].setData(ts, [col(s.latency_p50), col(s.latency_p95), col(s.latency_p99)], markers);
  charts["chart-tps"].setData(ts, [col(s.tps_p50)], markers);

  // Errors by class: each class's count over the bucket's checks; null where nothing ran.
  const count = col(s.count);
  const classes = Object.keys(s.errors || {})
    .filter((c) => (s.errors[c] || []).some((v) => v))
    .sort(errorOrder);
  const share = (arr) => count.map((c, i) => (c ? (arr[i] || 0) / c : null));
  let errSeries;
  let errCols;
  if (classes.length) {
    errSeries = classes.map((c, i) => ({label: c, color: errorColor(c, i)}));
    errCols = classes.map((c) => share(col(s.errors[c])));
  } else {
    errSeries = [{label: "no errors", color: "#1a7f37"}];
    errCols = [count.map((c) => (c ? 0 : null))];
  }
  charts["chart-errors"].setData(ts, errCols, markers, errSeries);

  charts["chart-ratelimit"].setData(ts, [col(s.ratelimit_utilization)], markers);
  charts["chart-tokens"].setData(ts, [col(s.tokens_per_request)], markers);
  // The same ranges and steps as the series: the buckets line up; null where they do not.
  const at = new Map((context.ts || []).map((t, i) => [t, i]));
  for (const source of ["traffic", "probe"]) {
    const c = (context.sources || {})[source] || {};
    const pick = (arr) => ts.map((t) => (at.has(t) && Array.isArray(arr) ? arr[at.get(t)] ?? null : null));
    charts[`chart-context-${source}`].setData(ts, [pick(c.p95), pick(c.max)], markers);
  }
  charts["chart-cost"].setData(ts, [col(s.cost)], markers);
  setText($id("chart-step"), `${n} buckets of ${fmtDuration(s.step_s)}`);
}

// ---- facts -----------------------------------------------------------------------------------

function renderFacts(detail) {
  const c = detail.card;
  const t = detail.target;
  setStatusBadge($id("target-status"), c.status);
  setAttr($id("target-since"), "data-value", c.status_since ?? "");
  setText($id("target-since"), c.status_since == null ? "" : `since ${fmtSince(c.status_since)} (${fmtTime(c.status_since)})`);
  document.title = `${statusLabel(c.status)} · ${name} · llmpulse`;
  setText($id("target-reason"), c.status_reason || "—");
  setText($id("target-provider"), c.provider);
  setText($id("target-model"), c.model);
  setValue($id("target-served-model"), c.served_model, String);
  setText($id("target-checks"), `${(t.checks || []).join(", ") || "—"} every ${fmtDuration(t.interval_s)}`);
  setAttr($id("target-last-check"), "data-value", c.last_check_ts ?? "");
  setText($id("target-last-check"), c.last_check_ts == null ? "no check yet" : fmtAgo(c.last_check_ts));
  // Inference and stream skipped this turn: successful traffic checked the target already.
  const byTraffic = Object.keys(c.checked_by_traffic || {}).sort();
  $id("target-by-traffic-fact").hidden = byTraffic.length === 0;
  setAttr($id("target-by-traffic"), "data-value", byTraffic.join(","));
  setText($id("target-by-traffic"), byTraffic.length
    ? `${byTraffic.join(", ")}: checked by traffic, ${fmtAgo(Math.max(...Object.values(c.checked_by_traffic)))}`
    : "—");
  const off = $id("target-official");
  setAttr(off, "data-indicator", c.official ? c.official.indicator : "");
  if (c.official) {
    const text = c.official.description || OFFICIAL_LABEL[c.official.indicator] || c.official.indicator;
    replace(off, c.official.url ? el("a", {href: c.official.url, target: "_blank", rel: "noopener noreferrer", text}) : text);
  } else {
    replace(off, el("span", {class: "faint", text: "no official status"}));
  }
  // What the provider's status page announces: under way first, then upcoming.
  const maintenances = c.official ? c.official.maintenances || [] : [];
  $id("target-maintenance-fact").hidden = maintenances.length === 0;
  replace(
    $id("target-maintenance"),
    maintenances.map((m) =>
      el("li", {"data-testid": "maintenance-item", "data-status": m.status, "data-start": m.starts_at ?? "", "data-end": m.ends_at ?? ""}, maintenanceText(m)),
    ),
  );
}

const STATS = [
  ["count", "Checks", fmtInt],
  ["availability", "Availability", (v) => fmtPct(v)],
  // Beside availability: of the answers, the share that met their probes' expectations.
  ["correct_rate", "Correct answers", (v) => fmtPct(v)],
  ["error_rate", "Error rate", (v) => fmtPct(v)],
  ["ttft_p50", "TTFT p50", fmtMs],
  ["ttft_p95", "TTFT p95", fmtMs],
  ["latency_p95", "Latency p95", fmtMs],
  ["tps_p50", "Tokens/s p50", fmtTps],
  ["ratelimit_utilization_max", "Rate limit max", (v) => fmtPct(v, 0)],
  ["tokens_per_request", "Tokens/request", (v) => fmtNum(v)],
  ["context_utilization_max", "Context window max", fmtShare],
  ["cost_total", "Cost", fmtUsd],
];

function renderWindow(detail, range) {
  const agg = (detail.windows || {})[range] || {};
  const box = $id("window-stats");
  if (!box.children.length) {
    replace(
      box,
      STATS.map(([field, label]) =>
        el("div", {class: "panel kpi", "data-testid": "stat", "data-field": field}, el("span", {class: "label", text: label}), el("span", {class: "v"})),
      ),
    );
  }
  for (const [field, , fmt] of STATS) {
    const node = box.querySelector(`[data-field="${field}"] .v`);
    setValue(node, agg[field] ?? null, fmt);
  }
  const errs = fmtErrors(agg.errors);
  setText($id("window-span"), errs ? `errors: ${errs}` : agg.count ? "no errors" : "no checks in this range");
}

/** "unavailable 5, timeout 1", most frequent first; "" without errors. */
function fmtErrors(errors) {
  const errs = Object.entries(errors || {}).sort((a, b) => b[1] - a[1]);
  return errs.map(([k, v]) => `${k} ${v}`).join(", ");
}

// ---- each check ---------------------------------------------------------------------------------

const CHECK_COLUMNS = [
  ["count", "Checks", fmtInt],
  ["availability", "Availability", (v) => fmtPct(v)],
  ["correct_rate", "Correct answers", (v) => fmtPct(v)],
  ["error_rate", "Error rate", (v) => fmtPct(v)],
  ["latency_p50_ms", "Latency p50", fmtMs],
  ["ttft_p50_ms", "TTFT p50", fmtMs],
];

// One row per check, the built-in ones by kind, then each custom probe by its name. The latest
// wrong answer's excerpt is provider text: set as text only, never as markup.
function renderChecks(checks) {
  $id("checks").hidden = checks.length === 0;
  if (!checks.length) return;
  setText($id("checks-window"), `last ${checks[0].window}`);
  const table = $id("checks-table");
  const head = table.querySelector("thead");
  if (!head.children.length) {
    replace(
      head,
      el(
        "tr",
        {},
        el("th", {text: "Check"}),
        el("th", {text: "Kind"}),
        CHECK_COLUMNS.map(([, text]) => el("th", {class: "n", text})),
        el("th", {text: "Last check"}),
        el("th", {text: "Latest wrong answer"}),
      ),
    );
  }
  replace(
    table.querySelector("tbody"),
    checks.map((c) => {
      const wrong = c.last_wrong_answer;
      return el(
        "tr",
        {"data-testid": "check-row", "data-name": c.name, "data-kind": c.kind, "data-custom": String(c.custom), class: c.last_ok === false ? "failed" : ""},
        el("td", {"data-field": "name", text: c.name}),
        el("td", {"data-field": "kind", text: c.custom ? `${c.kind} · custom probe` : c.kind}),
        CHECK_COLUMNS.map(([field, , format]) => cell(field, c[field], format)),
        el("td", {class: "nowrap", "data-field": "last_check_ts", "data-value": c.last_check_ts ?? "", text: c.last_check_ts == null ? "—" : fmtAgo(c.last_check_ts)}),
        el(
          "td",
          {class: wrong ? "msg" : "faint", "data-field": "last_wrong_answer", "data-value": wrong ? wrong.ts : ""},
          wrong ? el("span", {text: `${fmtAgo(wrong.ts)}: ${wrong.message ?? "expectation failed"}`}) : "—",
          wrong && wrong.answer_excerpt != null ? [el("br"), "answered ", el("q", {class: "mono", "data-testid": "answer-excerpt", text: wrong.answer_excerpt})] : "",
        ),
      );
    }),
  );
}

// ---- by region, probes vs traffic --------------------------------------------------------------

// Breakdowns read the raw results, kept for 7 days: the 30-day range shows the last 7.
const BREAKDOWN_WINDOW = {"1h": "1h", "24h": "24h", "7d": "7d", "30d": "7d"};
const BREAKDOWN_COLUMNS = [
  ["count", "Checks", fmtInt],
  ["ok", "OK", fmtInt],
  ["error_rate", "Error rate", (v) => fmtPct(v)],
  ["ttft_p50", "TTFT p50", fmtMs],
  ["ttft_p95", "TTFT p95", fmtMs],
  ["ttft_p99", "TTFT p99", fmtMs],
  ["latency_p50", "Latency p50", fmtMs],
  ["latency_p95", "Latency p95", fmtMs],
  ["tps_p50", "Tok/s p50", (v) => fmtNum(v)],
  ["context_utilization_p95", "Context p95", fmtShare],
];
const SOURCE_LABEL = {probe: "probes", traffic: "gateway traffic"};
const GROUP_LABEL = {
  region: (key) => key || "no region",
  source: (key) => SOURCE_LABEL[key] || key,
};

// A table per breakdown (testid breakdown-region / breakdown-source), shown when it tells
// something: more than one region, or traffic beside the probes.
function renderBreakdown(data, show) {
  const testid = `breakdown-${data.by}`;
  $id(testid).hidden = !show;
  if (!show) return;
  setText($id(`${testid}-window`), `last ${data.window}`);
  const table = $id(`${testid}-table`);
  const head = table.querySelector("thead");
  if (!head.children.length) {
    const label = data.by === "region" ? "Region" : "Source";
    replace(
      head,
      el(
        "tr",
        {},
        el("th", {text: label}),
        BREAKDOWN_COLUMNS.map(([, text]) => el("th", {class: "n", text})),
        el("th", {text: "Errors"}),
        el("th", {text: "Last seen"}),
      ),
    );
  }
  replace(
    table.querySelector("tbody"),
    Object.entries(data.groups).map(([key, g]) =>
      el(
        "tr",
        {"data-testid": "breakdown-row", "data-key": key},
        el("td", {"data-field": "key", "data-value": key, text: GROUP_LABEL[data.by](key)}),
        BREAKDOWN_COLUMNS.map(([field, , format]) => cell(field, g[field], format)),
        el("td", {"data-field": "errors", "data-value": JSON.stringify(g.errors || {}), text: fmtErrors(g.errors) || "—"}),
        el("td", {class: "nowrap", "data-field": "last_ts", "data-value": g.last_ts ?? "", title: g.last_ts == null ? "" : fmtTime(g.last_ts), text: fmtAgo(g.last_ts)}),
      ),
    ),
  );
}

// ---- results table ---------------------------------------------------------------------------

function cell(field, value, format, cls = "n") {
  return setValue(el("td", {class: cls, "data-field": field}), value, format);
}

// A text that a single-agent setup leaves null (agent, region): shown as a faint dash.
function optional(field, value) {
  return el("td", {"data-field": field, "data-value": value ?? "", class: value == null ? "faint" : "", text: value ?? "—"});
}

function renderResults(results) {
  const tbody = $id("results-table").querySelector("tbody");
  $id("results-empty").hidden = results.length > 0;
  replace(
    tbody,
    results.map((r) => {
      const ts = toTs(r.timestamp);
      return el(
        "tr",
        {"data-testid": "result-row", class: r.ok ? "" : "failed", "data-ok": r.ok ? "true" : "false"},
        el("td", {class: "nowrap", "data-field": "timestamp", "data-value": r.timestamp ?? "", title: r.timestamp ?? "", text: fmtTime(ts)}),
        // A custom probe by its name, with its kind; a built-in check's name is its kind.
        el("td", {"data-field": "check", "data-kind": r.kind ?? "", text: r.check === r.kind || !r.kind ? r.check ?? "—" : `${r.check} (${r.kind})`}),
        el("td", {"data-field": "source", "data-value": r.source ?? "", class: `src-${r.source}`, text: r.source ?? "—"}),
        optional("region", r.region),
        optional("agent", r.agent),
        el("td", {"data-field": "ok", "data-value": String(!!r.ok)}, el("span", {class: r.ok ? "ok-yes" : "ok-no", text: r.ok ? "✓ ok" : "✗ failed"})),
        el("td", {"data-field": "error_class", "data-value": r.error_class ?? "", text: r.error_class ?? "—", class: r.error_class ? "" : "faint"}),
        cell("http_status", r.http_status, String),
        cell("ttft_ms", r.ttft_ms, fmtMs),
        cell("latency_ms", r.latency_ms, fmtMs),
        cell("tokens_per_s", r.tokens_per_s, (v) => fmtNum(v)),
        el("td", {class: "mono", "data-field": "response_model", "data-value": r.response_model ?? "", text: r.response_model ?? "—"}),
        el("td", {class: "msg", "data-field": "error_message", text: r.error_message ?? ""}),
      );
    }),
  );
}

// ---- load ------------------------------------------------------------------------------------

async function load() {
  const range = currentRange();
  const mine = ++seq;
  const q = {target: name};
  const enc = encodeURIComponent(name);
  try {
    // Until the target is known to exist, ask for it alone: an unknown name costs one 404.
    const first = known ? null : await api(`/api/v1/targets/${enc}`);
    const span = BREAKDOWN_WINDOW[range];
    const [detail, series, context, events, results, regions, sources] = await Promise.all([
      first || api(`/api/v1/targets/${enc}`),
      api(withQuery("/api/v1/series", {...q, range})),
      api(withQuery("/api/v1/context_utilization", {...q, range})),
      api(withQuery("/api/v1/events", {...q, range})),
      api(withQuery("/api/v1/results", {...q, limit: 50})),
      // Regions are where probes measure from: the gateway's traffic would blur them.
      api(withQuery("/api/v1/breakdown", {...q, by: "region", source: "probe", window: span})),
      api(withQuery("/api/v1/breakdown", {...q, by: "source", window: span})),
    ]);
    known = true;
    if (mine !== seq) return; // a newer range was asked for meanwhile
    showError(null);
    $id("target-body").hidden = false;
    renderFacts(detail);
    renderWindow(detail, range);
    renderChecks(detail.checks || []);
    const markers = (events.events || []).filter((e) => typeof e.ts === "number");
    drawCharts(series, context, markers);
    renderResults(results.results || []);
    renderBreakdown(regions, Object.keys(regions.groups).length > 1);
    renderBreakdown(sources, "traffic" in sources.groups);
  } catch (err) {
    reportBug(err);
    if (mine !== seq) return;
    if (err instanceof ApiError && err.status === 401) {
      location.assign("/login");
      return;
    }
    if (err instanceof ApiError && err.status === 404) {
      $id("target-body").hidden = true;
      showError(`Unknown target “${name}”: ${err.message}`);
      return;
    }
    showError(`Could not load ${name}: ${err.message}`);
  }
}

// The interval follows the range shown, which the buttons change without a reload.
const poller = poll(load, () => REFRESH_MS[currentRange()] || 60000);
