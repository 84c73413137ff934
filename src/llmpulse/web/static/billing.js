// Cost page, "Bill vs measured": each provider's own bill per UTC day against what llmpulse
// measured, from the alert leader's daily reconciliation (/api/v1/billing).

import {$id, api, el, fmtInt, fmtPct, fmtUsd, replace, reportBug, withQuery} from "/static/common.js";

const DAYS = [7, 30, 90];
const TOP_MODELS = 3;

function currentDays() {
  const d = Number(new URLSearchParams(location.search).get("days"));
  return DAYS.includes(d) ? d : 30;
}

function signedUsd(usd) {
  if (usd == null) return "—";
  return `${usd > 0 ? "+" : usd < 0 ? "−" : ""}${fmtUsd(Math.abs(usd))}`;
}

function statusCell(day) {
  if (day.status !== "ok") {
    return el("td", {"data-testid": "billing-status", "data-status": day.status},
      el("span", {class: "badge st-unknown"}, `not read: ${day.status}`), " ",
      el("span", {class: "muted"}, day.error || ""));
  }
  const badge = day.drift
    ? el("span", {class: "badge st-degraded"}, `drift over ${fmtPct(day.threshold)}`)
    : el("span", {class: "badge st-up"}, "matches");
  return el("td", {"data-testid": "billing-status", "data-status": day.drift ? "drift" : "ok"}, badge);
}

function modelsCell(day) {
  const apart = day.models
    .filter((m) => Math.abs(m.difference_usd) >= 0.005)
    .sort((a, b) => Math.abs(b.difference_usd) - Math.abs(a.difference_usd))
    .slice(0, TOP_MODELS);
  if (!apart.length) return el("td", {class: "muted"}, day.status === "ok" ? "—" : "");
  return el("td", {},
    ...apart.map((m) => el("div", {"data-testid": "billing-model", "data-model": m.model},
      `${m.model}: billed ${fmtUsd(m.reported_usd)}, measured ${fmtUsd(m.measured_usd)} `,
      el("span", {class: "muted"}, `(tokens ${fmtInt(m.reported_input_tokens + m.reported_output_tokens)} billed, ${fmtInt(m.measured_input_tokens + m.measured_output_tokens)} measured)`))));
}

function renderProvider(p) {
  const rows = [...p.days].reverse().map((d) =>
    el("tr", {"data-testid": "billing-day", "data-day": d.day, "data-provider": p.provider},
      el("td", {class: "nowrap"}, d.day),
      el("td", {class: "n", "data-testid": "billing-reported", "data-value": d.reported_usd ?? ""}, fmtUsd(d.reported_usd)),
      el("td", {class: "n", "data-testid": "billing-measured", "data-value": d.measured_usd ?? ""}, fmtUsd(d.measured_usd)),
      el("td", {class: "n", "data-testid": "billing-difference", "data-value": d.difference_usd ?? ""},
        signedUsd(d.difference_usd), d.difference == null ? "" : ` (${d.difference > 0 ? "+" : ""}${fmtPct(d.difference, 1)})`),
      statusCell(d),
      modelsCell(d)));
  return el("div", {"data-testid": "billing-provider", "data-provider": p.provider},
    el("h3", {}, p.provider),
    el("div", {class: "table-wrap"},
      el("table", {class: "data"},
        el("thead", {}, el("tr", {},
          el("th", {}, "Day"), el("th", {class: "n"}, "Billed"), el("th", {class: "n"}, "Measured"),
          el("th", {class: "n"}, "Difference"), el("th", {}, ""), el("th", {}, "Models most apart"))),
        el("tbody", {}, ...rows))));
}

let seq = 0;
async function load() {
  const mine = ++seq;
  const error = $id("billing-error");
  try {
    const data = await api(withQuery("/api/v1/billing", {days: currentDays()}));
    if (mine !== seq) return;
    error.hidden = true;
    $id("billing").hidden = data.providers.length === 0;
    replace($id("billing-providers"), ...data.providers.map(renderProvider));
  } catch (err) {
    reportBug(err);
    if (mine !== seq) return;
    error.textContent = err.message;
    error.hidden = false;
    $id("billing").hidden = false;
  }
}

// The page's day buttons change the URL (cost.js); read it once they have.
for (const b of document.querySelectorAll("[data-days]")) b.addEventListener("click", () => setTimeout(load, 0));
window.addEventListener("popstate", load);
load();
