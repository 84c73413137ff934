// Cost: spend per provider, model, target and UTC day, and tokens per request per target.

import {
  reportBug,
  $id, PALETTE, TimeChart, api, el, fmtInt, fmtNum, fmtUsd, renderNav, replace, setAttr,
  setValue, showError, withQuery,
} from "/static/common.js";

renderNav("cost");

const DAYS = [7, 30, 90];
const DAY_S = 86400;
let daily = null;
let tpr = null;
let seq = 0;

const dayTs = (day) => Date.parse(`${day}T00:00:00Z`) / 1000;
const tsDay = (ts) => new Date(ts * 1000).toISOString().slice(0, 10);

function currentDays() {
  const d = Number(new URLSearchParams(location.search).get("days"));
  return DAYS.includes(d) ? d : 30;
}
function setButtons(days) {
  for (const b of document.querySelectorAll("[data-days]")) setAttr(b, "aria-pressed", Number(b.dataset.days) === days ? "true" : "false");
}
for (const b of document.querySelectorAll("[data-days]")) {
  b.addEventListener("click", () => {
    const days = Number(b.dataset.days);
    if (days === currentDays()) return;
    const url = new URL(location.href);
    url.searchParams.set("days", String(days));
    history.pushState({days}, "", url);
    load();
  });
}
window.addEventListener("popstate", load);

/** Every UTC day of the period, oldest first, ending today (or the newest day in the data). */
function dayAxis(rows, n) {
  let last = dayTs(tsDay(Date.now() / 1000));
  for (const r of rows) {
    const t = dayTs(r.day);
    if (t > last) last = t;
  }
  return Array.from({length: n}, (_, i) => last - (n - 1 - i) * DAY_S);
}

function sum(rows, key) {
  let total = null;
  for (const r of rows) if (typeof r[key] === "number") total = (total ?? 0) + r[key];
  return total;
}

function group(rows, key) {
  const out = new Map();
  for (const r of rows) {
    if (!out.has(r[key])) out.set(r[key], []);
    out.get(r[key]).push(r);
  }
  return out;
}

function shareCell(value, total) {
  const bar = el("span");
  bar.style.width = `${total > 0 && value ? Math.min(100, (value / total) * 100) : 0}%`;
  return el("td", {class: "nowrap"}, total > 0 && value != null ? `${((value / total) * 100).toFixed(1)} %` : "—", el("span", {class: "share"}, bar));
}

function renderTable(testid, rowid, attr, entries, totalSpend, colors) {
  const table = $id(`${testid}-table`);
  $id(`${testid}-empty`).hidden = entries.length > 0;
  table.hidden = entries.length === 0;
  replace(
    table.querySelector("tbody"),
    entries.map(({key, spend, requests, tokens}) =>
      el(
        "tr",
        {"data-testid": rowid, [`data-${attr}`]: key, "data-value": spend ?? ""},
        el("td", {}, colors ? el("span", {class: "swatch", style: {background: colors[key]}}) : null, key),
        setValue(el("td", {class: "n", "data-field": "requests"}), requests, fmtInt),
        setValue(el("td", {class: "n", "data-field": "tokens"}), tokens, fmtInt),
        setValue(el("td", {class: "n", "data-field": "cost_usd"}), spend, fmtUsd),
        shareCell(spend, totalSpend),
      ),
    ),
  );
}

function render(data, n) {
  const rows = data.days || [];
  const totals = data.totals || {by_provider: {}, by_model: {}};
  const byProvider = totals.by_provider || {};
  const byModel = totals.by_model || {};
  const providerSpend = Object.values(byProvider).filter((v) => typeof v === "number");
  const total = providerSpend.length ? providerSpend.reduce((a, b) => a + b, 0) : sum(rows, "cost_usd");
  const today = tsDay(Date.now() / 1000);
  setValue($id("cost-total"), total, fmtUsd);
  setValue($id("cost-per-day"), total == null ? null : total / n, fmtUsd);
  setValue($id("cost-today"), sum(rows.filter((r) => r.day === today), "cost_usd"), fmtUsd);
  setValue($id("cost-requests"), rows.length ? sum(rows, "requests") : null, fmtInt);
  setValue($id("cost-tokens"), rows.length ? sum(rows, "tokens") : null, fmtInt);

  // providers, most expensive first; colours stay with providers across charts and tables
  const providerRows = group(rows, "provider");
  const providers = [...new Set([...Object.keys(byProvider), ...providerRows.keys()])].sort(
    (a, b) => (byProvider[b] ?? -1) - (byProvider[a] ?? -1) || a.localeCompare(b),
  );
  const colors = Object.fromEntries(providers.map((p, i) => [p, PALETTE[i % PALETTE.length]]));
  renderTable(
    "cost-provider",
    "cost-provider-row",
    "provider",
    providers.map((p) => ({key: p, spend: byProvider[p] ?? null, requests: sum(providerRows.get(p) || [], "requests"), tokens: sum(providerRows.get(p) || [], "tokens")})),
    total,
    colors,
  );
  const modelRows = group(rows, "model");
  const models = [...new Set([...Object.keys(byModel), ...modelRows.keys()])].sort(
    (a, b) => (byModel[b] ?? -1) - (byModel[a] ?? -1) || a.localeCompare(b),
  );
  renderTable(
    "cost-model",
    "cost-model-row",
    "model",
    models.map((m) => ({key: m, spend: byModel[m] ?? null, requests: sum(modelRows.get(m) || [], "requests"), tokens: sum(modelRows.get(m) || [], "tokens")})),
    total,
    null,
  );

  // targets
  const targetRows = group(rows, "target");
  const targets = [...targetRows.entries()]
    .map(([t, rs]) => {
      const requests = sum(rs, "requests");
      const tokens = sum(rs, "tokens");
      const spend = sum(rs, "cost_usd");
      return {target: t, provider: rs[0].provider, requests, tokens, spend};
    })
    .sort((a, b) => (b.spend ?? -1) - (a.spend ?? -1) || a.target.localeCompare(b.target));
  $id("cost-target-empty").hidden = targets.length > 0;
  $id("cost-target-table").hidden = targets.length === 0;
  replace(
    $id("cost-target-table").querySelector("tbody"),
    targets.map((t) =>
      el(
        "tr",
        {"data-testid": "cost-target-row", "data-target": t.target, "data-value": t.spend ?? ""},
        el("td", {}, el("a", {href: `/targets/${encodeURIComponent(t.target)}`, text: t.target})),
        el("td", {text: t.provider}),
        setValue(el("td", {class: "n", "data-field": "requests"}), t.requests, fmtInt),
        setValue(el("td", {class: "n", "data-field": "tokens"}), t.tokens, fmtInt),
        setValue(el("td", {class: "n", "data-field": "tokens_per_request"}), t.requests ? t.tokens / t.requests : null, (v) => fmtNum(v)),
        setValue(el("td", {class: "n", "data-field": "cost_usd"}), t.spend, fmtUsd),
        setValue(el("td", {class: "n", "data-field": "cost_per_request"}), t.spend != null && t.requests ? t.spend / t.requests : null, fmtUsd),
      ),
    ),
  );

  // daily stacked bars by provider (smallest spender on top)
  const axis = dayAxis(rows, n);
  const index = new Map(axis.map((t, i) => [t, i]));
  const cols = providers.map((p) => {
    const col = new Array(axis.length).fill(null);
    for (const r of providerRows.get(p) || []) {
      const i = index.get(dayTs(r.day));
      if (i !== undefined && typeof r.cost_usd === "number") col[i] = (col[i] ?? 0) + r.cost_usd;
    }
    return col;
  });
  const dayFormat = (t) => tsDay(t);
  if (!daily) {
    daily = new TimeChart($id("chart-cost-daily"), {
      yFormat: fmtUsd,
      bars: true,
      stacked: true,
      step: DAY_S,
      utc: true,
      height: 260,
      xFormat: dayFormat,
      series: [],
    });
  }
  daily.setData(
    axis,
    providers.length ? cols : [new Array(axis.length).fill(null)],
    [],
    providers.length ? providers.map((p) => ({label: p, color: colors[p]})) : [{label: "spend", color: PALETTE[0]}],
  );

  // tokens per request per target
  const tprRows = group(data.tokens_per_request || [], "target");
  const tprTargets = [...tprRows.keys()].sort();
  const tprCols = tprTargets.map((t) => {
    const col = new Array(axis.length).fill(null);
    for (const r of tprRows.get(t)) {
      const i = index.get(dayTs(r.day));
      if (i !== undefined && typeof r.value === "number") col[i] = r.value;
    }
    return col;
  });
  if (!tpr) {
    tpr = new TimeChart($id("chart-tokens-per-request"), {
      yFormat: (v) => fmtNum(v),
      step: DAY_S,
      utc: true,
      height: 260,
      xFormat: dayFormat,
      series: [],
    });
  }
  tpr.setData(
    axis,
    tprTargets.length ? tprCols : [new Array(axis.length).fill(null)],
    [],
    tprTargets.length ? tprTargets.map((t, i) => ({label: t, color: PALETTE[i % PALETTE.length]})) : [{label: "tokens/request", color: PALETTE[0]}],
  );
}

async function load() {
  const n = currentDays();
  setButtons(n);
  const mine = ++seq;
  try {
    const data = await api(withQuery("/api/v1/costs", {days: n}));
    if (mine !== seq) return;
    showError(null);
    render(data, n);
  } catch (err) {
    reportBug(err);
    if (mine !== seq) return;
    if (err.status === 401) location.assign("/login");
    showError(`Could not load costs: ${err.message}`);
  }
}

load();
setInterval(() => !document.hidden && load(), 5 * 60 * 1000);
