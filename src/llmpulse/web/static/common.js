// Shared helpers of the llmpulse pages: DOM building, the API client, formatters, status
// colours, the navigation bar and a uPlot chart with a live legend and event markers.
// No dependencies besides uPlot (the global `uPlot` from /static/vendor/uplot/uPlot.iife.min.js,
// loaded only by the pages that draw charts).

// ---------------------------------------------------------------------------------------------
// DOM

/**
 * el("div", {class: "x", "data-testid": "card", text: "hi", on: {click: fn}}, child, "text")
 * Text is always set as text, never parsed as HTML: API strings cannot inject markup.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else if (key === "style" && typeof value === "object") Object.assign(node.style, value);
    else if (key in node && !key.startsWith("data-") && !key.startsWith("aria-") && key !== "role") {
      node[key] = value;
    } else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** The element with data-testid=id (page skeletons declare them). */
export const $id = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

/** Replaces all children of node. */
export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/**
 * Shows a figure: formatted text, and the raw number in data-value (empty when null) so a
 * test can compare the page with the API.
 */
export function setValue(node, value, format, nullText = "—") {
  const text = value === null || value === undefined ? nullText : format(value);
  if (node.textContent !== text) node.textContent = text;
  const raw = value === null || value === undefined ? "" : String(value);
  if (node.getAttribute("data-value") !== raw) node.setAttribute("data-value", raw);
  node.classList.toggle("is-null", value === null || value === undefined);
  return node;
}

/** A <span data-testid=.. data-value=..>formatted</span>. */
export function valueSpan(testid, value, format, nullText = "—") {
  return setValue(el("span", {"data-testid": testid}), value, format, nullText);
}

/** Sets an attribute only when it changes (keeps live updates cheap). */
export function setAttr(node, name, value) {
  const v = value === null || value === undefined ? "" : String(value);
  if (node.getAttribute(name) !== v) node.setAttribute(name, v);
}

export function setText(node, text) {
  const t = text === null || text === undefined ? "" : String(text);
  if (node.textContent !== t) node.textContent = t;
}

// ---------------------------------------------------------------------------------------------
// API

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

/**
 * Fetches JSON from the API. Throws ApiError with the API's own message on a non-2xx answer
 * ({"detail": "..."} or FastAPI's validation list), and on network failures (status 0).
 */
export async function api(path, {method = "GET", body, signal} = {}) {
  const init = {
    method,
    signal,
    credentials: "same-origin",
    cache: "no-store",
    headers: {Accept: "application/json"},
  };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError("cannot reach the server", 0);
  }
  let data = null;
  const text = await response.text().catch(() => "");
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    throw new ApiError(errorMessage(data, text, response), response.status);
  }
  if (data === null && text) throw new ApiError("the server did not answer JSON", response.status);
  return data;
}

function errorMessage(data, text, response) {
  const detail = data && typeof data === "object" ? data.detail ?? data.message ?? data.error : null;
  if (typeof detail === "string" && detail) return detail;
  if (Array.isArray(detail) && detail.length) {
    // FastAPI validation errors: [{loc: ["body", "duration"], msg: "Field required"}, ...]
    return detail
      .map((d) => {
        const loc = Array.isArray(d.loc) ? d.loc.filter((p) => p !== "body" && p !== "query") : [];
        return (loc.length ? `${loc.join(".")}: ` : "") + (d.msg || JSON.stringify(d));
      })
      .join("; ");
  }
  if (response.status === 401) return "credentials required: sign in again";
  const short = (text || "").trim().slice(0, 200);
  return `HTTP ${response.status}${response.statusText ? " " + response.statusText : ""}${
    short && !short.startsWith("<") ? ": " + short : ""
  }`;
}

/** Errors that are not API answers are bugs in the page: log them (tests watch the console). */
export function reportBug(err) {
  if (!(err instanceof ApiError) && !(err && err.name === "AbortError")) console.error(err);
}

/** Adds a query string, leaving out null/undefined values. */
/**
 * The page's range buttons (``data-range``), the range kept in the URL (``?range=``) and the
 * browser's history. ``range()`` reads it from the URL (``fallback`` unless one of ``ranges``);
 * ``onChange(range)`` runs after a button or back/forward changed it, ``mark(range)`` each time
 * the buttons are marked (and at once).
 */
export function rangeSwitch(ranges, fallback, onChange, mark = () => {}) {
  const range = () => {
    const r = new URLSearchParams(location.search).get("range");
    return ranges.includes(r) ? r : fallback;
  };
  const show = (r) => {
    for (const b of document.querySelectorAll("[data-range]")) {
      setAttr(b, "aria-pressed", b.dataset.range === r ? "true" : "false");
    }
    mark(r);
  };
  for (const b of document.querySelectorAll("[data-range]")) {
    b.addEventListener("click", () => {
      const r = b.dataset.range;
      if (r === range()) return;
      const url = new URL(location.href);
      url.searchParams.set("range", r);
      history.pushState({range: r}, "", url);
      show(r);
      onChange(r);
    });
  }
  window.addEventListener("popstate", () => {
    show(range());
    onChange(range());
  });
  show(range());
  return range;
}

export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** /targets/{name} with the name URL-encoded (names contain '/'). */
export const targetHref = (name) => `/targets/${encodeURIComponent(name)}`;
export const sloHref = (name) => `/slos#slo-${encodeURIComponent(name)}`;

/** The target name of the current /targets/{name} page. */
export function targetFromPath(pathname = location.pathname) {
  const raw = pathname.replace(/^\/targets\//, "");
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

// ---------------------------------------------------------------------------------------------
// Server clock: relative times are measured against the server's generated_at, so a skewed
// browser clock does not turn "since 2 min" into "since -3 min".

let skew = 0; // server − browser, seconds
export function syncClock(serverNow) {
  if (typeof serverNow === "number" && Number.isFinite(serverNow)) skew = serverNow - Date.now() / 1000;
}
export const now = () => Date.now() / 1000 + skew;

// ---------------------------------------------------------------------------------------------
// Formatters. Every one returns "—" for null/undefined/NaN.

const DASH = "—";
const bad = (v) => v === null || v === undefined || Number.isNaN(v);

export function fmtMs(ms) {
  if (bad(ms)) return DASH;
  if (ms === 0) return "0 ms";
  if (Math.abs(ms) < 1) return `${ms.toFixed(2)} ms`;
  if (Math.abs(ms) < 1000) return `${Math.round(ms)} ms`;
  if (Math.abs(ms) < 10000) return `${(ms / 1000).toFixed(2)} s`;
  if (Math.abs(ms) < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return fmtDuration(ms / 1000);
}

/** Axis labels: round values stay short ("1 s", "250 ms"). */
export function fmtMsAxis(ms) {
  if (bad(ms)) return "";
  if (Math.abs(ms) < 1000) return `${+ms.toFixed(2)} ms`;
  return `${+(ms / 1000).toFixed(2)} s`;
}

/** A 0..1 ratio as a percentage, with more decimals near 0 and 100 where they matter. */
export function fmtPct(ratio, digits) {
  if (bad(ratio)) return DASH;
  const p = ratio * 100;
  if (digits !== undefined) return `${p.toFixed(digits)} %`;
  if (p === 0 || p === 100) return `${p} %`;
  if (p > 99 && p < 100) return `${Math.min(p, 99.99).toFixed(2)} %`;
  if (p < 1) return `${p.toFixed(2)} %`;
  if (p < 10) return `${p.toFixed(1)} %`;
  return `${Math.round(p)} %`;
}

export function fmtUsd(usd) {
  if (bad(usd)) return DASH;
  const a = Math.abs(usd);
  if (a === 0) return "$0.00";
  if (a >= 100) return `$${usd.toLocaleString("en-US", {maximumFractionDigits: 0})}`;
  if (a >= 1) return `$${usd.toFixed(2)}`;
  if (a >= 0.01) return `$${usd.toFixed(3)}`;
  // small amounts (one check costs fractions of a cent): two significant digits
  if (a >= 1e-6) return `$${+usd.toPrecision(2) === 0 ? "0" : usd.toPrecision(2)}`;
  return `$${usd.toExponential(1)}`;
}

export function fmtNum(n, digits = 1) {
  if (bad(n)) return DASH;
  const a = Math.abs(n);
  if (a >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  if (Number.isInteger(n)) return String(n);
  return n.toFixed(a >= 100 ? 0 : digits);
}

export const fmtInt = (n) => (bad(n) ? DASH : Math.round(n).toLocaleString("en-US"));
export const fmtTps = (v) => (bad(v) ? DASH : `${fmtNum(v)} tok/s`);

/** Seconds as "45 s", "12 min", "3 h 5 min", "4 d 2 h". */
export function fmtDuration(seconds) {
  if (bad(seconds)) return DASH;
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

/** Time since a Unix timestamp, against the server clock: "12 min". */
export const fmtSince = (ts) => (bad(ts) ? DASH : fmtDuration(now() - ts));
export const fmtAgo = (ts) => (bad(ts) ? DASH : `${fmtDuration(now() - ts)} ago`);

const pad = (n) => String(n).padStart(2, "0");
/** Local date and time, "2026-11-27 14:03:09". */
export function fmtTime(ts, {seconds = true} = {}) {
  if (bad(ts)) return DASH;
  const d = new Date(ts * 1000);
  const date = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}${seconds ? ":" + pad(d.getSeconds()) : ""}`;
  return `${date} ${time}`;
}
/** A window in local time, "2026-11-27 02:00 → 04:00" (the end's date when it differs). */
export function fmtWindow(start, end) {
  const a = fmtTime(start, {seconds: false});
  if (bad(end)) return `${a} →`;
  const b = fmtTime(end, {seconds: false});
  return `${a} → ${!bad(start) && a.slice(0, 10) === b.slice(0, 10) ? b.slice(11) : b}`;
}
/** UTC date and time, "2026-11-27 14:03 UTC". */
export function fmtUtc(ts) {
  if (bad(ts)) return DASH;
  return `${new Date(ts * 1000).toISOString().slice(0, 16).replace("T", " ")} UTC`;
}
/** Parses an ISO string or passes a number through: Unix seconds. */
export function toTs(value) {
  if (bad(value)) return null;
  if (typeof value === "number") return value;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms / 1000;
}

// ---------------------------------------------------------------------------------------------
// Statuses

export const STATUSES = ["up", "degraded", "rate_limited", "down", "unknown"];
export const STATUS_LABEL = {
  up: "Up",
  degraded: "Degraded",
  rate_limited: "Rate limited",
  down: "Down",
  unknown: "Unknown",
};
// Same values as the --st-* CSS variables in app.css (charts need them in script).
export const STATUS_COLOR = {
  up: "#1a7f37",
  degraded: "#b58100",
  rate_limited: "#8250df",
  down: "#cf222e",
  unknown: "#6e7781",
};
export const statusLabel = (s) => STATUS_LABEL[s] || String(s || "unknown");
const statusClass = (s) => (STATUSES.includes(s) ? s : "unknown");

/** <span class="badge st-down" data-status="down">Down</span> */
export function statusBadge(status, testid) {
  const b = el("span", {class: "badge", "data-testid": testid});
  return setStatusBadge(b, status);
}
export function setStatusBadge(node, status) {
  const cls = statusClass(status);
  node.className = `badge st-${cls}`;
  setAttr(node, "data-status", status ?? "unknown");
  setText(node, statusLabel(status));
  return node;
}

// Providers' official indicators (Atlassian Statuspage vocabulary).
export const OFFICIAL_LABEL = {
  none: "Operational",
  minor: "Minor incident",
  major: "Major incident",
  critical: "Critical incident",
  maintenance: "Maintenance",
  unknown: "Unknown",
};
export const officialClass = (ind) =>
  ({none: "up", minor: "degraded", major: "down", critical: "down", maintenance: "rate_limited"})[ind] ||
  "unknown";

// A maintenance a provider's status page announces (schemas.Maintenance).
export const MAINTENANCE_LABEL = {scheduled: "scheduled", in_progress: "in progress", verifying: "verifying"};
/** Its name, linked to the announcement when the page gave a link. */
export const maintenanceName = (m) =>
  m.url ? el("a", {href: m.url, target: "_blank", rel: "noopener noreferrer", text: m.name}) : m.name;
export const maintenanceBadge = (m) =>
  el("span", {class: `badge st-${m.status === "scheduled" ? "unknown" : "rate_limited"}`, text: MAINTENANCE_LABEL[m.status] || m.status});
/** Name, status and scheduled window on one line. */
export const maintenanceText = (m) => [
  maintenanceName(m), " ", maintenanceBadge(m), " ",
  el("span", {class: "muted nowrap", text: fmtWindow(m.starts_at, m.ends_at)}),
];

// Error classes (llmpulse.errors.ErrorClass), outages first.
export const ERROR_COLOR = {
  unavailable: "#cf222e",
  server_error: "#a40e26",
  timeout: "#e16f24",
  connection: "#953800",
  protocol: "#bf3989",
  rate_limited: "#8250df",
  quota: "#6639ba",
  auth: "#24292f",
  bad_request: "#6e7781",
  context_length: "#1b7c83",
  content_filter: "#4d7c0f",
};
const ERROR_ORDER = Object.keys(ERROR_COLOR);
export const errorOrder = (a, b) => {
  const ia = ERROR_ORDER.indexOf(a);
  const ib = ERROR_ORDER.indexOf(b);
  return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
};
export const PALETTE = [
  "#0969da", "#bc4c00", "#1a7f37", "#8250df", "#cf222e", "#1b7c83", "#9a6700", "#bf3989",
  "#57606a", "#0550ae", "#953800", "#116329",
];
export const errorColor = (cls, i = 0) => ERROR_COLOR[cls] || PALETTE[(i + 4) % PALETTE.length];

// ---------------------------------------------------------------------------------------------
// Page chrome

const NAV = [
  ["overview", "/", "Overview"],
  ["alerts", "/alerts", "Alerts"],
  ["cost", "/cost", "Cost"],
  ["slos", "/slos", "SLOs"],
  ["gateway", "/gateway", "Gateway"],
  ["failover", "/failover", "Failover"],
  ["status", "/status", "Status page"],
];

/** Fills <nav data-testid="nav"> with the page links, marking the current one. */
export function renderNav(active) {
  const nav = $id("nav");
  if (!nav) return;
  replace(
    nav,
    el("a", {class: "brand", href: "/", text: "llmpulse"}),
    el(
      "ul",
      {},
      NAV.map(([key, href, label]) =>
        el(
          "li",
          {},
          el("a", {
            href,
            text: label,
            "data-testid": `nav-${key}`,
            "aria-current": key === active ? "page" : null,
          }),
        ),
      ),
    ),
  );
}

/** Shows (or clears, with null) a page-level error message. */
export function showError(message, testid = "page-error") {
  let box = $id(testid);
  if (!box) {
    box = el("div", {class: "notice error", role: "alert", "data-testid": testid});
    (document.querySelector("main") || document.body).prepend(box);
  }
  box.hidden = !message;
  setText(box, message || "");
}

/**
 * Runs fn every `ms` milliseconds, or every `ms()` if a function (never overlapping; paused while the tab is hidden, run at
 * once when it shows again). Returns {refresh()} to run now.
 */
export function poll(fn, ms) {
  let timer = null;
  let running = false;
  let again = false;
  async function tick() {
    clearTimeout(timer);
    timer = null;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await fn();
    } catch (err) {
      // fn reports API failures itself; anything else is a bug: say so, keep polling.
      reportBug(err);
    } finally {
      running = false;
    }
    if (again) {
      again = false;
      tick();
      return;
    }
    if (!document.hidden) timer = setTimeout(tick, typeof ms === "function" ? ms() : ms);
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer === null && !running) tick();
  });
  tick();
  return {refresh: tick};
}

// ---------------------------------------------------------------------------------------------
// Acknowledgements: who has a firing alert in hand. The alerts page and the overview share the
// button, the inline form and the line that says who acknowledged it.

const ACK_NAME_KEY = "llmpulse.ack.by";
const ACK_BY_MAX = 200; // the API's limits (schemas.Acknowledge)
const ACK_COMMENT_MAX = 2000;

function rememberedName() {
  try {
    return localStorage.getItem(ACK_NAME_KEY) || "";
  } catch {
    return ""; // storage off (private mode, a policy): the form just starts empty
  }
}

function rememberName(name) {
  try {
    localStorage.setItem(ACK_NAME_KEY, name);
  } catch {
    // as above: nothing to remember it in
  }
}

const ackPath = (fingerprint) => `/api/v1/alerts/${encodeURIComponent(fingerprint)}/ack`;

/**
 * Who acknowledged the alert and when (and why), the escalation step it reached, the notifiers
 * it paged; null when there is nothing to say.
 */
export function alertMeta(a) {
  const parts = [];
  if (a.acknowledged_by) {
    parts.push(
      el(
        "span",
        {
          class: "acked",
          "data-testid": "acknowledged",
          "data-by": a.acknowledged_by,
          "data-at": a.acknowledged_at ?? "",
          title: a.acknowledged_at == null ? null : fmtAgo(a.acknowledged_at),
        },
        "acknowledged by ",
        el("strong", {text: a.acknowledged_by}),
        a.acknowledged_at == null ? null : `, ${fmtTime(a.acknowledged_at, {seconds: false})}`,
        a.acknowledged_comment ? el("span", {class: "ack-comment", "data-testid": "ack-comment-text", text: `: ${a.acknowledged_comment}`}) : null,
      ),
    );
  }
  if (a.escalation_step > 0) {
    parts.push(el("span", {class: "tag esc", "data-testid": "escalation", "data-value": a.escalation_step, text: `escalation step ${a.escalation_step}`}));
  }
  if (a.notified && a.notified.length) {
    parts.push(el("span", {class: "muted", "data-testid": "notified", "data-value": a.notified.join(","), text: `paged ${a.notified.join(", ")}`}));
  }
  return parts.length ? el("div", {class: "alert-meta"}, parts) : null;
}

/**
 * The Acknowledge / Unacknowledge actions of one page. `refresh` reloads the page's data after a
 * change; `flash(message, ok)` tells the user how it went. While a form is open or a request is
 * under way (`editing`), the page holds back its re-renders, which would drop what is typed.
 */
export class Acks {
  constructor(refresh, flash) {
    this.refresh = refresh;
    this.flash = flash;
    this.open = null; // {fingerprint, node, button} of the open form
    this.busy = false;
  }

  get editing() {
    return this.open !== null || this.busy;
  }

  /** The action of a firing alert (none for pending ones); `mount(form)` puts the form in the
   * page and returns the node to remove when it closes. */
  button(a, mount) {
    if (a.state !== "firing") return null;
    if (a.acknowledged_by) {
      return el("button", {
        type: "button",
        class: "small",
        text: "Unacknowledge",
        title: "Take the acknowledgement back: escalation and repeats resume",
        "data-testid": "alert-unack",
        on: {click: (ev) => this.unacknowledge(a, ev.currentTarget)},
      });
    }
    return el("button", {
      type: "button",
      class: "small primary",
      text: "Acknowledge…",
      title: "Say you have it: escalation and repeats stop, and whoever was paged is told",
      "aria-expanded": "false",
      "data-testid": "alert-ack",
      on: {click: (ev) => this.show(a, ev.currentTarget, mount)},
    });
  }

  show(a, button, mount) {
    const reopening = this.open && this.open.fingerprint === a.fingerprint;
    this.close();
    if (reopening) return; // the button toggles its form
    const form = this.form(a);
    this.open = {fingerprint: a.fingerprint, node: mount(form), button};
    button.setAttribute("aria-expanded", "true");
    (form.elements.by.value ? form.elements.comment : form.elements.by).focus();
  }

  close() {
    if (!this.open) return;
    const {node, button} = this.open;
    const focused = node.contains(document.activeElement);
    node.remove();
    button.setAttribute("aria-expanded", "false");
    if (focused && button.isConnected) button.focus(); // keyboard users stay where they were
    this.open = null;
  }

  form(a) {
    const error = el("p", {class: "form-msg notice error", "data-testid": "ack-error", role: "alert", hidden: true});
    const form = el(
      "form",
      {class: "ack-form", "data-testid": "ack-form", "data-fingerprint": a.fingerprint, "aria-label": `Acknowledge ${a.rule} on ${a.target}`, novalidate: true},
      el("label", {class: "field"}, "Your name", el("input", {type: "text", name: "by", value: rememberedName(), maxLength: ACK_BY_MAX, autocomplete: "name", "data-testid": "ack-by"})),
      el("label", {class: "field wide"}, "Comment (optional)", el("input", {type: "text", name: "comment", maxLength: ACK_COMMENT_MAX, autocomplete: "off", placeholder: "e.g. looking into it", "data-testid": "ack-comment"})),
      el(
        "div",
        {class: "form-actions"},
        el("button", {type: "submit", class: "primary small", text: "Acknowledge", "data-testid": "ack-submit"}),
        el("button", {type: "button", class: "small", text: "Cancel", "data-testid": "ack-cancel", on: {click: () => this.close()}}),
      ),
      error,
    );
    form.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") this.close();
    });
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.submit(a, form, error).catch(reportBug);
    });
    return form;
  }

  async submit(a, form, error) {
    const by = form.elements.by.value.trim();
    const comment = form.elements.comment.value.trim();
    const submit = $id("ack-submit", form);
    submit.disabled = true;
    this.busy = true;
    try {
      const sent = by || "dashboard";
      const acked = await api(ackPath(a.fingerprint), {method: "POST", body: {by: sent, comment}});
      if (by) rememberName(by);
      this.close();
      // Acknowledging an acknowledged alert keeps the first acknowledgement.
      this.flash(
        acked.acknowledged_by === sent
          ? `Acknowledged ${a.rule} on ${a.target} as ${sent}.`
          : `${a.rule} on ${a.target} was already acknowledged by ${acked.acknowledged_by}.`,
        true,
      );
    } catch (err) {
      reportBug(err);
      if (!(err instanceof ApiError) || err.status !== 409) {
        error.hidden = false;
        setText(error, err.status ? `${err.message} (HTTP ${err.status})` : err.message);
        return; // the form stays, with what was typed
      }
      this.close(); // it resolved meanwhile: nothing left to acknowledge
      this.flash(`Could not acknowledge ${a.rule} on ${a.target}: ${err.message}`, false);
    } finally {
      submit.disabled = false;
      this.busy = false;
    }
    await this.refresh();
  }

  async unacknowledge(a, button) {
    this.close();
    button.disabled = true;
    this.busy = true;
    try {
      await api(ackPath(a.fingerprint), {method: "DELETE"});
      this.flash(`Took back the acknowledgement of ${a.rule} on ${a.target}: escalation and repeats resume.`, true);
    } catch (err) {
      reportBug(err);
      this.flash(`Could not take back the acknowledgement of ${a.rule} on ${a.target}: ${err.message}`, false);
    } finally {
      button.disabled = false;
      this.busy = false;
    }
    await this.refresh();
  }
}

/** A flash(message, ok) writing into the page's <p data-testid=testid class="notice">. */
export function flasher(testid) {
  return (message, ok) => {
    const box = $id(testid);
    box.hidden = !message;
    box.classList.toggle("error", !ok);
    box.classList.toggle("ok", !!ok);
    box.setAttribute("role", ok ? "status" : "alert");
    setText(box, message || "");
  };
}

// ---------------------------------------------------------------------------------------------
// Tooltip: one floating element per page, for chart markers and status-page bars.

let tip = null;
export function showTooltip(anchor, content) {
  if (!tip) {
    tip = el("div", {class: "tooltip", role: "tooltip", id: "tooltip", "data-testid": "tooltip"});
    document.body.append(tip);
  }
  replace(tip, content);
  tip.hidden = false;
  const r = anchor.getBoundingClientRect();
  const tw = tip.offsetWidth;
  const th = tip.offsetHeight;
  let left = r.left + r.width / 2 - tw / 2;
  left = Math.max(8, Math.min(left, document.documentElement.clientWidth - tw - 8));
  let top = r.top - th - 8;
  if (top < 8) top = r.bottom + 8;
  tip.style.left = `${left + window.scrollX}px`;
  tip.style.top = `${top + window.scrollY}px`;
  anchor.setAttribute("aria-describedby", "tooltip");
}
export function hideTooltip(anchor) {
  if (tip) tip.hidden = true;
  if (anchor) anchor.removeAttribute("aria-describedby");
}
/** Hover and keyboard focus show content() in the tooltip. */
export function attachTooltip(node, content) {
  const show = () => showTooltip(node, content());
  const hide = () => hideTooltip(node);
  node.addEventListener("mouseenter", show);
  node.addEventListener("focus", show);
  node.addEventListener("mouseleave", hide);
  node.addEventListener("blur", hide);
  node.addEventListener("keydown", (e) => {
    if (e.key === "Escape") hide();
  });
}
document.addEventListener("scroll", () => tip && (tip.hidden = true), {passive: true});

// ---------------------------------------------------------------------------------------------
// Charts (uPlot)

export const MARKER_COLOR = {
  alert_firing: "#cf222e",
  alert_resolved: "#1a7f37",
  model_changed: "#0969da",
  breaker_open: "#cf222e",
  breaker_half_open: "#9a6700",
  breaker_closed: "#1a7f37",
};
const MARKER_LABEL = {
  alert_firing: "Alert fired",
  alert_resolved: "Alert resolved",
  model_changed: "Served model changed",
  breaker_open: "Breaker opened",
  breaker_half_open: "Breaker half-open",
  breaker_closed: "Breaker closed",
};

function markerContent(m) {
  const lines = [
    el("strong", {text: MARKER_LABEL[m.kind] || m.kind}),
    el("div", {class: "muted", text: fmtTime(m.ts)}),
  ];
  if (m.rule) lines.push(el("div", {text: `${m.rule}${m.severity ? ` (${m.severity})` : ""}`}));
  if (m.kind === "model_changed" && (m.from || m.to)) {
    lines.push(el("div", {text: `${m.from || "?"} → ${m.to || "?"}`}));
  }
  if (m.summary) lines.push(el("div", {text: m.summary}));
  return lines;
}

const MARKER_MERGE_PX = 22;
const MARKER_LIST_MAX = 8;

function markerGroupContent(items) {
  if (items.length === 1) return markerContent(items[0]);
  const shown = items.slice(-MARKER_LIST_MAX).reverse(); // newest first
  return [
    el("strong", {text: `${items.length} events`}),
    el("div", {class: "muted", text: `${fmtTime(items[0].ts)} – ${fmtTime(items[items.length - 1].ts)}`}),
    el(
      "ul",
      {},
      shown.map((m) =>
        el("li", {text: `${fmtTime(m.ts).slice(11)} ${MARKER_LABEL[m.kind] || m.kind}${m.rule ? ` ${m.rule}` : ""}${m.kind === "model_changed" && m.to ? ` → ${m.to}` : ""}`}),
      ),
    ),
    items.length > MARKER_LIST_MAX ? el("div", {class: "muted", text: `and ${items.length - MARKER_LIST_MAX} more`}) : null,
  ];
}

/**
 * uPlot plugin: vertical lines at event times, with a focusable flag per event whose tooltip
 * explains it, and optional horizontal threshold lines ([{value, color, label}]).
 */
function markersPlugin(getMarkers, getThresholds) {
  let layer = null;
  return {
    hooks: {
      init: (u) => {
        layer = el("div", {class: "markers"});
        u.over.append(layer);
      },
      draw: (u) => {
        const {ctx} = u;
        const {left, top, width, height} = u.bbox;
        const [xmin, xmax] = [u.scales.x.min, u.scales.x.max];
        ctx.save();
        ctx.beginPath();
        ctx.rect(left, top, width, height);
        ctx.clip();
        const dpr = uPlot.pxRatio;
        for (const t of getThresholds() || []) {
          const y = u.valToPos(t.value, "y", true);
          if (!Number.isFinite(y) || y < top || y > top + height) continue;
          ctx.strokeStyle = t.color;
          ctx.lineWidth = dpr;
          ctx.setLineDash([4 * dpr, 4 * dpr]);
          ctx.beginPath();
          ctx.moveTo(left, Math.round(y) + 0.5);
          ctx.lineTo(left + width, Math.round(y) + 0.5);
          ctx.stroke();
        }
        const markers = getMarkers() || [];
        ctx.setLineDash([]);
        for (const m of markers) {
          if (!(m.ts >= xmin && m.ts <= xmax)) continue;
          const x = Math.round(u.valToPos(m.ts, "x", true)) + 0.5;
          ctx.strokeStyle = MARKER_COLOR[m.kind] || "#57606a";
          ctx.lineWidth = 1.5 * dpr;
          ctx.beginPath();
          ctx.moveTo(x, top);
          ctx.lineTo(x, top + height);
          ctx.stroke();
        }
        ctx.restore();
        // DOM flags (hover/focus tooltips), positioned in CSS pixels over the plot. Events
        // closer than a flag's width share one flag whose tooltip lists them all.
        const visible = markers.filter((m) => m.ts >= xmin && m.ts <= xmax).sort((a, b) => a.ts - b.ts);
        const groups = [];
        for (const m of visible) {
          const x = u.valToPos(m.ts, "x");
          const g = groups[groups.length - 1];
          if (g && x - g.x < MARKER_MERGE_PX) g.items.push(m);
          else groups.push({x, items: [m]});
        }
        while (layer.children.length > groups.length) layer.lastChild.remove();
        groups.forEach((g, i) => {
          let flag = layer.children[i];
          if (!flag) {
            flag = el("button", {type: "button", class: "marker", "data-testid": "chart-marker"});
            attachTooltip(flag, () => markerGroupContent(flag._items));
            layer.append(flag);
          }
          const kinds = [...new Set(g.items.map((m) => m.kind))];
          // the most telling kind colours the flag: a firing beats a model change beats a resolution
          const kind = ["alert_firing", "breaker_open", "model_changed", "alert_resolved"].find((k) => kinds.includes(k)) || kinds[0];
          flag._items = g.items;
          flag.style.left = `${g.x}px`;
          flag.style.setProperty("--marker", MARKER_COLOR[kind] || "#57606a");
          setAttr(flag, "data-kind", kind);
          setAttr(flag, "data-kinds", kinds.join(" "));
          setAttr(flag, "data-count", g.items.length);
          setAttr(flag, "data-ts", g.items[0].ts);
          setText(flag, g.items.length > 1 ? String(g.items.length) : "");
          flag.classList.toggle("multi", g.items.length > 1);
          const first = g.items[0];
          setAttr(
            flag,
            "aria-label",
            g.items.length > 1
              ? `${g.items.length} events from ${fmtTime(first.ts)}`
              : `${MARKER_LABEL[first.kind] || first.kind} at ${fmtTime(first.ts)}: ${first.summary || ""}`,
          );
        });
      },
    },
  };
}

/** uPlot points.filter: indices of values with no neighbour to draw a line to. */
function isolatedPoints(u, sidx, show) {
  if (show) return null; // uPlot draws every point anyway
  const d = u.data[sidx];
  const out = [];
  const has = (v) => v !== null && v !== undefined;
  for (let i = 0; i < d.length; i++) {
    if (has(d[i]) && !has(d[i - 1]) && !has(d[i + 1])) out.push(i);
  }
  return out.length ? out : null;
}

const allNull = (cols) => cols.every((c) => !c || c.every((v) => v === null || v === undefined));

/**
 * A time-series chart in `container`.
 *
 *   new TimeChart(container, {
 *     series: [{label, color, width?, dash?, fill?}],
 *     yFormat: fmtMs, yMin: 0, yMax: null (auto) | number,
 *     bars: false, stacked: false,      // stacked bars: series drawn on top of each other
 *     height: 220, sync: "key", thresholds: [{value, color}], utc: false, step: seconds,
 *   })
 *   chart.setData(ts, [col, col, ...], markers)
 *
 * Values may be null (a gap). With all values null the chart says "No data".
 */
export class TimeChart {
  constructor(container, opts) {
    this.container = container;
    this.opts = {height: 220, yMin: 0, yMax: null, bars: false, stacked: false, ...opts};
    this.markers = [];
    this.plot = null;
    this.raw = [];
    this.empty = el("div", {class: "chart-empty", "data-testid": "chart-empty", hidden: true, text: "No data in this range"});
    this.host = el("div", {class: "chart-host"});
    container.classList.add("chart");
    container.append(this.host, this.empty);
    this._resize = () => {
      cancelAnimationFrame(this._raf);
      this._raf = requestAnimationFrame(() => {
        if (this.plot) {
          const w = this._width();
          if (w !== this.plot.width) this.plot.setSize({width: w, height: this.opts.height});
        }
      });
    };
    if (window.ResizeObserver) new ResizeObserver(this._resize).observe(container);
    else window.addEventListener("resize", this._resize);
  }

  _width() {
    return Math.max(200, Math.floor(this.container.clientWidth || 600));
  }

  /** ts: Unix seconds; cols: one array per series (same length as ts); markers: events. */
  setData(ts, cols, markers = [], seriesOpts) {
    if (seriesOpts) this.opts.series = seriesOpts;
    this.markers = markers || [];
    this.raw = cols;
    const isEmpty = !ts.length || allNull(cols);
    this.empty.hidden = !isEmpty;
    this.container.setAttribute("data-empty", isEmpty ? "true" : "false");
    this.container.setAttribute("data-points", String(ts.length));
    // Bars stand in the middle of their bucket [ts, ts + step).
    const half = this.opts.bars && this.opts.step ? this.opts.step / 2 : 0;
    const xs = half ? ts.map((t) => t + half) : ts;
    this._half = half;
    this._ts = xs;
    const data = [xs, ...this._plotted(cols)];
    const shape = this.opts.series.map((s) => s.label).join("\u0000");
    if (this.plot && this._shape === shape) {
      this.plot.setData(data);
      return;
    }
    if (this.plot) this.plot.destroy();
    this._shape = shape;
    this.plot = new uPlot(this._uplotOpts(), data, this.host);
  }

  /** Stacked series are plotted cumulatively, largest (drawn first) to smallest (on top). */
  _plotted(cols) {
    if (!this.opts.stacked) return cols;
    const n = cols.length ? cols[0].length : 0;
    const acc = [];
    let running = new Array(n).fill(null);
    for (const col of cols) {
      running = running.map((r, i) => (col[i] === null || col[i] === undefined ? r : (r ?? 0) + col[i]));
      acc.push(running);
    }
    return acc.reverse();
  }

  _order() {
    const idx = this.opts.series.map((_, i) => i);
    return this.opts.stacked ? idx.reverse() : idx;
  }

  _uplotOpts() {
    const o = this.opts;
    const fmt = o.yFormat || ((v) => fmtNum(v));
    const order = this._order();
    const barsPath = o.bars && uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({size: [0.7, 64], gap: 1}) : null;
    const series = [
      {
        value: (u, v) =>
          v === null || v === undefined ? DASH : (o.xFormat || ((t) => fmtTime(t, {seconds: false})))(v - (this._half || 0)),
      },
      ...order.map((i) => {
        const s = o.series[i];
        return {
          label: s.label,
          stroke: s.color,
          width: s.width ?? (o.bars ? 0 : 1.5),
          dash: s.dash,
          fill: s.fill ?? (o.bars ? s.color : undefined),
          paths: barsPath || undefined,
          // uPlot shows points where the data is sparse; isolated values between gaps (one
          // bucket with data) get a point always, or they would be invisible.
          points: o.bars ? {show: false} : {size: 5, fill: s.color, filter: isolatedPoints},
          spanGaps: false,
          value: (u, v, sidx, didx) => {
            const raw = this.raw[i] && didx !== null && didx !== undefined ? this.raw[i][didx] : v;
            return raw === null || raw === undefined ? DASH : fmt(raw);
          },
        };
      }),
    ];
    const yRange = (u, min, max) => {
      const lo = o.yMin ?? (Number.isFinite(min) ? min : 0);
      let hi = o.yMax ?? (Number.isFinite(max) ? max : null);
      if (o.yMax === null && Number.isFinite(max)) hi = max > 0 ? max * 1.1 : 1;
      if (hi === null || !(hi > lo)) hi = lo + (o.yDefaultSpan || 1);
      return [lo, hi];
    };
    // Buckets start at ts and last `step` seconds: the x axis runs from the first bucket's
    // start to the last one's end (so recent markers show), bars sit in the bucket's middle.
    const xRange = (u, min, max) => {
      if (!Number.isFinite(min) || !Number.isFinite(max)) {
        const t = now();
        return [t - 3600, t];
      }
      const ts = this._ts || [];
      // Anything but the data's own extent is a zoom selection: keep it as it is.
      if (!ts.length || min !== ts[0] || max !== ts[ts.length - 1]) return [min, max];
      const step = o.step || 0;
      if (o.bars && step) return [min - step / 2, max + step / 2];
      if (step) return [min, max + step];
      return min === max ? [min - 60, max + 60] : [min, max];
    };
    const opts = {
      width: this._width(),
      height: o.height,
      series,
      scales: {x: {time: true, range: xRange}, y: {range: yRange}},
      axes: [
        {stroke: "#57606a", grid: {stroke: "#eaeef2", width: 1}, ticks: {stroke: "#d0d7de", width: 1}},
        {
          stroke: "#57606a",
          size: o.axisSize || 64,
          grid: {stroke: "#eaeef2", width: 1},
          ticks: {stroke: "#d0d7de", width: 1},
          values: (u, vals) => vals.map((v) => (v === null ? "" : (o.axisFormat || fmt)(v))),
        },
      ],
      legend: {show: true, live: true},
      cursor: {
        sync: o.sync ? {key: o.sync, setSeries: false} : undefined,
        points: {size: 6},
        drag: {x: true, y: false, setScale: true},
      },
      focus: {alpha: 0.4},
      plugins: [markersPlugin(() => this.markers, () => o.thresholds)],
    };
    if (o.utc) opts.tzDate = (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");
    return opts;
  }

  destroy() {
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}
