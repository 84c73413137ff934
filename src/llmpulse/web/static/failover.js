// Failover readiness: per model group, whether a fallback could take the primary's traffic
// now, and per fallback why not (GET /api/v1/failover, judged by gateway.readiness).

import {
  reportBug, $id, api, el, fmtInt, fmtNum, renderNav, replace, setValue, showError, targetHref,
  poll,
} from "/static/common.js";

renderNav("failover");

// Readiness shown with the status colours: ready as up, at risk as degraded, not ready as down.
const LOOK = {
  ready: ["up", "Ready"],
  at_risk: ["degraded", "At risk"],
  not_ready: ["down", "Not ready"],
};

function badge(status, testid) {
  const [cls, label] = LOOK[status] || ["unknown", String(status)];
  return el("span", {class: `badge st-${cls}`, "data-testid": testid, "data-status": status, text: label});
}

const perMinute = (v) => (v == null ? "unknown" : `${fmtNum(v, 0)}/min`);

function groupRow(g) {
  return el(
    "tr",
    {"data-testid": "failover-row", "data-group": g.group, "data-status": g.status},
    el("td", {}, el("a", {href: `#failover-${encodeURIComponent(g.group)}`, text: g.group})),
    el("td", {}, badge(g.status, "group-status")),
    el("td", {"data-field": "reason", text: g.reason}),
    setValue(el("td", {class: "n", "data-field": "rpm"}), g.load.requests ? g.load.rpm : null, (v) => fmtNum(v, 1)),
    setValue(el("td", {class: "n", "data-field": "tpm"}), g.load.requests ? g.load.tpm : null, fmtInt),
    setValue(el("td", {class: "n", "data-field": "prompt_p99"}), g.load.prompt_p99, fmtInt),
    el("td", {text: g.load.features.length ? g.load.features.join(", ") : "—"}),
    el("td", {text: g.alert || "—"}),
  );
}

function fallbackRow(f) {
  return el(
    "tr",
    {"data-testid": "fallback-row", "data-fallback": f.name, "data-status": f.status},
    el("td", {}, el("a", {href: targetHref(f.name), text: f.name})),
    el("td", {}, badge(f.status, "fallback-status")),
    el("td", {"data-field": "reasons"}, f.reasons.length ? el("ul", {}, f.reasons.map((r) => el("li", {text: r}))) : "—"),
    el("td", {class: "n", text: perMinute(f.headroom_rpm)}),
    el("td", {class: "n", text: f.headroom_tpm == null ? "unknown" : `${fmtInt(f.headroom_tpm)}/min`}),
    setValue(el("td", {class: "n"}), f.context_window, fmtInt, "unknown"),
    el("td", {text: f.breaker_inferred ? `${f.breaker} (inferred)` : f.breaker}),
  );
}

function groupSection(g) {
  return el(
    "section",
    {id: `failover-${encodeURIComponent(g.group)}`, "data-testid": "failover-group", "data-group": g.group},
    el("h2", {}, `${g.group} `, badge(g.status, "group-badge")),
    el("p", {class: "muted", text: `Primary ${g.primary}; ${fmtInt(g.load.requests)} requests in the last hour.`}),
    el("div", {class: "table-wrap"},
      el("table", {class: "data", "data-testid": "fallback-table"},
        el("thead", {}, el("tr", {},
          el("th", {text: "Fallback (in order)"}), el("th", {text: "Readiness"}), el("th", {text: "Why"}),
          el("th", {class: "n", text: "Room req"}), el("th", {class: "n", text: "Room tokens"}),
          el("th", {class: "n", text: "Context window"}), el("th", {text: "Breaker"}))),
        el("tbody", {}, g.fallbacks.length
          ? g.fallbacks.map(fallbackRow)
          : [el("tr", {}, el("td", {colspan: "7", class: "muted", text: "No fallback: one deployment and no fallback group."}))]))),
  );
}

async function load() {
  try {
    const data = await api("/api/v1/failover");
    showError(null);
    $id("failover-empty").hidden = data.groups.length > 0;
    $id("failover-table").hidden = data.groups.length === 0;
    replace($id("failover-table").querySelector("tbody"), data.groups.map(groupRow));
    replace($id("failover-groups"), data.groups.map(groupSection));
  } catch (err) {
    reportBug(err);
    if (err.status === 401) location.assign("/login");
    showError(`Could not load failover readiness: ${err.message}`);
  }
}

poll(load, 30 * 1000);
