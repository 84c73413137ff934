// The public status page: calls only /api/v1/statuspage, links nowhere into the dashboard.

import {
  reportBug,
  $id, api, attachTooltip, el, fmtDuration, fmtPct, fmtUtc, replace, setAttr, setText, setValue,
  showError, statusLabel, syncClock, now,
} from "/static/common.js";

const REFRESH_MS = 60000;
const INCIDENTS_SHOWN = 15;

const BANNER = {
  up: "All systems operational",
  degraded: "Degraded performance",
  rate_limited: "Reduced capacity",
  down: "Service disruption",
  unknown: "Status unknown",
};

/** Availability of one day → colour level. */
export function level(availability) {
  if (availability === null || availability === undefined) return "none";
  if (availability >= 0.999) return "ok";
  if (availability >= 0.99) return "minor";
  if (availability >= 0.95) return "major";
  return "outage";
}

const fmtDay = (day) => {
  const d = new Date(`${day}T00:00:00Z`);
  return Number.isNaN(d.getTime())
    ? day
    : d.toLocaleDateString("en-US", {weekday: "short", year: "numeric", month: "short", day: "numeric", timeZone: "UTC"});
};
const hhmm = (ts) => new Date(ts * 1000).toISOString().slice(11, 16);

function incidentSpan(i) {
  if (i.end == null) return `${fmtUtc(i.start)} → ongoing (${fmtDuration(now() - i.start)})`;
  const sameDay = new Date(i.start * 1000).toISOString().slice(0, 10) === new Date(i.end * 1000).toISOString().slice(0, 10);
  return `${fmtUtc(i.start)} → ${sameDay ? `${hhmm(i.end)} UTC` : fmtUtc(i.end)} (${fmtDuration(i.end - i.start)})`;
}

function dayTooltip(d) {
  const incidents = d.incidents || [];
  return [
    el("strong", {text: fmtDay(d.day)}),
    el("div", {text: d.availability == null ? "No data" : `${fmtPct(d.availability)} available`}),
    d.checks ? el("div", {class: "muted", text: `${d.checks.toLocaleString("en-US")} checks`}) : null,
    incidents.length
      ? el("ul", {}, incidents.map((i) => el("li", {text: `${i.summary || i.rule} (${i.rule}, ${i.severity}) ${hhmm(i.start)}–${i.end == null ? "ongoing" : hhmm(i.end)} UTC`})))
      : el("div", {class: "muted", text: "No incidents"}),
  ];
}

/** The markdown for a README badge; the name's '/' stays a path separator. */
function badgeMarkdown(name) {
  const path = `/badge/${name.split("/").map(encodeURIComponent).join("/")}.svg`;
  return {path, markdown: `![status](${location.origin}${path})`};
}

function targetRow(t) {
  const days = t.days || [];
  const bars = days.map((d) => {
    const bar = el("div", {
      class: "uptime-bar",
      tabindex: "0",
      role: "img",
      "data-testid": "uptime-bar",
      "data-day": d.day,
      "data-value": d.availability ?? "",
      "data-checks": d.checks ?? 0,
      "data-incidents": (d.incidents || []).length,
      "data-level": level(d.availability),
      "aria-label": `${d.day}: ${d.availability == null ? "no data" : `${fmtPct(d.availability)} available`}, ${(d.incidents || []).length} incident(s)`,
    });
    attachTooltip(bar, () => dayTooltip(d));
    return bar;
  });
  const {path, markdown} = badgeMarkdown(t.name);
  const code = el("code", {"data-testid": "badge-snippet", "data-path": path, text: markdown});
  const copy = el("button", {type: "button", class: "small", text: "Copy", "data-testid": "badge-copy"});
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(markdown);
      copy.textContent = "Copied";
    } catch {
      // no clipboard (plain http): select the text for the user to copy
      const range = document.createRange();
      range.selectNodeContents(code);
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      copy.textContent = "Selected";
    }
    setTimeout(() => (copy.textContent = "Copy"), 1500);
  });
  const since = t.status_since == null ? "" : ` · for ${fmtDuration(now() - t.status_since)}`;
  return el(
    "div",
    {class: "sp-row", "data-testid": "status-row", "data-target": t.name, "data-status": t.status},
    el(
      "div",
      {class: "sp-row-head"},
      el("span", {class: "sp-name", "data-testid": "status-name", text: t.name}),
      el("span", {class: "sp-current", "data-testid": "status-current", "data-status": t.status, "data-since": t.status_since ?? "", text: `${statusLabel(t.status)}${since}`}),
    ),
    el("div", {class: "uptime", role: "group", "aria-label": `${t.name}: daily availability, ${days.length} days`}, bars),
    el(
      "div",
      {class: "uptime-foot"},
      el("span", {text: `${days.length} days ago`}),
      el("span", {class: "line"}),
      setValue(el("span", {"data-testid": "uptime-90d"}), t.uptime_90d, (v) => `${fmtPct(v, 2)} uptime`, "no data"),
      el("span", {class: "line"}),
      el("span", {text: "Today"}),
    ),
    el("div", {class: "badge-snippet"}, el("img", {src: path, alt: `${t.name} status badge`, height: 20}), code, copy),
  );
}

function render(data) {
  syncClock(data.generated_at);
  const title = data.title || "llmpulse";
  setText($id("sp-title"), `${title} status`);
  document.title = `${BANNER[data.overall] || statusLabel(data.overall)} · ${title} status`;
  setAttr($id("sp-updated"), "data-value", data.generated_at);
  setText($id("sp-updated"), `Updated ${fmtUtc(data.generated_at)}`);
  const banner = $id("overall-status");
  setAttr(banner, "data-status", data.overall);
  setText(banner, BANNER[data.overall] || statusLabel(data.overall));

  const targets = data.targets || [];
  $id("status-empty").hidden = targets.length > 0;
  replace($id("status-targets"), targets.map(targetRow));
  $id("status-targets").hidden = targets.length === 0;

  // ongoing first, then newest first
  const incidents = [...(data.incidents || [])].sort((a, b) => (b.end == null) - (a.end == null) || b.start - a.start);
  $id("incidents-empty").hidden = incidents.length > 0;
  const more = $id("incidents-more");
  const shown = showAll ? incidents : incidents.slice(0, INCIDENTS_SHOWN);
  more.hidden = incidents.length <= INCIDENTS_SHOWN;
  setText(more, showAll ? "Show fewer" : `Show all ${incidents.length} incidents`);
  replace(
    $id("incidents"),
    shown.map((i) =>
      el(
        "li",
        {"data-testid": "incident-row", "data-target": i.target, "data-rule": i.rule, "data-start": i.start, "data-end": i.end ?? "", "data-ongoing": i.end == null ? "true" : "false"},
        el("div", {class: "inc-title", text: `${i.summary || i.rule} — ${i.target}`}),
        el("div", {class: "inc-meta", text: `${incidentSpan(i)} · ${i.rule} · ${i.severity}`}),
      ),
    ),
  );

  const confirmations = data.confirmations || [];
  $id("confirmations-section").hidden = confirmations.length === 0;
  replace(
    $id("confirmations"),
    confirmations.map((c) =>
      el("li", {"data-testid": "confirmation-row", "data-provider": c.provider, "data-confirmed": c.confirmed, "data-incidents": c.incidents, text: `${c.sentence}.`}),
    ),
  );
}

let showAll = false;
let lastData = null;
$id("incidents-more").addEventListener("click", () => {
  showAll = !showAll;
  if (lastData) render(lastData);
});

async function load() {
  try {
    lastData = await api("/api/v1/statuspage");
    render(lastData);
    showError(null);
  } catch (err) {
    reportBug(err);
    showError(`Could not load the status: ${err.message}. Retrying in a minute.`);
  }
}

load();
setInterval(() => !document.hidden && load(), REFRESH_MS);
