// Cost: spend per UTC day, and per key, team, user, tag, model and provider over a range,
// gateway traffic and the probes' own spend apart (GET /api/v1/costs?by=...).

import {
  reportBug,
  $id, PALETTE, TimeChart, api, el, fmtInt, fmtUsd, renderNav, replace, setAttr,
  setValue, showError, withQuery,
} from "/static/common.js";

renderNav("cost");

const DAYS = [1, 7, 30, 90];
const BY = ["key", "team", "user", "tag", "model", "provider"];
const TOP = ["key", "team", "user", "tag"];
const DAY_S = 86400;
const TABLE_LIMIT = 100;
const TOP_LIMIT = 5;
const SOURCES = [
  {source: "traffic", label: "traffic", color: PALETTE[0]},
  {source: "probe", label: "probes", color: PALETTE[3]},
];
let daily = null;
let seq = 0;

const dayTs = (day) => Date.parse(`${day}T00:00:00Z`) / 1000;
const tsDay = (ts) => new Date(ts * 1000).toISOString().slice(0, 10);
const isDay = (s) => typeof s === "string" && /^\d{4}-\d{2}-\d{2}$/.test(s) && !Number.isNaN(dayTs(s));

/** The range in the URL: ?days=N (UTC days up to now) or ?from=&to= (UTC days, inclusive). */
function currentRange() {
  const q = new URLSearchParams(location.search);
  const from = q.get("from");
  const to = q.get("to");
  if (isDay(from) && isDay(to) && dayTs(from) <= dayTs(to)) return {from, to, days: null};
  const d = Number(q.get("days"));
  return {from: null, to: null, days: DAYS.includes(d) ? d : 30};
}
function currentBy() {
  const by = new URLSearchParams(location.search).get("by");
  return BY.includes(by) ? by : "key";
}
/** The API's from/to for a range. */
function rangeQuery(r) {
  if (r.days) {
    const today = dayTs(tsDay(Date.now() / 1000));
    return {from: new Date((today - (r.days - 1) * DAY_S) * 1000).toISOString()};
  }
  return {from: `${r.from}T00:00:00Z`, to: new Date((dayTs(r.to) + DAY_S) * 1000).toISOString()};
}
function navigate(params) {
  const url = new URL(location.href);
  for (const [k, v] of Object.entries(params)) {
    if (v === null) url.searchParams.delete(k);
    else url.searchParams.set(k, String(v));
  }
  history.pushState(null, "", url);
  load();
}

for (const b of document.querySelectorAll("[data-days]")) {
  b.addEventListener("click", () => navigate({days: Number(b.dataset.days), from: null, to: null}));
}
for (const b of $id("cost-by").querySelectorAll("[data-by]")) {
  b.addEventListener("click", () => navigate({by: b.dataset.by}));
}
$id("cost-range").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const from = $id("cost-from").value;
  const to = $id("cost-to").value;
  if (!isDay(from) || !isDay(to) || dayTs(from) > dayTs(to)) {
    showError("Pick a start day on or before the end day.");
    return;
  }
  navigate({from, to, days: null});
});
window.addEventListener("popstate", load);

function setControls(r, by) {
  for (const b of document.querySelectorAll("[data-days]")) setAttr(b, "aria-pressed", Number(b.dataset.days) === r.days ? "true" : "false");
  for (const b of $id("cost-by").querySelectorAll("[data-by]")) setAttr(b, "aria-pressed", b.dataset.by === by ? "true" : "false");
  if (r.from) {
    $id("cost-from").value = r.from;
    $id("cost-to").value = r.to;
  } else {
    const today = tsDay(Date.now() / 1000);
    $id("cost-from").value = tsDay(dayTs(today) - (r.days - 1) * DAY_S);
    $id("cost-to").value = today;
  }
}

const ownerName = (row) => (row.other ? "other (past the daily top N)" : row.name ?? "(none)");
const total = (data, source) => (data.totals || []).find((t) => t.source === source) || null;

function renderKpis(data, nDays) {
  const traffic = total(data, "traffic");
  const probe = total(data, "probe");
  setValue($id("cost-traffic"), traffic ? traffic.cost_usd : 0, fmtUsd);
  setValue($id("cost-probe"), probe ? probe.cost_usd : 0, fmtUsd);
  setValue($id("cost-per-day"), (traffic ? traffic.cost_usd : 0) / nDays, fmtUsd);
  setValue($id("cost-requests"), traffic ? traffic.requests : 0, fmtInt);
  setValue($id("cost-tokens"), traffic ? traffic.input_tokens + traffic.output_tokens : 0, fmtInt);
}

function renderDaily(data, firstDay, nDays) {
  // One day is one bar: the figures above say it all.
  $id("cost-daily").hidden = nDays < 2;
  if (nDays < 2) return;
  const axis = Array.from({length: nDays}, (_, i) => firstDay + i * DAY_S);
  const index = new Map(axis.map((t, i) => [t, i]));
  const cols = SOURCES.map(({source}) => {
    const col = new Array(axis.length).fill(null);
    for (const r of data.rows) {
      const i = index.get(dayTs(r.name));
      if (r.source === source && i !== undefined) col[i] = (col[i] ?? 0) + r.cost_usd;
    }
    return col;
  });
  if (!daily) {
    daily = new TimeChart($id("chart-cost-daily"), {
      yFormat: fmtUsd, bars: true, stacked: true, step: DAY_S, utc: true, height: 260,
      xFormat: (t) => tsDay(t), series: [],
    });
  }
  daily.setData(axis, cols, [], SOURCES.map(({label, color}) => ({label, color})));
}

function shareCell(value, whole) {
  const bar = el("span");
  bar.style.width = `${whole > 0 ? Math.min(100, (value / whole) * 100) : 0}%`;
  return el("td", {class: "nowrap"}, whole > 0 ? `${((value / whole) * 100).toFixed(1)} %` : "—", el("span", {class: "share"}, bar));
}

function renderTable(data) {
  const rows = data.rows || [];
  $id("cost-empty").hidden = rows.length > 0;
  $id("cost-table").hidden = rows.length === 0;
  const whole = Object.fromEntries((data.totals || []).map((t) => [t.source, t.cost_usd]));
  replace(
    $id("cost-table").querySelector("tbody"),
    rows.map((r) =>
      el(
        "tr",
        {"data-testid": "cost-row", "data-name": r.name ?? "", "data-source": r.source, "data-other": r.other ? "true" : "false", "data-value": r.cost_usd},
        el("td", {class: r.name === null ? "muted" : ""}, ownerName(r)),
        el("td", {text: r.source}),
        setValue(el("td", {class: "n", "data-field": "requests"}), r.requests, fmtInt),
        setValue(el("td", {class: "n", "data-field": "input_tokens"}), r.input_tokens, fmtInt),
        setValue(el("td", {class: "n", "data-field": "output_tokens"}), r.output_tokens, fmtInt),
        setValue(el("td", {class: "n", "data-field": "cost_usd"}), r.cost_usd, fmtUsd),
        shareCell(r.cost_usd, whole[r.source] ?? 0),
      ),
    ),
  );
  const more = $id("cost-truncated");
  more.hidden = !data.truncated;
  more.textContent = data.truncated ? `${fmtInt(data.truncated)} more not shown (the API's limit parameter shows more).` : "";
}

function renderTop(by, data) {
  const list = $id(`top-${by}`);
  const rows = (data.rows || []).filter((r) => r.name !== null || r.other);
  replace(
    list,
    rows.length
      ? rows.map((r) =>
          el(
            "li",
            {"data-testid": "top-row", "data-name": r.name ?? "", "data-value": r.cost_usd},
            el("span", {class: r.other ? "muted" : ""}, ownerName(r)),
            " ",
            setValue(el("span", {class: "muted"}), r.cost_usd, fmtUsd),
          ),
        )
      : [el("li", {class: "muted none", text: "none"})],
  );
}

function renderExactness(report) {
  const notice = $id("cost-inexact");
  notice.hidden = report.exact;
  if (report.exact) return;
  notice.textContent =
    `Figures cover ${report.from.slice(0, 10)} to ${report.to.slice(0, 19).replace("T", " ")} UTC: ` +
    "days past raw retention count whole, and users or tags past a day's top N are summed as other.";
}

async function load() {
  const r = currentRange();
  const by = currentBy();
  setControls(r, by);
  const mine = ++seq;
  const range = rangeQuery(r);
  const firstDay = dayTs(range.from.slice(0, 10));
  const lastDay = r.days ? dayTs(tsDay(Date.now() / 1000)) : dayTs(r.to);
  const nDays = Math.round((lastDay - firstDay) / DAY_S) + 1;
  try {
    const [days, table, ...tops] = await Promise.all([
      api(withQuery("/api/v1/costs", {by: "day", ...range, limit: 1000})),
      api(withQuery("/api/v1/costs", {by, ...range, limit: TABLE_LIMIT})),
      ...TOP.map((t) => api(withQuery("/api/v1/costs", {by: t, ...range, source: "traffic", limit: TOP_LIMIT}))),
    ]);
    if (mine !== seq) return;
    showError(null);
    renderExactness(table.exact ? days : table);
    renderKpis(days, nDays);
    renderDaily(days, firstDay, nDays);
    renderTable(table);
    TOP.forEach((t, i) => renderTop(t, tops[i]));
  } catch (err) {
    reportBug(err);
    if (mine !== seq) return;
    if (err.status === 401) location.assign("/login");
    showError(`Could not load costs: ${err.message}`);
  }
}

load();
setInterval(() => !document.hidden && load(), 5 * 60 * 1000);
