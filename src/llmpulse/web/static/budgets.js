// Cost page, budget use: each gateway key and team with a budget, what it spent over its
// period, what is left, when it resets, the current rate and when at that rate it runs out,
// and its budget alerts (GET /api/v1/budgets). Its own module: the rest of the page is cost.js.

import {reportBug, $id, api, el, fmtNum, fmtUsd, fmtUtc, replace, setAttr, setValue, toTs} from "/static/common.js";

const LABEL = {budget_warning: "warning", budget_exhausted: "exhausted", spend_forecast: "forecast"};

function meter(b) {
  const pct = Math.max(0, Math.min(100, b.percent));
  const warnAt = b.warn_at == null ? Infinity : b.warn_at * 100;
  const fill = el("span");
  fill.style.width = `${pct}%`; // through the CSSOM: allowed under style-src 'self'
  const level = b.percent >= 100 ? "crit" : b.percent >= warnAt ? "warn" : "ok";
  return el("div", {
    class: "bar", role: "meter", "data-level": level, "aria-label": `${b.scope} ${b.name} budget used`,
    "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(Math.round(pct)),
  }, fill);
}

function meterCell(b) {
  const td = el("td", {}, meter(b));
  td.style.minWidth = "120px"; // the bar has no width of its own
  return td;
}

function alertsCell(b) {
  if (!b.alerts.length) return el("td", {"data-field": "alerts", "data-state": "inactive", text: "—"});
  return el("td", {"data-field": "alerts", "data-state": b.alert_state},
    ...b.alerts.map((a) => el("span", {
      class: `sev sev-${a.severity}`, title: a.summary, "data-rule": a.rule, "data-state": a.state,
      text: `${LABEL[a.rule] || a.rule}${a.state === "pending" ? " (pending)" : ""}`,
    })),
  );
}

// The probes' own budget (monitor.probe_budget_usd): this UTC month's probe spend against it,
// and what the probes cost a month at their configured intervals.
function probeRow(p) {
  const b = {...p, scope: "probes", name: "all targets", warn_at: null};
  return el("tr", {"data-scope": "probes", "data-name": "all targets"},
    el("td", {text: "probes"}),
    el("td", {text: "all targets"}),
    el("td", {text: "1mo"}),
    setValue(el("td", {class: "n", "data-field": "spent_usd"}), p.spent_usd, fmtUsd),
    setValue(el("td", {class: "n", "data-field": "max_usd"}), p.max_usd, fmtUsd),
    setValue(el("td", {class: "n", "data-field": "percent"}), p.percent, (v) => `${fmtNum(v)} %`),
    meterCell(b),
    setValue(el("td", {class: "n", "data-field": "expected_usd_per_month", title: "at the configured intervals; stretched to fit the budget"}),
      p.expected_usd_per_month, (v) => `${fmtUsd(v)}/month expected`),
    el("td", {"data-field": "exhausts_at", text: "—"}),
    setValue(el("td", {"data-field": "resets_at"}), toTs(p.resets_at), fmtUtc),
    el("td", {"data-field": "alerts", text: "—"}),
  );
}

function render(data) {
  const rows = data.budgets || [];
  $id("budgets-empty").hidden = rows.length > 0 || data.probes != null;
  replace(
    $id("budgets-table").querySelector("tbody"),
    ...(data.probes ? [probeRow(data.probes)] : []),
    ...rows.map((b) => el("tr", {"data-scope": b.scope, "data-name": b.name},
      el("td", {text: b.scope}),
      el("td", {text: b.name}),
      el("td", {text: b.period}),
      setValue(el("td", {class: "n", "data-field": "spent_usd"}), b.spent_usd, fmtUsd),
      setValue(el("td", {class: "n", "data-field": "max_usd"}), b.max_usd, fmtUsd),
      setValue(el("td", {class: "n", "data-field": "percent"}), b.percent, (v) => `${fmtNum(v)} %`),
      meterCell(b),
      setValue(el("td", {class: "n", "data-field": "rate_usd_per_day"}), b.rate_usd_per_day, (v) => `${fmtUsd(v)}/day`),
      setValue(el("td", {"data-field": "exhausts_at"}), toTs(b.exhausts_at), fmtUtc, b.remaining_usd <= 0 ? "exhausted" : "not this period"),
      setValue(el("td", {"data-field": "resets_at"}), toTs(b.resets_at), fmtUtc, "rolling"),
      alertsCell(b),
    )),
  );
  setAttr($id("budgets"), "data-loaded", "true");
}

async function load() {
  try {
    render(await api("/api/v1/budgets"));
  } catch (err) {
    reportBug(err);
    if (err.status === 401) return; // cost.js sends the page to the sign-in
    replace($id("budgets-empty"), `Could not load budgets: ${err.message}`);
    $id("budgets-empty").hidden = false;
  }
}

load();
setInterval(() => !document.hidden && load(), 60 * 1000);
