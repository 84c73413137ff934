// Overview: one card per target, provider statuses beside their official pages, firing alerts
// (each can be acknowledged here). Polls /api/v1/overview every 5 s and updates the DOM in place.

import {
  reportBug,
  $id, Acks, OFFICIAL_LABEL, alertMeta, api, el, flasher, fmtAgo, fmtDuration, fmtInt, fmtMs,
  fmtPct, fmtSince, fmtTps, fmtUsd, now, officialClass, poll, renderNav, replace, setAttr,
  setStatusBadge, setText, setValue, sloHref, statusBadge, statusLabel, syncClock, targetHref,
} from "/static/common.js";

const POLL_MS = 5000;
const WARN_UTIL = 0.7;
const CRIT_UTIL = 0.9;

renderNav("overview");

let lastOk = null; // browser time (ms) of the last successful poll
let lastData = null;
let lastError = null;
const cards = new Map(); // target name -> {root, refs}

let poller = null;
const acks = new Acks(() => poller.refresh(), flasher("ack-msg"));
poller = poll(refresh, POLL_MS);
setInterval(tickClock, 1000);

async function refresh() {
  let data;
  try {
    data = await api("/api/v1/overview");
  } catch (err) {
    reportBug(err);
    lastError = err;
    if (err.status === 401) location.assign("/login");
    tickClock();
    return;
  }
  syncClock(data.generated_at);
  lastOk = Date.now();
  lastData = data;
  lastError = null;
  try {
    render(data);
  } finally {
    tickClock();
  }
}

// ---- connection state ----------------------------------------------------------------------

function tickClock() {
  const box = $id("connection");
  const ago = $id("updated-ago");
  const lost = $id("connection-lost");
  const age = lastOk === null ? null : (Date.now() - lastOk) / 1000;
  if (lastError) {
    setAttr(box, "data-state", "lost");
    document.body.classList.add("stale");
    setText(ago, age === null ? "connection lost" : `connection lost · updated ${fmtDuration(age)} ago`);
    lost.hidden = false;
    setText(
      lost,
      `Connection lost: ${lastError.message}. Retrying every ${POLL_MS / 1000} s` +
        (age === null ? "." : `; the figures below are ${fmtDuration(age)} old.`),
    );
  } else {
    setAttr(box, "data-state", lastOk === null ? "connecting" : "ok");
    document.body.classList.remove("stale");
    lost.hidden = true;
    setText(ago, age === null ? "connecting…" : `updated ${fmtDuration(age)} ago`);
  }
  setAttr(ago, "data-value", lastData ? lastData.generated_at : "");
  if (lastData) {
    // Relative times move on between polls.
    for (const c of lastData.cards) {
      const entry = cards.get(c.name);
      if (!entry) continue;
      setText(entry.refs.since, c.status_since == null ? "" : `since ${fmtSince(c.status_since)}`);
      setText(entry.refs.lastCheck, c.last_check_ts == null ? "no check yet" : `last check ${fmtAgo(c.last_check_ts)}`);
    }
  }
}

// ---- render ----------------------------------------------------------------------------------

function render(data) {
  renderOverall(data);
  renderProviders(data.providers || []);
  renderFiring(data.firing || []);
  renderCards(data.cards || []);
  setText($id("window"), `figures over the last ${windowLabel(data.window)}`);
  document.title = `${statusLabel(data.overall)} · Overview · llmpulse`;
}

const windowLabel = (w) => ({"5m": "5 minutes", "1h": "hour", "24h": "24 hours", "7d": "7 days", "30d": "30 days"})[w] || w;

function renderOverall(data) {
  const box = $id("overall-status");
  setAttr(box, "data-status", data.overall);
  setStatusBadge($id("overall-badge"), data.overall);
  const list = data.cards || [];
  const bad = list.filter((c) => c.status !== "up");
  let headline;
  if (!list.length) headline = "No targets configured";
  else if (!bad.length) headline = `All ${list.length} targets up`;
  else {
    const counts = {};
    for (const c of bad) counts[c.status] = (counts[c.status] || 0) + 1;
    const parts = ["down", "degraded", "rate_limited", "unknown"]
      .filter((s) => counts[s])
      .map((s) => `${counts[s]} ${statusLabel(s).toLowerCase()}`);
    headline = `${parts.join(", ")} of ${list.length} targets`;
  }
  setText($id("overall-headline"), headline);
  const verdictList = $id("verdict");
  const lines = verdict(data);
  const key = JSON.stringify(lines);
  if (verdictList.dataset.key !== key) {
    verdictList.dataset.key = key;
    replace(verdictList, lines.map((l) => el("li", {text: l, "data-testid": "verdict-line"})));
  }
}

/**
 * "Is the AI broken, or is the provider down?" in plain sentences, from our statuses and the
 * providers' own status pages.
 */
export function verdict(data) {
  const cardsList = data.cards || [];
  const providers = data.providers || [];
  if (!cardsList.length) return [];
  const out = [];
  const byProvider = {};
  for (const c of cardsList) (byProvider[c.provider] ||= []).push(c);
  if (cardsList.every((c) => c.status === "unknown")) {
    out.push("No recent checks of any target: is the monitor (llmpulse run) running and can it write its database?");
  }
  const known = providers.filter((p) => p.status !== "unknown");
  if (known.length >= 2 && known.every((p) => p.status === "down")) {
    out.push(
      "Every provider is failing at once: the fault is most likely on our side " +
        "(network, DNS, proxy or egress), not at the providers.",
    );
    return out;
  }
  for (const p of providers) {
    const targets = byProvider[p.provider] || [];
    const affected = targets.filter((c) => c.status === "down" || c.status === "degraded");
    const ind = p.official ? p.official.indicator : null;
    const officialBad = ["minor", "major", "critical", "maintenance"].includes(ind);
    const desc = p.official ? p.official.description || OFFICIAL_LABEL[ind] || ind : "";
    if (affected.length) {
      let line = `${p.provider}: ${affected.map((c) => `${c.model} ${statusLabel(c.status).toLowerCase()}`).join(", ")}`;
      if (targets.length > 1 && affected.length < targets.length) {
        line += ` (${targets.length - affected.length} of ${targets.length} targets fine: model-specific)`;
      }
      if (officialBad) line += ` — the provider confirms an incident: “${desc}”.`;
      else if (ind === "none") {
        line +=
          " — the provider's status page reports no incident: check keys, quota, region and our network, or the provider has not acknowledged it yet.";
      } else line += " — no official status to compare with.";
      out.push(line);
    } else if (officialBad) {
      const passing = targets.some((c) => c.status === "up");
      out.push(`${p.provider}: the provider reports “${desc}”${passing ? ", but our checks pass" : ""}.`);
    }
    const limited = targets.filter((c) => c.status === "rate_limited");
    if (limited.length) {
      out.push(`${p.provider}: ${limited.map((c) => c.model).join(", ")} rate limited — our own limits or quota, not an outage.`);
    }
    const stale = targets.filter((c) => c.status === "unknown");
    if (stale.length && !cardsList.every((c) => c.status === "unknown")) {
      out.push(`${p.provider}: no recent checks of ${stale.map((c) => c.model).join(", ")} — is the monitor running?`);
    }
  }
  if (!out.length) out.push("Everything is working; no provider reports an incident.");
  return out;
}

function officialNode(official, testid) {
  const node = el("span", {class: "official", "data-testid": testid});
  updateOfficial(node, official);
  return node;
}

function updateOfficial(node, official) {
  const ind = official ? official.indicator : "";
  const text = official ? official.description || OFFICIAL_LABEL[official.indicator] || official.indicator : "no official status";
  const key = official ? `${ind}|${text}|${official.url}|${(official.incidents || []).join("|")}` : "null";
  if (node.dataset.key === key) return;
  node.dataset.key = key;
  setAttr(node, "data-indicator", ind);
  const title = official
    ? [text, ...(official.incidents || []), official.updated_ts ? `updated ${fmtAgo(official.updated_ts)}` : ""]
        .filter(Boolean)
        .join("\n")
    : "The provider has no status page configured";
  node.title = title;
  replace(node, el("span", {class: `dot st-${official ? officialClass(ind) : "unknown"}`}), el("span", {text, class: official ? "" : "faint"}));
}

function renderProviders(providers) {
  const box = $id("providers");
  const key = JSON.stringify(providers);
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  replace(
    box,
    providers.map((p) => {
      const official = officialNode(p.official, "provider-official");
      return el(
        "div",
        {class: "provider", "data-testid": "provider-status", "data-provider": p.provider, "data-status": p.status},
        el("span", {class: "pname", text: p.provider}),
        statusBadge(p.status, "provider-badge"),
        el(
          "span",
          {class: "official-line"},
          "Official: ",
          p.official && p.official.url ? el("a", {href: p.official.url, target: "_blank", rel: "noopener noreferrer"}, official) : official,
          el("span", {class: "faint", text: ` · ${p.targets} target${p.targets === 1 ? "" : "s"}`}),
        ),
        p.confirmation ? confirmationNode(p.confirmation) : "",
      );
    }),
  );
}

// How the provider's page confirmed our incidents over 30 days; the missed ones in the tooltip.
function confirmationNode(c) {
  const missed = c.missed.map((m) => `never posted: our incident of ${new Date(m.start * 1000).toISOString().slice(0, 16).replace("T", " ")} UTC`);
  const pending = c.pending ? [`${c.pending} incident${c.pending === 1 ? "" : "s"} of ours still within the window`] : [];
  return el("span", {
    class: "official-line faint",
    "data-testid": "provider-confirmation",
    "data-confirmed": String(c.confirmed),
    "data-incidents": String(c.incidents),
    title: [...missed, ...pending].join("\n"),
    text: `${c.sentence}.`,
  });
}

function alertLine(a, testid) {
  const line = el(
    "li",
    {
      class: "alert-line",
      "data-testid": testid,
      "data-fingerprint": a.fingerprint,
      "data-target": a.target,
      "data-rule": a.rule,
      "data-severity": a.severity,
      "data-acknowledged": a.acknowledged_by ? "true" : "false",
    },
    el("span", {class: `sev sev-${a.severity === "critical" || a.severity === "warning" ? a.severity : "other"}`, text: a.severity}),
    // The alert's own row on the alerts page, where its history is.
    el("a", {class: "rule", href: `/alerts#alert-${encodeURIComponent(a.fingerprint)}`, text: a.rule}),
    // Provider-wide alerts name a provider (or "*"), which has no page of its own.
    a.scope === "target" ? el("a", {href: targetHref(a.target), text: a.target})
      : a.scope === "slo" ? el("a", {href: sloHref(a.target), text: a.target})
      : el("span", {text: a.target}),
    el("span", {class: "summary", text: a.summary}),
    a.silenced ? el("span", {class: "tag", text: "silenced", "data-testid": "silenced"}) : null,
    el("span", {class: "muted since-alert", "data-value": a.fired_at ?? "", text: a.fired_at ? `for ${fmtSince(a.fired_at)}` : ""}),
    acks.button(a, (form) => {
      const box = el("div", {class: "ack-form-wrap"}, form);
      line.append(box);
      return box;
    }),
    alertMeta(a),
  );
  return line;
}

/** What an alert row shows, to re-render it only when that changes. */
const alertKey = (a) => [
  a.fingerprint, a.summary, a.silenced, a.fired_at, a.severity, a.state, a.acknowledged_by,
  a.acknowledged_at, a.acknowledged_comment, a.escalation_step, a.notified,
];

function renderFiring(firing) {
  const list = $id("firing-list");
  setValue($id("firing-count"), firing.length, String);
  $id("firing-empty").hidden = firing.length > 0;
  const key = JSON.stringify(firing.map(alertKey));
  // (re-rendering the rows would drop an acknowledgement being typed)
  if (list.dataset.key === key || acks.editing) {
    // only refresh the durations
    list.querySelectorAll(".since-alert").forEach((n) => {
      const ts = Number(n.getAttribute("data-value"));
      if (ts) setText(n, `for ${fmtSince(ts)}`);
    });
    return;
  }
  list.dataset.key = key;
  replace(list, firing.map((a) => alertLine(a, "firing-alert")));
}

// ---- cards -----------------------------------------------------------------------------------

function metric(label, testid) {
  const dd = el("dd", {}, el("span", {"data-testid": testid}));
  const box = el("div", {class: "metric"}, el("dt", {text: label}), dd);
  return {box, value: dd.firstChild};
}

function buildCard(name) {
  const refs = {};
  refs.name = el("div", {class: "name", "data-testid": "card-name", text: name});
  refs.sub = el("div", {class: "sub"});
  refs.provider = el("span", {"data-testid": "card-provider"});
  refs.model = el("span", {"data-testid": "card-model"});
  refs.served = el("span", {"data-testid": "card-served-model"});
  refs.servedWrap = el("span", {}, " · served ", refs.served);
  refs.retires = el("span", {"data-testid": "card-retires"});
  refs.retiresWrap = el("span", {}, " · retires ", refs.retires);
  refs.sub.append(refs.provider, " · ", refs.model, refs.servedWrap, refs.retiresWrap);
  refs.status = el("span", {class: "badge", "data-testid": "card-status"});
  refs.since = el("span", {class: "since", "data-testid": "card-since"});
  refs.reason = el("p", {class: "reason", "data-testid": "card-reason"});
  const m = {
    ttft50: metric("TTFT p50", "card-ttft-p50"),
    ttft95: metric("TTFT p95", "card-ttft-p95"),
    tps: metric("Tokens/s p50", "card-tps"),
    err: metric("Error rate", "card-error-rate"),
    avail: metric("Availability", "card-availability"),
    cost: metric("Cost today", "card-cost-today"),
  };
  refs.m = m;
  refs.barFill = el("span");
  refs.bar = el("div", {class: "bar", role: "meter", "aria-label": "Rate-limit utilization", "aria-valuemin": "0", "aria-valuemax": "100"}, refs.barFill);
  refs.util = el("span", {class: "val"});
  refs.headroom = el("div", {class: "headroom", "data-testid": "card-ratelimit", title: "Rate-limit utilization of the most used dimension (1 − remaining/limit)"}, el("span", {text: "Rate limit"}), refs.bar, refs.util);
  refs.ours = el("span", {class: "official", "data-testid": "card-ours"});
  refs.official = officialNode(null, "card-official");
  refs.officialLabel = el("span", {class: "label"});
  refs.lastError = el("div", {class: "last-error", "data-testid": "card-last-error", hidden: true});
  refs.alerts = el("ul", {class: "card-alerts", "data-testid": "card-alerts"});
  refs.checks = el("span", {"data-testid": "card-checks"});
  refs.lastCheck = el("span", {"data-testid": "card-last-check"});
  const root = el(
    "a",
    {class: "card", href: targetHref(name), "data-testid": "card", "data-target": name},
    el("div", {class: "card-head"}, el("div", {class: "card-title"}, refs.name, refs.sub), el("div", {class: "card-status"}, refs.status, refs.since)),
    refs.reason,
    el("dl", {class: "metrics"}, Object.values(m).map((x) => x.box)),
    refs.headroom,
    el(
      "div",
      {class: "compare"},
      el("div", {}, el("span", {class: "label", text: "Our measurement"}), refs.ours),
      el("div", {}, refs.officialLabel, refs.official),
    ),
    refs.lastError,
    refs.alerts,
    el("div", {class: "card-foot"}, refs.checks, refs.lastCheck),
  );
  return {root, refs};
}

function updateCard({root, refs}, c) {
  setAttr(root, "data-status", c.status);
  setAttr(root, "data-provider", c.provider);
  setText(refs.provider, c.provider);
  setText(refs.model, c.model);
  setText(refs.served, c.served_model ?? "—");
  setAttr(refs.served, "data-value", c.served_model ?? "");
  refs.served.classList.toggle("is-null", !c.served_model);
  refs.servedWrap.hidden = !c.served_model;
  setText(refs.retires, c.retires ?? "");
  setAttr(refs.retires, "data-value", c.retires ?? "");
  refs.retiresWrap.hidden = !c.retires;
  setStatusBadge(refs.status, c.status);
  setAttr(refs.since, "data-value", c.status_since ?? "");
  setText(refs.since, c.status_since == null ? "" : `since ${fmtSince(c.status_since)}`);
  setText(refs.reason, c.status_reason || "");
  refs.reason.hidden = !c.status_reason;

  setValue(refs.m.ttft50.value, c.ttft_p50_ms, fmtMs);
  setValue(refs.m.ttft95.value, c.ttft_p95_ms, fmtMs);
  setValue(refs.m.tps.value, c.tps_p50, fmtTps);
  setValue(refs.m.err.value, c.error_rate, fmtPct);
  setValue(refs.m.avail.value, c.availability, fmtPct);
  setValue(refs.m.cost.value, c.cost_today_usd, fmtUsd);
  refs.m.err.box.classList.toggle("bad", c.error_rate != null && c.error_rate >= 0.05);
  refs.m.avail.box.classList.toggle("bad", c.availability != null && c.availability < 0.95);

  const u = c.ratelimit_utilization;
  const level = u == null ? "none" : u > CRIT_UTIL ? "crit" : u > WARN_UTIL ? "warn" : "ok";
  setAttr(refs.headroom, "data-value", u ?? "");
  setAttr(refs.headroom, "data-level", level);
  setAttr(refs.bar, "data-level", level);
  const width = u == null ? "0%" : `${Math.max(0, Math.min(1, u)) * 100}%`;
  if (refs.barFill.style.width !== width) refs.barFill.style.width = width;
  if (u == null) refs.bar.removeAttribute("aria-valuenow");
  else setAttr(refs.bar, "aria-valuenow", Math.round(u * 100));
  setValue(refs.util, u, (v) => `${fmtPct(v, 0)} used`, "no data");

  const oursText = `${statusLabel(c.status)}${c.availability == null ? "" : ` · ${fmtPct(c.availability)} avail.`}`;
  const oursKey = `${c.status}|${oursText}`;
  if (refs.ours.dataset.key !== oursKey) {
    refs.ours.dataset.key = oursKey;
    setAttr(refs.ours, "data-status", c.status);
    replace(refs.ours, el("span", {class: `dot st-${c.status}`}), el("span", {text: oursText}));
  }
  setText(refs.officialLabel, `${c.provider} official`);
  updateOfficial(refs.official, c.official);

  if (c.last_error && (c.last_error.class || c.last_error.message)) {
    refs.lastError.hidden = false;
    setAttr(refs.lastError, "data-class", c.last_error.class ?? "");
    setText(refs.lastError, `Last error${c.last_error.ts ? ` (${fmtAgo(c.last_error.ts)})` : ""}: ${c.last_error.class ?? "error"}${c.last_error.message ? ` — ${c.last_error.message}` : ""}`);
  } else {
    refs.lastError.hidden = true;
    setText(refs.lastError, "");
  }

  const alerts = c.alerts || [];
  const akey = JSON.stringify(alerts.map(alertKey));
  if (refs.alerts.dataset.key !== akey) {
    refs.alerts.dataset.key = akey;
    replace(
      refs.alerts,
      alerts.map((a) =>
        el(
          "li",
          {"data-testid": "card-alert", "data-fingerprint": a.fingerprint, "data-rule": a.rule, "data-severity": a.severity, "data-state": a.state},
          el("span", {class: `sev sev-${a.severity === "critical" || a.severity === "warning" ? a.severity : "other"}`, text: a.severity}),
          el("span", {class: "txt", text: `${a.rule}: ${a.summary}`}),
          a.silenced ? el("span", {class: "tag", text: "silenced"}) : null,
          // The card is one link: its alerts are acknowledged in the list above, not here.
          a.acknowledged_by ? el("span", {class: "tag", "data-testid": "card-alert-acked", title: `acknowledged by ${a.acknowledged_by}`, text: "acknowledged"}) : null,
        ),
      ),
    );
  }
  refs.alerts.hidden = alerts.length === 0;

  setValue(refs.checks, c.checks_1h, (n) => `${fmtInt(n)} checks in the last hour`);
  setAttr(refs.lastCheck, "data-value", c.last_check_ts ?? "");
  setText(refs.lastCheck, c.last_check_ts == null ? "no check yet" : `last check ${fmtAgo(c.last_check_ts)}`);
}

function renderCards(list) {
  const box = $id("cards");
  $id("cards-empty").hidden = list.length > 0;
  const seen = new Set();
  let prev = null;
  for (const c of list) {
    seen.add(c.name);
    let entry = cards.get(c.name);
    if (!entry) {
      entry = buildCard(c.name);
      cards.set(c.name, entry);
    }
    updateCard(entry, c);
    // keep the API's order, moving nodes only when needed
    const expected = prev ? prev.nextSibling : box.firstChild;
    if (expected !== entry.root) box.insertBefore(entry.root, expected);
    prev = entry.root;
  }
  for (const [name, entry] of cards) {
    if (!seen.has(name)) {
      entry.root.remove();
      cards.delete(name);
    }
  }
}

// for tests and the console
window.llmpulse = {now, verdict};
