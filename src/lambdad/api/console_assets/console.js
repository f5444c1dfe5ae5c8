// lambdad's web console (docs/console.md): plain JavaScript, no build step, no network beyond
// lambdad. Routes: #/ (functions), #/fn/<name>[/<tab>] (tabs: config, invoke, logs, metrics, traces),
// #/exec/<durable execution ARN> (one durable execution: its status, payloads and history).
"use strict";

const PAGE = 50;
const view = () => document.getElementById("view");
let stopCurrent = () => {};

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  return add(el, children);
}

function add(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// replaceChildren that skips null / false and flattens arrays, as h() does
function fill(el, ...children) {
  el.replaceChildren();
  return add(el, children);
}

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (opts.method && opts.method !== "GET") headers["X-Lambdad-Console"] = "1";
  const resp = await fetch(path, { ...opts, headers, credentials: "same-origin", signal: opts.signal });
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
  if (resp.status === 403 && body && /Log in/.test(body.Message || body.message || "")) {
    location.href = "/console/login";
    throw new Error("not logged in");
  }
  return { status: resp.status, ok: resp.ok, headers: resp.headers, body, text };
}

function errorText(r) {
  const b = r.body || {};
  return (r.headers.get("x-amzn-ErrorType") || b.__type || b.Type || "Error") + ": " + (b.Message || b.message || r.text);
}

const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString() : "—");
const enc = encodeURIComponent;

// ---------------------------------------------------------------- function list
async function listPage(marker, history) {
  const started = performance.now();
  const q = "?MaxItems=" + PAGE + (marker ? "&Marker=" + enc(marker) : "");
  const fns = await api("/2015-03-31/functions/" + q);
  if (!fns.ok) { fill(view(), h("p", { class: "error" }, errorText(fns))); return; }
  // State and last invocation: ListFunctions has neither (as on AWS)
  const names = fns.body.Functions.map((f) => "name=" + enc(f.FunctionName)).join("&");
  const sum = names ? await api("/_lambdad/console/summary?" + names) : { ok: false };
  const extra = (sum.ok && sum.body.functions) || {};
  const rows = fns.body.Functions.map((f) =>
    h("tr", { "data-function": f.FunctionName },
      h("td", {}, h("a", { href: "#/fn/" + enc(f.FunctionName) }, f.FunctionName)),
      h("td", { class: "state-" + ((extra[f.FunctionName] || {}).state || "") }, (extra[f.FunctionName] || {}).state || "—"),
      h("td", {}, f.Runtime || f.PackageType || ""),
      h("td", {}, f.MemorySize + " MB"),
      h("td", { class: "last-invocation" }, fmtTime((extra[f.FunctionName] || {}).lastInvocation)),
      h("td", {}, fmtTime(Date.parse(f.LastModified)))));
  const prev = history.length
    ? h("button", { onclick: () => listPage(history[history.length - 1], history.slice(0, -1)) }, "← Previous")
    : null;
  const next = fns.body.NextMarker
    ? h("button", { id: "next-page", onclick: () => listPage(fns.body.NextMarker, [...history, marker]) }, "Next →")
    : null;
  fill(view(), 
    h("h1", {}, "Functions"),
    h("form", { class: "bar", id: "goto", onsubmit: (e) => { e.preventDefault(); const n = e.target.elements.fn.value.trim(); if (n) location.hash = "#/fn/" + enc(n); } },
      h("input", { name: "fn", placeholder: "Function name or ARN", size: 40, "aria-label": "Function name" }), h("button", { type: "submit" }, "Open")),
    h("table", { id: "functions" },
      h("thead", {}, h("tr", {}, ["Name", "State", "Runtime", "Memory", "Last invocation", "Last modified"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No functions yet.")))),
    h("div", { class: "bar" }, prev, h("span", { class: "muted" }, `Page ${history.length + 1}`), next));
  document.body.dataset.shownAt = String(performance.now());
  document.body.dataset.loaded = "list";
  document.body.dataset.loadMs = String(Math.round(performance.now() - started));
}

// ---------------------------------------------------------------- function page
const TABS = ["config", "invoke", "logs", "metrics", "traces"];

async function functionPage(name, tab) {
  const base = "/2015-03-31/functions/" + enc(name);
  const tabs = h("nav", { class: "tabs" }, TABS.map((t) =>
    h("a", { href: `#/fn/${enc(name)}/${t}`, class: t === tab ? "active" : null, id: "tab-" + t }, t[0].toUpperCase() + t.slice(1))));
  const body = h("section", { id: "tab-body" }, h("p", { class: "muted" }, "Loading…"));
  fill(view(), h("p", {}, h("a", { href: "#/" }, "← Functions")), h("h1", {}, name), tabs, body);
  const render = { config: configTab, invoke: invokeTab, logs: logsTab, metrics: metricsTab, traces: tracesTab }[tab];
  await render(name, base, body);
}

function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function table(id, headers, rows, empty) {
  if (!rows.length) return h("p", { class: "muted", id }, empty);
  return h("table", { id }, h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))));
}

async function configTab(name, base, body) {
  const started = performance.now();
  const [fn, versions, aliases, eic, urls, esms, prov] = await Promise.all([
    api(base),
    api(base + "/versions?MaxItems=50"),
    api(base + "/aliases?MaxItems=50"),
    api("/2019-09-25/functions/" + enc(name) + "/event-invoke-config"),
    api("/2021-10-31/functions/" + enc(name) + "/urls"),
    api("/2015-03-31/event-source-mappings?FunctionName=" + enc(name)),
    api("/2019-09-30/functions/" + enc(name) + "/provisioned-concurrency?List=ALL"),
  ]);
  if (!fn.ok) { fill(body, h("p", { class: "error" }, errorText(fn))); return; }
  const c = fn.body.Configuration;
  const env = (c.Environment && c.Environment.Variables) || {};
  const reserved = fn.body.Concurrency && fn.body.Concurrency.ReservedConcurrentExecutions;
  const provRows = prov.ok ? (prov.body.ProvisionedConcurrencyConfigs || []).map((p) => [
    p.FunctionArn.split(":").pop(), String(p.RequestedProvisionedConcurrentExecutions),
    String(p.AllocatedProvisionedConcurrentExecutions), p.Status]) : [];
  const e = eic.ok ? eic.body : null;
  fill(body, 
    h("h2", {}, "Configuration"),
    kv([["State", c.State + (c.StateReason ? " — " + c.StateReason : "")], ["Runtime", c.Runtime || c.PackageType],
      ["Handler", c.Handler], ["Memory", c.MemorySize + " MB"], ["Timeout", c.Timeout + " s"],
      ["Ephemeral storage", c.EphemeralStorage && c.EphemeralStorage.Size + " MB"],
      ["Architectures", (c.Architectures || []).join(", ")], ["Code size", c.CodeSize + " bytes"],
      ["Code SHA-256", c.CodeSha256], ["Role", c.Role], ["Last modified", c.LastModified],
      ["Layers", (c.Layers || []).map((l) => l.Arn).join(", ")],
      ["Environment", Object.entries(env).map(([k, v]) => `${k}=${v}`).join("\n")],
      ["Tracing", c.TracingConfig && c.TracingConfig.Mode], ["Log group", c.LoggingConfig && c.LoggingConfig.LogGroup],
      ["Function ARN", c.FunctionArn]]),
    h("h2", {}, "Concurrency"),
    kv([["Reserved concurrency", reserved === undefined ? "unreserved" : String(reserved)]]),
    table("provisioned", ["Provisioned on", "Requested", "Allocated", "Status"], provRows, "No provisioned concurrency."),
    h("h2", {}, "Versions"),
    table("versions", ["Version", "Description", "Code SHA-256", "Last modified"],
      versions.ok ? versions.body.Versions.map((v) => [v.Version, v.Description || "", v.CodeSha256.slice(0, 12) + "…", v.LastModified]) : [], "No versions."),
    h("h2", {}, "Aliases"),
    table("aliases", ["Alias", "Version", "Weights"], aliases.ok ? aliases.body.Aliases.map((a) => [a.Name, a.FunctionVersion,
      a.RoutingConfig && a.RoutingConfig.AdditionalVersionWeights
        ? Object.entries(a.RoutingConfig.AdditionalVersionWeights).map(([v, w]) => `${v}: ${Math.round(w * 1000) / 10} %`).join(", ")
          + ` (${a.FunctionVersion}: ${Math.round((1 - Object.values(a.RoutingConfig.AdditionalVersionWeights).reduce((x, y) => x + y, 0)) * 1000) / 10} %)`
        : "—"]) : [], "No aliases."),
    h("h2", {}, "Asynchronous invocation"),
    e ? kv([["Maximum retry attempts", String(e.MaximumRetryAttempts ?? 2)], ["Maximum event age", (e.MaximumEventAgeInSeconds ?? 21600) + " s"],
      ["On success", e.DestinationConfig && e.DestinationConfig.OnSuccess && e.DestinationConfig.OnSuccess.Destination],
      ["On failure", e.DestinationConfig && e.DestinationConfig.OnFailure && e.DestinationConfig.OnFailure.Destination]])
      : h("p", { class: "muted" }, "Defaults (2 retries, 6 hours maximum event age)."),
    urls.ok && urls.body.FunctionUrlConfigs.length ? [h("h2", {}, "Function URLs"),
      table("urls", ["URL", "Auth type", "Invoke mode"], urls.body.FunctionUrlConfigs.map((u) => [h("a", { href: u.FunctionUrl }, u.FunctionUrl), u.AuthType, u.InvokeMode || "BUFFERED"]), "")] : null,
    esms.ok && esms.body.EventSourceMappings.length ? [h("h2", {}, "Event source mappings"),
      table("mappings", ["Source", "State", "Batch size", "Last result"], esms.body.EventSourceMappings.map((m) => [m.EventSourceArn || "", m.State, String(m.BatchSize), m.LastProcessingResult || ""]), "")] : null);
  document.body.dataset.shownAt = String(performance.now());
  document.body.dataset.loaded = "function";
  document.body.dataset.loadMs = String(Math.round(performance.now() - started));
  if (c.DurableConfig) {
    const section = h("section", { id: "durable-executions" }, h("h2", {}, "Durable executions"), h("p", { class: "muted" }, "Loading…"));
    body.append(section);
    await executionsSection(name, section, "", null, []);
  }
}

// ---------------------------------------------------------------- durable executions
const EXEC_PAGE = 20;
const STATUSES = ["RUNNING", "PAUSING", "PAUSED", "SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED"];
// StopDurableExecution stops a running or paused execution
const STOPPABLE = ["RUNNING", "PAUSING", "PAUSED"];
const fmtSeconds = (s) => (s ? fmtTime(s * 1000) : "—");
const took = (a, b) => (a && b ? (Math.round((b - a) * 1000) / 1000) + " s" : "—");
const execHref = (arn) => "#/exec/" + enc(arn);

// ListDurableExecutionsByFunction, newest first, EXEC_PAGE a page, filtered by status
async function executionsSection(name, el, status, marker, history) {
  const q = `?MaxItems=${EXEC_PAGE}&ReverseOrder=true` + (status ? "&Statuses=" + enc(status) : "") + (marker ? "&Marker=" + enc(marker) : "");
  const r = await api("/2025-12-01/functions/" + enc(name) + "/durable-executions" + q);
  const select = h("select", { id: "execution-filter", "aria-label": "Status" }, h("option", { value: "" }, "All statuses"),
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)));
  select.addEventListener("change", () => executionsSection(name, el, select.value, null, []));
  const refresh = h("button", { id: "executions-refresh", onclick: () => executionsSection(name, el, status, marker, history) }, "Refresh");
  if (!r.ok) { fill(el, h("h2", {}, "Durable executions"), h("p", { class: "error" }, errorText(r))); return; }
  const rows = r.body.DurableExecutions.map((x) => h("tr", { "data-execution": x.DurableExecutionName },
    h("td", {}, h("a", { href: execHref(x.DurableExecutionArn) }, x.DurableExecutionName)),
    h("td", { class: "status-" + x.Status }, x.Status),
    h("td", {}, fmtSeconds(x.StartTimestamp)), h("td", {}, fmtSeconds(x.EndTimestamp)),
    h("td", {}, took(x.StartTimestamp, x.EndTimestamp))));
  const prev = history.length
    ? h("button", { onclick: () => executionsSection(name, el, status, history[history.length - 1], history.slice(0, -1)) }, "← Previous") : null;
  const next = r.body.NextMarker
    ? h("button", { id: "executions-next", onclick: () => executionsSection(name, el, status, r.body.NextMarker, [...history, marker]) }, "Next →") : null;
  fill(el, h("h2", {}, "Durable executions"), h("div", { class: "bar" }, select, refresh),
    h("table", { id: "executions" },
      h("thead", {}, h("tr", {}, ["Name", "Status", "Started", "Ended", "Duration"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted" }, status ? "No " + status + " executions." : "No executions yet.")))),
    prev || next ? h("div", { class: "bar" }, prev, h("span", { class: "muted" }, `Page ${history.length + 1}`), next) : null);
  el.dataset.loaded = "1";
}

// a payload as sent (a JSON string), indented when it is JSON
function payload(text) {
  if (typeof text !== "string") return JSON.stringify(text, null, 2);
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return text; }
}

// GetDurableExecutionHistory, every page (1,000 events a page)
async function historyOf(base) {
  const events = [];
  let marker = null;
  for (let i = 0; i < 50; i++) {
    const r = await api(base + "/history?MaxItems=1000" + (marker ? "&Marker=" + enc(marker) : ""));
    if (!r.ok) return { error: r };
    events.push(...r.body.Events);
    marker = r.body.NextMarker;
    if (!marker) break;
  }
  return { events, more: Boolean(marker) };
}

async function executionPage(arn) {
  const base = "/2025-12-01/durable-executions/" + enc(arn);
  const [r, hist] = await Promise.all([api(base), historyOf(base)]);
  if (!r.ok) { fill(view(), h("p", {}, h("a", { href: "#/" }, "← Functions")), h("p", { class: "error", id: "execution-load-error" }, errorText(r))); return; }
  const x = r.body;
  const fn = x.FunctionArn.split(":")[6];
  const stop = async () => {
    if (!confirm(`Stop the execution ${x.DurableExecutionName}?`)) return;
    const s = await api(base + "/stop", { method: "POST" });
    if (!s.ok) { stopOut.textContent = errorText(s); return; }
    await executionPage(arn);
  };
  // PauseDurableExecution / ResumeDurableExecution: no confirmation (each undoes the other)
  const act = (path) => async () => {
    const s = await api(base + path, { method: "POST" });
    if (!s.ok) { stopOut.textContent = errorText(s); return; }
    await executionPage(arn);
  };
  const stopOut = h("span", { class: "error", id: "stop-error" });
  const t0 = x.StartTimestamp;
  const details = (e) => Object.entries(e).filter(([k]) => k.endsWith("Details"));
  const rows = hist.error ? [] : hist.events.map((e) => h("tr", { "data-event": e.EventType },
    h("td", {}, String(e.EventId)), h("td", {}, e.EventType + (e.SubType ? " (" + e.SubType + ")" : "")),
    h("td", { class: "event-id", title: e.Id || "" }, (e.Id || "").length > 16 ? e.Id.slice(0, 16) + "…" : e.Id || ""), h("td", {}, e.Name || ""),
    h("td", { title: fmtSeconds(e.EventTimestamp) }, e.EventTimestamp ? "+" + took(t0, e.EventTimestamp).replace("—", "0 s") : ""),
    h("td", {}, details(e).length ? h("details", {}, h("summary", {}, "Details"),
      h("pre", {}, JSON.stringify(Object.fromEntries(details(e)), null, 2))) : "")));
  fill(view(),
    h("p", {}, h("a", { href: "#/fn/" + enc(fn) }, "← " + fn)),
    h("h1", {}, x.DurableExecutionName, " ", h("span", { id: "execution-status", class: "status-" + x.Status }, x.Status)),
    h("div", { class: "bar" }, h("button", { onclick: () => executionPage(arn) }, "Refresh"),
      x.Status === "RUNNING" ? h("button", { id: "pause-execution", onclick: act("/pause") }, "Pause") : null,
      x.Status === "PAUSING" || x.Status === "PAUSED" ? h("button", { id: "resume-execution", onclick: act("/resume") }, "Resume") : null,
      STOPPABLE.includes(x.Status) ? h("button", { id: "stop-execution", onclick: stop }, "Stop") : null, stopOut),
    kv([["Execution ARN", x.DurableExecutionArn], ["Function", x.FunctionArn], ["Version", x.Version],
      ["Started", fmtSeconds(x.StartTimestamp)], ["Ended", fmtSeconds(x.EndTimestamp)], ["Duration", took(x.StartTimestamp, x.EndTimestamp)],
      ["Execution timeout", x.DurableConfig && x.DurableConfig.ExecutionTimeout + " s"],
      ["Retention", x.DurableConfig && x.DurableConfig.RetentionPeriodInDays + " days"]]),
    h("h2", {}, "Input"), h("pre", { id: "execution-input" }, payload(x.InputPayload ?? "")),
    x.Result !== undefined ? [h("h2", {}, "Result"), h("pre", { id: "execution-result" }, payload(x.Result))] : null,
    x.Error ? [h("h2", {}, "Error"), h("pre", { id: "execution-error", class: "error" }, JSON.stringify(x.Error, null, 2))] : null,
    h("h2", {}, "History"),
    hist.error ? h("p", { class: "error" }, errorText(hist.error))
      : rows.length ? h("table", { id: "history" }, h("thead", {}, h("tr", {}, ["#", "Event", "Id", "Name", "Time", ""].map((t) => h("th", {}, t)))), h("tbody", {}, rows))
        : h("p", { class: "muted", id: "history" }, "No events."),
    hist.more ? h("p", { class: "muted" }, "Only the first 50,000 events are shown.") : null);
  document.body.dataset.loaded = "execution";
}

// ---------------------------------------------------------------- invoke
const savedKey = (name) => "lambdad.testEvents." + name;
const savedEvents = (name) => { try { return JSON.parse(localStorage.getItem(savedKey(name)) || "{}"); } catch (e) { return {}; } };

function parseReport(log) {
  const line = log.split("\n").find((l) => l.startsWith("REPORT "));
  if (!line) return null;
  const found = {};
  for (const part of line.split("\t")) {
    const m = part.match(/^(Duration|Billed Duration|Memory Size|Max Memory Used|Init Duration): (.*)$/);
    if (m) found[m[1]] = m[2];
  }
  return found;
}

async function invokeTab(name, base, body) {
  const saved = savedEvents(name);
  const box = h("textarea", { id: "event", spellcheck: "false" }, "{}");
  const select = h("select", { id: "saved-events" }, h("option", { value: "" }, "Saved events…"),
    Object.keys(saved).map((k) => h("option", { value: k }, k)));
  select.addEventListener("change", () => { if (select.value) box.value = savedEvents(name)[select.value]; });
  const eventName = h("input", { id: "event-name", placeholder: "Event name" });
  const qualifier = h("select", { id: "qualifier", "aria-label": "Version or alias" }, h("option", { value: "" }, "$LATEST"));
  Promise.all([api(base + "/versions?MaxItems=50"), api(base + "/aliases?MaxItems=50")]).then(([v, a]) => {
    if (a.ok) add(qualifier, a.body.Aliases.map((x) => h("option", { value: x.Name }, "alias " + x.Name)));
    if (v.ok) add(qualifier, v.body.Versions.filter((x) => x.Version !== "$LATEST").map((x) => h("option", { value: x.Version }, "version " + x.Version)));
  });
  const out = h("div", { id: "invoke-result" });
  const save = () => {
    const all = savedEvents(name); const key = eventName.value.trim() || "event";
    all[key] = box.value; localStorage.setItem(savedKey(name), JSON.stringify(all));
    if (![...select.options].some((o) => o.value === key)) select.append(h("option", { value: key }, key));
  };
  const run = async () => {
    try { JSON.parse(box.value); } catch (e) { fill(out, h("p", { class: "error" }, "The event is not valid JSON: " + e.message)); return; }
    fill(out, h("p", { class: "muted" }, "Invoking…"));
    const q = qualifier.value ? "?Qualifier=" + enc(qualifier.value) : "";
    const r = await api(base + "/invocations" + q, { method: "POST", body: box.value, headers: { "X-Amz-Log-Type": "Tail", "Content-Type": "application/json" } });
    if (r.status >= 300) { fill(out, h("p", { class: "error", id: "invoke-error" }, errorText(r))); return; }
    const fnError = r.headers.get("X-Amz-Function-Error");
    const logB64 = r.headers.get("X-Amz-Log-Result") || "";
    const log = logB64 ? new TextDecoder().decode(Uint8Array.from(atob(logB64), (ch) => ch.charCodeAt(0))) : "";
    const report = parseReport(log);
    fill(out, 
      h("h2", {}, fnError ? h("span", { class: "error" }, "Failed: " + fnError) : h("span", { class: "ok" }, "Succeeded"),
        " ", h("span", { class: "muted", id: "executed-version" }, "version " + (r.headers.get("X-Amz-Executed-Version") || ""))),
      report ? h("p", { class: "report", id: "report" }, Object.entries(report).map(([k, v]) => h("span", {}, h("b", {}, k + ": "), v))) : null,
      h("h2", {}, "Result"), h("pre", { id: "result" }, typeof r.body === "string" ? r.body : JSON.stringify(r.body, null, 2)),
      h("h2", {}, "Log tail"), h("pre", { id: "log-tail" }, log));
  };
  fill(body, 
    h("label", { for: "event" }, "Event (JSON)"), box,
    h("div", { class: "bar" }, h("button", { class: "primary", id: "invoke", onclick: run }, "Invoke"),
      qualifier, select, eventName, h("button", { id: "save-event", onclick: save }, "Save event")),
    out);
}

// ---------------------------------------------------------------- logs
async function logsTab(name, base, body) {
  const filter = h("input", { id: "log-filter", placeholder: "Filter pattern, e.g. ERROR or { $.level = \"ERROR\" }", size: 50 });
  const pre = h("pre", { id: "log-lines" });
  const status = h("span", { class: "muted", id: "log-status" });
  fill(body, h("div", { class: "bar" }, filter, h("button", { id: "apply-filter", onclick: () => start() }, "Apply"), status), pre);
  let controller = null;
  const start = async () => {
    if (controller) controller.abort();
    const mine = controller = new AbortController();
    pre.textContent = "";
    let after = null;
    // the last 500 matching lines first, then new lines as they come (long poll)
    while (!mine.signal.aborted) {
      const q = `?function=${enc(name)}&filter=${enc(filter.value)}` + (after === null ? "&tail=500" : `&after=${after}&wait=20`);
      let r;
      try { r = await api("/_lambdad/logs" + q, { signal: mine.signal }); } catch (e) { return; }
      if (!r.ok) { status.textContent = errorText(r); status.className = "error"; return; }
      status.className = "muted"; status.textContent = "live";
      const lines = r.body.events.map((e) => new Date(e.timestamp).toISOString() + "  " + e.message.replace(/\n$/, "")).join("\n");
      if (lines) { pre.textContent += (pre.textContent ? "\n" : "") + lines; pre.scrollTop = pre.scrollHeight; }
      after = r.body.next;
    }
  };
  filter.addEventListener("keydown", (e) => { if (e.key === "Enter") start(); });
  stopCurrent = () => controller && controller.abort();
  start();
}

// ---------------------------------------------------------------- metrics
const CHARTS = [
  ["Invocations", "Invocations", ["Sum"]],
  ["Errors", "Errors", ["Sum"]],
  ["Throttles", "Throttles", ["Sum"]],
  ["Duration (ms)", "Duration", ["p50", "p99"]],
  ["Concurrent executions", "ConcurrentExecutions", ["Maximum"]],
];
const COLOURS = ["#0b63c4", "#d9730d"];

function chart(title, stats, points, start, end, period) {
  const W = 340, H = 160, L = 40, B = 20;
  const max = Math.max(1, ...points.flatMap((p) => stats.map((s) => p[s] || 0)));
  const x = (t) => L + ((t - start) / (end - start)) * (W - L - 5);
  const y = (v) => H - B - (v / max) * (H - B - 8);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  const add = (tag, attrs, text) => {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.append(el); return el;
  };
  add("line", { x1: L, y1: H - B, x2: W - 5, y2: H - B, stroke: "#999" });
  add("line", { x1: L, y1: 8, x2: L, y2: H - B, stroke: "#999" });
  add("text", { x: L - 4, y: 14, "text-anchor": "end", "font-size": 10 }, String(Math.round(max * 100) / 100));
  add("text", { x: L - 4, y: H - B, "text-anchor": "end", "font-size": 10 }, "0");
  add("text", { x: L, y: H - 5, "font-size": 10 }, new Date(start * 1000).toLocaleTimeString());
  add("text", { x: W - 5, y: H - 5, "font-size": 10, "text-anchor": "end" }, new Date(end * 1000).toLocaleTimeString());
  const sorted = [...points].sort((a, b) => a.timestamp - b.timestamp);
  if (stats.length === 1 && stats[0] === "Sum") { // counts: a bar per period
    const w = Math.max(1.5, x(start + period) - x(start) - 1);
    for (const p of sorted) {
      const v = p.Sum || 0;
      add("rect", { x: x(p.timestamp), y: y(v), width: w, height: H - B - y(v), fill: COLOURS[0], class: "point" })
        .append(Object.assign(document.createElementNS("http://www.w3.org/2000/svg", "title"), { textContent: `${new Date(p.timestamp * 1000).toLocaleTimeString()}: ${v}` }));
    }
  } else {
    stats.forEach((s, i) => {
      const pts = sorted.filter((p) => p[s] !== undefined).map((p) => [x(p.timestamp + period / 2), y(p[s])]);
      if (pts.length > 1) add("polyline", { points: pts.map((p) => p.join(",")).join(" "), fill: "none", stroke: COLOURS[i], "stroke-width": 2, class: "series" });
      pts.forEach(([cx, cy]) => add("circle", { cx, cy, r: 2.5, fill: COLOURS[i], class: "point" }));
    });
  }
  const legend = stats.length > 1 ? h("span", { class: "muted" }, " ", stats.map((s, i) => h("span", { style: `color:${COLOURS[i]}` }, s + " "))) : null;
  return h("div", { class: "chart", "data-metric": title, "data-points": String(points.length) }, h("h3", {}, title, legend), svg,
    points.length ? null : h("p", { class: "muted" }, "No data in this range."));
}

async function metricsTab(name, base, body) {
  const range = h("select", { id: "range" }, [["1 hour", 3600], ["3 hours", 10800], ["12 hours", 43200], ["1 day", 86400], ["1 week", 604800]]
    .map(([t, s]) => h("option", { value: s }, t)));
  const grid = h("div", { class: "grid", id: "charts" });
  const draw = async () => {
    const span = Number(range.value);
    const end = Math.ceil(Date.now() / 60000) * 60, start = end - span;
    const period = Math.max(60, Math.ceil(span / 60 / 60) * 60);
    const results = await Promise.all(CHARTS.map(([, metric, stats]) =>
      api(`/_lambdad/metrics/query?metric=${metric}&dimension=${enc("FunctionName=" + name)}&start=${start}&end=${end}&period=${period}` + stats.map((s) => "&stat=" + s).join(""))));
    fill(grid, ...CHARTS.map(([title, , stats], i) => results[i].ok
      ? chart(title, stats, results[i].body.datapoints, start, end, period)
      : h("div", { class: "chart error" }, title + ": " + errorText(results[i]))));
    document.body.dataset.loaded = "metrics";
  };
  range.addEventListener("change", draw);
  fill(body, h("div", { class: "bar" }, "Range ", range, h("button", { onclick: draw }, "Refresh")), grid);
  await draw();
}

// ---------------------------------------------------------------- traces
async function tracesTab(name, base, body) {
  const r = await api("/_lambdad/traces?function=" + enc(name));
  if (r.status === 404 && !(r.body && r.body.traces)) {
    fill(body, h("p", { class: "muted", id: "traces-none" }, "This server records no traces (the /_lambdad/traces endpoint is not there)."));
    return;
  }
  if (!r.ok) { fill(body, h("p", { class: "error" }, errorText(r))); return; }
  const traces = (r.body && (r.body.traces || r.body.Traces)) || [];
  if (!traces.length) { fill(body, h("p", { class: "muted" }, "No traces yet.")); return; }
  fill(body, ...traces.slice(0, 20).map((t) => {
    const spans = t.spans || t.Spans || [];
    const t0 = Math.min(...spans.map((s) => s.StartTime ?? s.start ?? s.startTime ?? 0));
    const t1 = Math.max(...spans.map((s) => s.EndTime ?? s.end ?? s.endTime ?? 0));
    const width = Math.max(t1 - t0, 1e-9);
    const parents = new Map(spans.map((s) => [s.Id, s.ParentId]));
    const depth = (s) => { let d = 0, p = s.ParentId; while (p && parents.has(p) && d < 8) { d++; p = parents.get(p); } return d; };
    return h("div", { class: "timeline" }, h("h3", {}, t.traceId || t.id || t.TraceId || "trace"),
      spans.map((s) => {
        const a = (s.StartTime ?? s.start ?? s.startTime ?? t0) - t0, b = (s.EndTime ?? s.end ?? s.endTime ?? t0) - t0;
        const origin = s.Attributes && s.Attributes["aws.xray.origin"];
        const label = (s.Name || s.name || "") + (origin ? ` (${origin})` : "");
        const bar = h("i", { style: `left:${(a / width) * 100}%;width:${((b - a) / width) * 100}%`, title: `${label}: ${Math.round((b - a) * 1e6) / 1e3} ms` });
        return h("div", { class: "span-row" }, h("span", { class: "label", style: `padding-left:${depth(s) * 12}px`, title: label }, label), h("span", { class: "track" }, bar));
      }));
  }));
}

// ---------------------------------------------------------------- routing
async function route() {
  stopCurrent(); stopCurrent = () => {};
  delete document.body.dataset.loaded;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "exec" && parts[1]) await executionPage(parts[1]);
    else if (parts[0] === "fn" && parts[1]) await functionPage(parts[1], TABS.includes(parts[2]) ? parts[2] : "config");
    else await listPage(null, []);
  } catch (e) {
    if (e.message !== "not logged in") fill(view(), h("p", { class: "error" }, String(e)));
  }
}

async function start() {
  window.addEventListener("hashchange", route);
  route(); // the page's own requests go out beside whoami's
  const who = await api("/_lambdad/console/whoami");
  if (who.ok) {
    const w = who.body;
    document.getElementById("who").textContent = (w.user ? w.user + " · " : "") + w.account + " · " + w.region;
    if (w.session) {
      const form = document.getElementById("logout");
      form.hidden = false;
      document.getElementById("logout-button").addEventListener("click", async () => {
        await api("/console/logout", { method: "POST" });
        location.href = "/console/login";
      });
    }
  }
}

start();
