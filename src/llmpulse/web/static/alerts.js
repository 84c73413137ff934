// Alerts: firing and pending alerts (acknowledged or not), the notification history with a
// per-alert timeline, the maintenance the providers announce, and silences (list, end, create;
// one window or recurring). Notices link to one alert's row here, /alerts#alert-<fingerprint>.

import {
  reportBug,
  $id, Acks, ApiError, alertMeta, api, attachTooltip, el, flasher, fmtDuration, fmtSince,
  fmtTime, fmtWindow, maintenanceBadge, maintenanceName, now, poll, renderNav, replace, setAttr,
  setText, setValue, showError, sloHref, targetHref, toTs, withQuery,
} from "/static/common.js";

const POLL_MS = 10000;
renderNav("alerts");

let lastOk = null;
let lastError = null;
let poller = null;
const acks = new Acks(() => poller.refresh(), flasher("ack-msg"));

const sevClass = (s) => `sev sev-${s === "critical" || s === "warning" ? s : "other"}`;
/** Alert values come in several units (ratios, ms, counts, multiples): 4 significant digits. */
const fmtValue = (v) => (typeof v === "number" ? String(+v.toPrecision(4)) : "—");

// ---- firing & pending ------------------------------------------------------------------------

function alertRow(a) {
  const since = a.state === "firing" ? a.fired_at ?? a.active_since : a.active_since;
  const row = el(
    "tr",
    {
      id: `alert-${a.fingerprint}`,
      class: a.fingerprint === target.fingerprint ? "is-target" : null,
      "data-testid": "alert-row",
      "data-state": a.state,
      "data-fingerprint": a.fingerprint,
      "data-rule": a.rule,
      "data-target": a.target,
      "data-severity": a.severity,
      "data-acknowledged": a.acknowledged_by ? "true" : "false",
    },
    el("td", {}, el("span", {class: sevClass(a.severity), text: a.severity})),
    el("td", {class: "mono", text: a.rule}),
    el("td", {}, targetLink(a)),
    el("td", {text: a.provider}),
    el("td", {class: "nowrap", "data-field": "since", "data-value": since ?? "", title: fmtTime(since), text: since == null ? "—" : fmtSince(since)}),
    setValue(el("td", {class: "n", "data-field": "value"}), a.value, fmtValue),
    setValue(el("td", {class: "n", "data-field": "threshold"}), a.threshold, fmtValue),
    el("td", {}, a.summary, a.silenced ? [" ", el("span", {class: "tag", "data-testid": "silenced", text: "silenced"})] : null, alertMeta(a)),
    el(
      "td",
      {class: "actions"},
      acks.button(a, (form) => {
        const formRow = el("tr", {class: "ack-row", "data-testid": "ack-row"}, el("td", {colSpan: row.children.length}, form));
        row.after(formRow);
        return formRow;
      }),
      el("button", {
        type: "button",
        class: "small",
        text: "Silence…",
        "data-testid": "alert-silence",
        on: {click: () => prefillSilence(a)},
      }),
    ),
  );
  return row;
}

/** Provider- and fleet-level alerts have a provider or "*" as target: no page to link to;
 * an SLO's alert links to the SLO, a model group's (group:NAME) to its failover readiness. */
function targetLink(alert) {
  if (alert.scope === "slo") return el("a", {href: sloHref(alert.target), text: alert.target});
  if (alert.scope === "group") {
    const group = alert.target.slice("group:".length);
    return el("a", {href: `/failover#failover-${encodeURIComponent(group)}`, text: alert.target});
  }
  if (alert.scope !== "target") return el("span", {text: alert.target || "—"});
  return el("a", {href: targetHref(alert.target), text: alert.target});
}

function renderAlerts(list, state) {
  const table = $id(`${state}-table`);
  setValue($id(`${state}-count`), list.length, String);
  $id(`${state}-empty`).hidden = list.length > 0;
  table.hidden = list.length === 0;
  replace(table.querySelector("tbody"), list.map(alertRow));
}

// ---- history & timeline ----------------------------------------------------------------------

const HISTORY_SHOWN = 50;
const HISTORY_STATUS = {resolved: "up", acknowledged: "rate_limited"}; // badge colours; firing: down
let historyAll = false;
let lastHistory = [];
$id("history-more").addEventListener("click", () => {
  historyAll = !historyAll;
  renderHistory(lastHistory);
});

function renderHistory(history) {
  lastHistory = history;
  $id("history-empty").hidden = history.length > 0;
  $id("history-table").hidden = history.length === 0;
  const more = $id("history-more");
  more.hidden = history.length <= HISTORY_SHOWN;
  setText(more, historyAll ? `Show the latest ${HISTORY_SHOWN}` : `Show all ${history.length}`);
  replace(
    $id("history-table").querySelector("tbody"),
    (historyAll ? history : history.slice(0, HISTORY_SHOWN)).map((e) =>
      el(
        "tr",
        {
          class: e.fingerprint === target.fingerprint ? "is-target" : null,
          "data-testid": "history-row",
          "data-status": e.status,
          "data-fingerprint": e.fingerprint,
          "data-rule": e.rule,
          "data-target": e.target,
        },
        el("td", {class: "nowrap", "data-value": e.ts, text: fmtTime(e.ts)}),
        el("td", {}, el("span", {class: `badge st-${HISTORY_STATUS[e.status] || "down"}`, text: e.status})),
        el("td", {}, el("span", {class: sevClass(e.severity), text: e.severity})),
        el("td", {class: "mono", text: e.rule}),
        el("td", {}, targetLink(e)),
        el("td", {class: "nowrap", "data-value": e.starts_at ?? "", text: fmtTime(toTs(e.starts_at))}),
        el("td", {class: "nowrap", "data-value": e.ends_at ?? "", text: e.ends_at ? fmtTime(toTs(e.ends_at)) : "—"}),
        el("td", {text: e.summary}),
        el("td", {class: "muted", text: e.official_status ?? "—"}),
      ),
    ),
  );
}

/**
 * One row per fingerprint, one segment per firing (starts_at → ends_at, or → now while it
 * still fires). Repeated notifications of one firing share its starts_at and merge.
 */
export function timelines(history, firing) {
  const byFp = new Map();
  const get = (e) => {
    let row = byFp.get(e.fingerprint);
    if (!row) {
      row = {fingerprint: e.fingerprint, rule: e.rule, target: e.target, provider: e.provider, severity: e.severity, segments: new Map()};
      byFp.set(e.fingerprint, row);
    }
    return row;
  };
  // oldest first, so a resolution comes after its firing
  for (const e of [...history].sort((a, b) => a.ts - b.ts)) {
    const row = get(e);
    const start = toTs(e.starts_at) ?? e.ts;
    const key = String(Math.round(start));
    const seg = row.segments.get(key) || {start, end: null, summary: e.summary, severity: e.severity};
    if (e.status === "resolved") seg.end = toTs(e.ends_at) ?? e.ts;
    else seg.summary = e.summary;
    row.segments.set(key, seg);
  }
  for (const a of firing) {
    const row = get(a);
    const start = a.fired_at ?? a.active_since;
    if (start == null) continue;
    const key = String(Math.round(start));
    if (!row.segments.has(key)) row.segments.set(key, {start, end: null, summary: a.summary, severity: a.severity});
  }
  const rows = [...byFp.values()].map((r) => ({...r, segments: [...r.segments.values()].sort((a, b) => a.start - b.start)}));
  // most recent activity first
  const last = (r) => Math.max(...r.segments.map((s) => s.end ?? Infinity));
  rows.sort((a, b) => last(b) - last(a));
  return rows;
}

function renderTimeline(history, firing) {
  const box = $id("timeline");
  const rows = timelines(history, firing);
  if (!rows.length) {
    replace(box, el("div", {class: "empty", text: "No alert history yet."}));
    setText($id("timeline-span"), "fired → resolved, per alert");
    return;
  }
  const t1 = now();
  let t0 = Math.min(...rows.flatMap((r) => r.segments.map((s) => s.start)));
  t0 = Math.min(t0, t1 - 3600);
  const span = t1 - t0;
  const pos = (t) => `${(((t - t0) / span) * 100).toFixed(3)}%`;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => t0 + f * span);
  setText($id("timeline-span"), `fired → resolved, per alert, over the last ${fmtDuration(span)}`);
  replace(
    box,
    el("div", {class: "tl-axis", "aria-hidden": "true"}, el("span"), el("div", {class: "ticks"}, ticks.map((t, i) => el("span", {text: i === 4 ? "now" : fmtTime(t, {seconds: false})})))),
    rows.map((r) =>
      el(
        "div",
        {
          class: r.fingerprint === target.fingerprint ? "tl-row is-target" : "tl-row",
          "data-testid": "timeline-row",
          "data-fingerprint": r.fingerprint,
          "data-rule": r.rule,
          "data-target": r.target,
        },
        el("div", {class: "tl-label"}, el("span", {class: "rule", text: r.rule}), el("span", {class: "who", text: r.target === r.provider ? r.target : `${r.target} · ${r.provider}`})),
        el(
          "div",
          {class: "tl-track"},
          r.segments.map((s) => {
            const end = s.end ?? t1;
            const seg = el("button", {
              type: "button",
              class: "tl-seg",
              "data-testid": "timeline-segment",
              "data-start": s.start,
              "data-end": s.end ?? "",
              "data-open": s.end == null ? "true" : "false",
              "data-severity": s.severity,
              "aria-label": `${r.rule} fired ${fmtTime(s.start)}, ${s.end == null ? "still firing" : `resolved ${fmtTime(s.end)}`}`,
            });
            seg.style.left = pos(s.start);
            seg.style.width = `${Math.max(0, ((end - s.start) / span) * 100).toFixed(3)}%`;
            attachTooltip(seg, () => [
              el("strong", {text: `${r.rule} · ${r.target}`}),
              el("div", {text: `fired ${fmtTime(s.start)}`}),
              el("div", {text: s.end == null ? `still firing (${fmtDuration(t1 - s.start)})` : `resolved ${fmtTime(s.end)} (after ${fmtDuration(s.end - s.start)})`}),
              s.summary ? el("div", {class: "muted", text: s.summary}) : null,
            ]);
            return seg;
          }),
        ),
      ),
    ),
  );
}

// ---- provider maintenance --------------------------------------------------------------------

function renderMaintenances(list) {
  $id("maintenance-empty").hidden = list.length > 0;
  $id("maintenance-table").hidden = list.length === 0;
  replace(
    $id("maintenance-table").querySelector("tbody"),
    list.map((m) =>
      el(
        "tr",
        {"data-testid": "maintenance-row", "data-provider": m.provider, "data-status": m.status, "data-start": m.starts_at ?? "", "data-end": m.ends_at ?? ""},
        el("td", {text: m.provider}),
        el("td", {}, maintenanceName(m)),
        el("td", {}, maintenanceBadge(m)),
        el("td", {class: "nowrap", text: fmtWindow(m.starts_at, m.ends_at)}),
      ),
    ),
  );
}

// ---- silences --------------------------------------------------------------------------------

/** A recurring silence's schedule and its next windows, in this browser's time zone. */
function scheduleCell(s) {
  if (!s.schedule) return el("td", {class: "faint", text: "—"});
  const {cron, duration_s, timezone} = s.schedule;
  return el(
    "td",
    {"data-testid": "silence-schedule", "data-cron": cron, "data-timezone": timezone, "data-duration": duration_s},
    el("div", {}, el("span", {class: "mono", text: cron}), el("span", {class: "muted", text: ` (${timezone}) for ${fmtDuration(duration_s)}`})),
    el(
      "ul",
      {class: "windows"},
      (s.next_occurrences || []).map(([start, end]) =>
        el("li", {class: "nowrap", "data-testid": "silence-next", "data-start": start, "data-end": end, text: fmtWindow(start, end)}),
      ),
    ),
  );
}

function silenceRow(s) {
  const t = now();
  // Unix seconds per the contract; ISO strings tolerated
  const starts = toTs(s.starts_at);
  const ends = toTs(s.ends_at); // null: recurring without an end
  const upcoming = s.next_occurrences || [];
  const state = s.active ? "active" : upcoming.length ? "scheduled" : "ended";
  // While active: when this window (a recurring silence's current one) ends.
  const windowEnd = s.active && upcoming.length ? upcoming[0][1] : ends;
  // Config silences end when the config says; only API/CLI silences can be ended here.
  const endBtn =
    state === "ended" || !s.editable
      ? null
      : el("button", {
          type: "button",
          class: "small danger",
          text: "End",
          "data-testid": "silence-end",
          "data-id": s.id,
          on: {click: (ev) => endSilence(s, ev.currentTarget)},
        });
  return el(
    "tr",
    {"data-testid": "silence-row", "data-id": s.id, "data-active": s.active ? "true" : "false", "data-state": state, "data-recurring": s.schedule ? "true" : "false"},
    el("td", {class: "mono", text: s.target}),
    el("td", {class: "mono", text: s.provider}),
    el("td", {class: "mono", text: s.rule}),
    el("td", {class: "nowrap", "data-value": s.starts_at, text: fmtTime(starts, {seconds: false})}),
    el(
      "td",
      {class: "nowrap", "data-value": s.ends_at ?? "", title: ends == null ? "" : fmtTime(ends)},
      ends == null ? el("span", {class: "muted", text: "no end"}) : fmtTime(ends, {seconds: false}),
      state === "active" && windowEnd != null ? el("span", {class: "muted", text: ` (window ends in ${fmtDuration(windowEnd - t)})`}) : null,
    ),
    scheduleCell(s),
    el("td", {text: s.comment || "—"}),
    el("td", {class: "muted", text: s.created_by || "—"}),
    el("td", {}, el("span", {class: `badge st-${state === "active" ? "rate_limited" : "unknown"}`, text: state})),
    el("td", {}, endBtn),
  );
}

async function loadSilences() {
  const all = $id("silences-show-all").checked;
  const data = await api(withQuery("/api/v1/silences", {all: all ? "true" : null}));
  const end = (s) => toTs(s.ends_at) ?? Infinity;
  const list = [...(data.silences || [])].sort((a, b) => b.active - a.active || (end(a) < end(b)) - (end(a) > end(b)));
  $id("silences-empty").hidden = list.length > 0;
  $id("silences-table").hidden = list.length === 0;
  replace($id("silences-table").querySelector("tbody"), list.map(silenceRow));
}

async function endSilence(s, button) {
  button.disabled = true;
  try {
    await api(`/api/v1/silences/${encodeURIComponent(s.id)}`, {method: "DELETE"});
    flash(`Silence ${s.id} ended.`);
  } catch (err) {
    reportBug(err);
    formError(`Could not end silence ${s.id}: ${err.message}`);
  }
  await loadSilences().catch((err) => showError(`Could not load silences: ${err.message}`));
}

function formError(message) {
  const box = $id("silence-error");
  box.hidden = !message;
  setText(box, message || "");
  if (message) $id("silence-ok").hidden = true;
}
function flash(message) {
  const box = $id("silence-ok");
  box.hidden = false;
  setText(box, message);
  $id("silence-error").hidden = true;
}

function prefillSilence(a) {
  const form = $id("silence-form");
  form.elements.target.value = a.target || "*";
  form.elements.provider.value = a.provider || "*";
  form.elements.rule.value = a.rule || "*";
  form.scrollIntoView({behavior: "smooth", block: "center"});
  form.elements.comment.focus({preventScroll: true});
}

$id("silence-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget;
  const submit = $id("silence-submit");
  const body = {};
  for (const key of ["target", "provider", "rule", "duration", "cron", "comment", "created_by"]) {
    const v = form.elements[key].value.trim();
    if (v !== "" || key === "duration") body[key] = v;
  }
  // A time zone only goes with a cron expression (the API refuses one without).
  const zone = form.elements.timezone.value.trim();
  if (body.cron && zone) body.timezone = zone;
  if (!body.duration) {
    formError("Duration is required, e.g. 30m or 2h.");
    form.elements.duration.focus();
    return;
  }
  submit.disabled = true;
  formError(null);
  try {
    const s = await api("/api/v1/silences", {method: "POST", body});
    const next = (s.next_occurrences || [])[0];
    const when = s.schedule
      ? `every "${s.schedule.cron}" (${s.schedule.timezone}), next ${next ? fmtWindow(next[0], next[1]) : "never"}`
      : `until ${fmtTime(toTs(s.ends_at), {seconds: false})}`;
    flash(`Silence ${s.id} created: ${s.rule} on ${s.target} (${s.provider}) ${when}.`);
    form.elements.comment.value = "";
    await loadSilences();
  } catch (err) {
    reportBug(err);
    formError(err instanceof ApiError && err.status ? `${err.message} (HTTP ${err.status})` : err.message);
  } finally {
    submit.disabled = false;
  }
});
// A cron expression reads in this browser's time zone unless changed.
$id("silence-timezone").value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
$id("silences-show-all").addEventListener("change", () =>
  loadSilences().catch((err) => showError(`Could not load silences: ${err.message}`)),
);

// ---- the alert a notice links to ---------------------------------------------------------------

// /alerts#alert-<fingerprint>: its row is highlighted, and scrolled to once it is there (rows
// come after the page loads, so the browser's own jump to the anchor finds nothing).
const target = {fingerprint: null, landed: false};

function readTarget() {
  const m = /^#alert-(.+)$/.exec(location.hash);
  let fingerprint = null;
  if (m) {
    try {
      fingerprint = decodeURIComponent(m[1]);
    } catch {
      fingerprint = m[1];
    }
  }
  target.fingerprint = fingerprint;
  target.landed = false;
  $id("target-notice").hidden = true;
}

async function landOnTarget() {
  if (target.fingerprint === null || target.landed) return;
  target.landed = true;
  const row = document.getElementById(`alert-${target.fingerprint}`);
  if (row) {
    row.scrollIntoView({block: "center"});
    return;
  }
  // No longer firing or pending: say what became of it, and show its history.
  const notice = $id("target-notice");
  const fingerprint = target.fingerprint;
  let message;
  try {
    const a = await api(`/api/v1/alerts/${encodeURIComponent(fingerprint)}`);
    const when = a.state === "resolved" && a.resolved_at != null ? ` since ${fmtTime(a.resolved_at, {seconds: false})}` : "";
    message = `${a.rule} on ${a.target} is ${a.state}${when}; its notifications are highlighted below.`;
  } catch (err) {
    reportBug(err);
    message = err.status === 404 ? `No alert ${fingerprint} here (the link may be from another llmpulse).` : `Could not look up alert ${fingerprint}: ${err.message}`;
  }
  if (target.fingerprint !== fingerprint) return; // the hash moved on meanwhile
  notice.hidden = false;
  setText(notice, message);
  const mark = document.querySelector(`[data-testid="timeline-row"][data-fingerprint="${CSS.escape(fingerprint)}"]`);
  (mark || notice).scrollIntoView({block: "center"});
}

readTarget();
window.addEventListener("hashchange", () => {
  readTarget();
  poller.refresh();
});

// ---- poll ------------------------------------------------------------------------------------

async function refresh() {
  try {
    const [alerts] = await Promise.all([api("/api/v1/alerts"), loadSilences()]);
    lastOk = Date.now();
    lastError = null;
    showError(null);
    if (!acks.editing) {
      // (re-rendering the rows would drop an acknowledgement being typed)
      renderAlerts(alerts.firing || [], "firing");
      renderAlerts(alerts.pending || [], "pending");
    }
    renderTimeline(alerts.history || [], alerts.firing || []);
    renderHistory(alerts.history || []);
    renderMaintenances(alerts.maintenances || []);
    await landOnTarget();
  } catch (err) {
    reportBug(err);
    lastError = err;
    if (err.status === 401) location.assign("/login");
    showError(`Connection lost: ${err.message}. Retrying every ${POLL_MS / 1000} s.`);
  }
  tick();
}

function tick() {
  const box = $id("connection");
  const ago = $id("updated-ago");
  const age = lastOk === null ? null : (Date.now() - lastOk) / 1000;
  setAttr(box, "data-state", lastError ? "lost" : lastOk === null ? "connecting" : "ok");
  setText(ago, lastError ? "connection lost" : age === null ? "connecting…" : `updated ${fmtDuration(age)} ago`);
}

poller = poll(refresh, POLL_MS);
setInterval(tick, 1000);
