// SLOs: attainment and error budget per SLO, its budget burn-down over the window, and the
// incidents of the targets it selects that spent it (GET /api/v1/slos and /api/v1/slos/NAME).

import {
  reportBug,
  $id, PALETTE, TimeChart, api, el, fmtInt, fmtNum, fmtPct, fmtTime, fmtWindow, poll, renderNav,
  replace, setValue, showError, sloHref, targetHref,
} from "/static/common.js";

renderNav("slos");

const charts = new Map();

const indicator = (s) =>
  s.kind === "availability" || s.kind === "correctness" ? s.kind : `${s.kind} ≤ ${fmtNum(s.threshold_s, 2)} s`;

function burnRates(s) {
  return Object.entries(s.burn_rates)
    .map(([w, r]) => `${w} ${r == null ? "—" : `${fmtNum(r, 1)}×`}`)
    .join(" · ");
}

function row(s) {
  return el(
    "tr",
    {"data-testid": "slo-row", "data-slo": s.name, "data-alert": s.alert_state},
    el("td", {}, el("a", {href: sloHref(s.name), text: s.name})),
    el("td", {text: `${indicator(s)} (${s.source}, ${s.window})`}),
    setValue(el("td", {class: "n", "data-field": "objective"}), s.objective, (v) => fmtPct(v)),
    setValue(el("td", {class: "n", "data-field": "sli"}), s.sli, (v) => fmtPct(v)),
    setValue(el("td", {class: "n", "data-field": "budget_remaining"}), s.budget_remaining, (v) => fmtPct(v, 1)),
    setValue(el("td", {class: "n", "data-field": "budget_remaining_events"}), s.budget_remaining_events, fmtInt),
    el("td", {class: "nowrap", text: burnRates(s)}),
    el("td", {text: s.exhausted_at ? fmtTime(Date.parse(s.exhausted_at) / 1000, {seconds: false}) : "—"}),
    el("td", {text: s.alert_state === "inactive" ? "—" : `${s.alert_state} (${s.alert_severity})`}),
  );
}

function detail(d) {
  const id = `slo-${encodeURIComponent(d.name)}`;
  let box = document.getElementById(id);
  if (!box) {
    const chart = el("div", {"data-testid": "chart-slo-burn-down"});
    box = el(
      "section",
      {id, "data-testid": "slo-detail", "data-slo": d.name},
      el("h2", {text: d.name}),
      el("p", {class: "muted", "data-testid": "slo-since"}),
      el("div", {class: "panel chart-box"}, el("h3", {text: "Error budget remaining "}, el("small", {text: "share of the window's budget left, from its start"})), chart),
      el("h3", {text: "Incidents in the window"}),
      el("div", {class: "table-wrap"},
        el("table", {class: "data", "data-testid": "slo-incidents"},
          el("thead", {}, el("tr", {}, el("th", {text: "Target"}), el("th", {text: "Rule"}), el("th", {text: "Severity"}), el("th", {text: "When"}), el("th", {class: "n", text: "Bad events"}))),
          el("tbody"))),
    );
    $id("slo-details").append(box);
    charts.set(d.name, new TimeChart(chart, {yFormat: (v) => fmtPct(v, 0), yMin: null, height: 220, series: []}));
  }
  box.querySelector('[data-testid="slo-since"]').textContent =
    `${fmtInt(d.good)} good of ${fmtInt(d.events)} events` +
    (d.since ? ` since ${fmtTime(Date.parse(d.since) / 1000, {seconds: false})}` : "");
  charts.get(d.name).setData(d.burn_down_ts, [d.burn_down], [], [{label: "budget left", color: PALETTE[0]}]);
  replace(
    $id("slo-incidents", box).querySelector("tbody"),
    d.incidents.length
      ? d.incidents.map((i) =>
          el(
            "tr",
            {"data-testid": "slo-incident", "data-target": i.target},
            el("td", {}, el("a", {href: targetHref(i.target), text: i.target})),
            el("td", {text: i.rule}),
            el("td", {text: i.severity}),
            el("td", {text: fmtWindow(i.start, i.end)}),
            setValue(el("td", {class: "n", "data-field": "bad_events"}), i.bad_events, fmtInt),
          ),
        )
      : [el("tr", {}, el("td", {colspan: "5", class: "muted", text: "No incident of its targets in the window."}))],
  );
}

async function load() {
  try {
    const slos = await api("/api/v1/slos");
    showError(null);
    $id("slo-empty").hidden = slos.length > 0;
    $id("slo-table").hidden = slos.length === 0;
    replace($id("slo-table").querySelector("tbody"), slos.map(row));
    for (const s of slos) detail(await api(`/api/v1/slos/${encodeURIComponent(s.name)}`));
  } catch (err) {
    reportBug(err);
    if (err.status === 401) location.assign("/login");
    showError(`Could not load SLOs: ${err.message}`);
  }
}

poll(load, 30 * 1000);
