// The gateway: traffic share per deployment (stacked, per model group), fallbacks per minute by
// reason, breaker opens and closes as chart markers, incidents ("traffic moved from X to Y at
// T, back at T'") and the latest drill of each failover path (GET /api/v1/gateway). The range
// is kept in the URL (?range=1h).

import {
  reportBug,
  $id, PALETTE, TimeChart, api, el, errorColor, fmtInt, fmtTime, poll, renderNav, replace,
  rangeSwitch, setText, showError, withQuery,
} from "/static/common.js";

renderNav("gateway");

const RANGES = ["1h", "6h", "24h", "7d"];
const charts = new Map();

const currentRange = rangeSwitch(RANGES, "1h", () => load());

const STATE_KIND = {open: "breaker_open", half_open: "breaker_half_open", closed: "breaker_closed"};

function markers(events, group) {
  return events
    .filter((e) => group === undefined || e.group === group)
    .map((e) => ({
      ts: e.ts,
      kind: STATE_KIND[e.state],
      summary: `${e.deployment}: breaker ${e.state.replace("_", "-")} (${e.reason}) · ${e.agent}`,
    }));
}

function chart(key, container, opts) {
  if (!charts.has(key)) charts.set(key, new TimeChart(container, opts));
  return charts.get(key);
}

function groupBox(group) {
  const id = `gateway-group-${group}`;
  let box = document.getElementById(id);
  if (!box) {
    box = el(
      "div",
      {id, class: "panel chart-box", "data-testid": "gateway-group", "data-group": group},
      el("h3", {text: `${group} `}, el("small", {text: "requests per bucket by the deployment that answered, stacked"})),
      el("div", {"data-testid": "chart-share"}),
    );
    $id("gateway-groups").append(box);
  }
  return box;
}

function incidentItem(i) {
  return el(
    "li",
    {"data-testid": "gateway-incident", "data-group": i.group, "data-ongoing": String(i.ongoing)},
    el("strong", {text: `${i.group}: `}),
    `traffic moved from ${i.from} to ${i.to} at ${fmtTime(i.start_ts)}`,
    i.end_ts === null ? ", not back yet" : `, back at ${fmtTime(i.end_ts)}`,
    el("span", {
      class: "muted",
      text: ` · ${fmtInt(i.fallbacks)} of ${fmtInt(i.requests)} requests moved (${Object.entries(i.reasons).map(([r, n]) => `${r} ${n}`).join(", ")})`,
    }),
  );
}

function drillRow(d) {
  return el(
    "tr",
    {"data-testid": "gateway-drill", "data-ok": String(d.ok)},
    el("td", {text: d.group}),
    el("td", {text: d.path.join(" → ")}),
    el("td", {text: d.stream ? "yes" : "no"}),  // as `llmpulse drill` says it
    el("td", {class: d.ok ? "ok" : "bad", text: d.ok ? "ok" : "failed"}),
    el("td", {text: fmtTime(d.ts)}),
    el("td", {text: d.ok ? "" : `${d.error_class || ""} ${d.error_message || ""}`.trim()}),
  );
}

async function load() {
  const range = currentRange();
  try {
    const g = await api(withQuery("/api/v1/gateway", {window: range}));
    showError(null);
    setText(
      $id("gateway-totals"),
      `${fmtInt(g.requests)} requests, ${fmtInt(g.fallbacks)} fallbacks` +
        (g.live_drills ? `, ${fmtInt(g.live_drills)} live drill requests (apart)` : "") +
        ` in the last ${g.window}`,
    );
    replace(
      $id("gateway-incidents"),
      g.incidents.length
        ? g.incidents.slice().reverse().map(incidentItem)
        : [el("li", {class: "muted", "data-testid": "gateway-no-incident", text: "Traffic stayed with its first choices."})],
    );
    const reasons = Object.keys(g.fallbacks_per_minute);
    chart("fallbacks", $id("chart-fallbacks"), {bars: true, stacked: true, step: g.step_s, series: []}).setData(
      g.ts,
      reasons.map((r) => g.fallbacks_per_minute[r]),
      markers(g.breaker_events),
      reasons.map((r, i) => ({label: r, color: errorColor(r, i)})),
    );
    for (const group of g.groups) {
      const box = groupBox(group.group);
      const names = Object.keys(group.deployments);
      chart(`share-${group.group}`, $id("chart-share", box), {bars: true, stacked: true, step: g.step_s, series: []}).setData(
        g.ts,
        names.map((n) => group.deployments[n]),
        markers(g.breaker_events, group.group),
        names.map((n, i) => ({label: n, color: PALETTE[i % PALETTE.length]})),
      );
    }
    replace(
      $id("gateway-drills").querySelector("tbody"),
      g.drills.length
        ? g.drills.map(drillRow)
        : [el("tr", {}, el("td", {colspan: "6", class: "muted", text: "No drill results yet (llmpulse drill, or gateway.drills)."}))],
    );
  } catch (err) {
    reportBug(err);
    if (err.status === 401) location.assign("/login");
    showError(`Could not load the gateway: ${err.message}`);
  }
}

poll(load, 30 * 1000);
