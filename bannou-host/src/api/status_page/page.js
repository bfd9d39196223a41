// The status page's script. State is always re-read from the JSON endpoints (every 2 s,
// and at most every 250 ms after an event), so the page is right after any reconnect; the
// event stream only says "something changed" and feeds the list of recent events and the
// waves of the deployment. The token lives in sessionStorage and goes only into the
// Authorization header.
"use strict";

const TOKEN_KEY = "bannou.apiToken";
const POLL_MS = 2000;
const DEBOUNCE_MS = 250;
const MAX_EVENTS = 40;
// Event types the page follows (prefixes); raw heartbeats are left out.
const STREAM_TYPES = "deployment,wave,routing,pool,service,configuration,leader,reconcile";

const state = {
  refreshing: false, pending: false, lastRefresh: 0, timer: null, count: 0,
  needToken: false,
  events: [], eventsSeen: 0, lastEventId: null, replayedAt: 0,
  waves: new Map(), // deploymentId -> Map(wave index -> {state, nodes, waves})
  mappingsVersion: null,
  pools: new Set(),
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v; else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function headers(extra) {
  const h = Object.assign({}, extra);
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

class Unauthorized extends Error {}

async function post(path, body) {
  const r = await fetch(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body || {}),
    cache: "no-store",
  });
  if (r.status === 401) throw new Unauthorized(path);
  const json = await r.json().catch(() => null);
  if (!r.ok) throw new Error(path + ": " + r.status + (json && json.error ? " " + json.error : ""));
  return json;
}

async function getJson(path) {
  const r = await fetch(path, { headers: headers(), cache: "no-store" });
  return r.ok ? r.json() : null;
}

// ---- token ----------------------------------------------------------------------------

function askForToken(message) {
  state.needToken = true;
  document.body.dataset.state = "token";
  $("token-form").hidden = false;
  $("token-error").textContent = message || "";
  $("token-input").focus();
}

function tokenEntered(ev) {
  ev.preventDefault();
  const value = $("token-input").value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $("token-input").value = "";
  $("token-form").hidden = true;
  state.needToken = false;
  requestRefresh(true);
  restartStream();
}

// ---- reading the state ----------------------------------------------------------------

function requestRefresh(now) {
  if (state.needToken) return;
  if (state.refreshing) { state.pending = true; return; }
  if (state.timer) return;
  const wait = now ? 0 : Math.max(0, state.lastRefresh + DEBOUNCE_MS - Date.now());
  state.timer = setTimeout(() => { state.timer = null; refresh(); }, wait);
}

async function refresh() {
  state.refreshing = true;
  try {
    const [status, health, routing, backends, config, host] = await Promise.all([
      post("/orchestrator/status"),
      post("/orchestrator/health/services"),
      post("/orchestrator/service-routing"),
      post("/orchestrator/backends/list").catch(() => null),
      post("/orchestrator/config/version").catch(() => null),
      getJson("/health").catch(() => null),
    ]);
    const nodes = (status && status.topology && status.topology.nodes) || [];
    for (const n of nodes) { const p = poolOf(n.name); if (p) state.pools.add(p); }
    const pools = await Promise.all([...state.pools].sort().map((p) =>
      post("/orchestrator/processing-pool/status", { poolType: p })
        .then((s) => [p, s], () => [p, null])));
    render({ status, health, routing, backends, config, host, pools });
    $("error").hidden = true;
    document.body.dataset.state = "ready";
  } catch (e) {
    if (e instanceof Unauthorized) {
      askForToken(token() ? "That token was refused." : "");
    } else {
      $("error").hidden = false;
      $("error").textContent = "Could not read the state: " + e.message;
      document.body.dataset.state = "error";
    }
  } finally {
    state.refreshing = false;
    state.lastRefresh = Date.now();
    if (state.pending) { state.pending = false; requestRefresh(); }
  }
}

// A pool worker's node is named `bannou-pool-<pool type>-<8 hex digits>`.
function poolOf(name) {
  const m = /^bannou-pool-(.+)-[0-9a-f]{8}$/.exec(name || "");
  return m ? m[1] : null;
}

function ago(ts) {
  if (!ts) return "–";
  const s = Math.round((Date.now() - Date.parse(ts)) / 1000);
  if (!isFinite(s)) return ts;
  if (s < 2) return "just now";
  if (s < 120) return s + " s ago";
  if (s < 7200) return Math.round(s / 60) + " min ago";
  return new Date(ts).toLocaleString();
}

function clock(d) { return d.toLocaleTimeString([], { hourCycle: "h23" }); }

function short(id) { return id ? String(id).slice(0, 8) : "–"; }

function issuesOf(entry) {
  const m = entry.metadata || {};
  const list = m.issues || m.issue || m.error || m.reason;
  return Array.isArray(list) ? list.join("; ") : list ? String(list) : "";
}

// ---- rendering ------------------------------------------------------------------------

function render(s) {
  const status = s.status || {};
  const nodes = (status.topology && status.topology.nodes) || [];
  const entries = ((s.health && s.health.healthyServices) || [])
    .concat((s.health && s.health.unhealthyServices) || []);
  const byApp = new Map();
  for (const e of entries) {
    if (!byApp.has(e.appId)) byApp.set(e.appId, new Map());
    byApp.get(e.appId).set(e.serviceId, e);
  }
  const containers = new Map((status.services || []).map((c) => [c.name, c]));

  $("preset").textContent = status.deployed ? (status.preset || "(custom)") : "nothing deployed";
  $("deployment").textContent = status.deployed ? short(status.deploymentId) : "–";
  $("deployment").title = status.deploymentId || "";
  $("backend").textContent = status.backend || (s.backends && s.backends.activeBackend) || "–";
  $("config-version").textContent = s.config ? String(s.config.version) : "–";
  const lead = s.host && s.host.leadership;
  $("leader").textContent = lead ? (s.host.leader ? "this replica" : short(lead.holder) || "none") : "–";
  state.count += 1;
  $("refreshed").dataset.count = String(state.count);
  $("refreshed").textContent = clock(new Date());

  renderWaves(status, nodes, byApp, containers);
  renderPools(s.pools, nodes, byApp, containers);
  renderRouting(s.routing, s.config);
  renderServices(s.health, nodes, byApp);
  renderBackends(s.backends, s.host);
}

// One node's card data: health of its routed services on its app-id.
function nodeView(node, byApp, containers) {
  const app = node.appId || node.name;
  const seen = byApp.get(app) || new Map();
  // A pool worker lists itself as its service; its health is what it reports, if anything.
  const worker = !!poolOf(node.name);
  const services = (worker ? [] : node.services || []).map((svc) => {
    const e = seen.get(svc);
    return { name: svc, health: e ? e.status : "missing", entry: e };
  });
  const all = [...seen.values()];
  const healthy = all.length > 0 && services.every((x) => x.health === "Healthy")
    && all.every((e) => e.status === "Healthy");
  const anyBad = all.some((e) => e.status === "Unhealthy") || services.some((x) => x.health !== "Healthy");
  const lastSeen = all.map((e) => e.lastSeen).sort().pop();
  const instances = [...new Set(all.map((e) => e.metadata && e.metadata.instanceId).filter(Boolean))].sort();
  const container = containers.get(node.name);
  if (worker && all.length === 0) {
    // No heartbeats from this worker: the backend's state is all there is.
    const running = container && container.status === "Running";
    return { app, services, lastSeen, instances, container, health: running ? "healthy" : "unknown" };
  }
  return {
    app, services, lastSeen, instances, container,
    health: healthy ? "healthy" : anyBad && all.length ? "unhealthy" : "unknown",
  };
}

function nodeCard(node, byApp, containers) {
  const v = nodeView(node, byApp, containers);
  return el("div", {
    class: "node", "data-node": node.name, "data-health": v.health,
    "data-instance": v.instances.join(","), "data-last-seen": v.lastSeen || "",
  },
  el("div", { class: "name" }, node.name),
  el("div", { class: "meta" },
    "replicas ", el("span", { "data-field": "replicas" }, node.replicas ?? 1),
    " · backend ", el("span", { "data-field": "backend-state" }, v.container ? v.container.status : "not listed"),
    " · ", el("span", { "data-field": "health" }, v.health)),
  el("div", { class: "meta" },
    "last seen ", ago(v.lastSeen), " · instance ",
    el("span", { class: "mono" }, v.instances.map(short).join(", ") || "–")),
  el("div", { class: "chips" }, v.services.map((x) =>
    el("span", { class: "chip", "data-service": x.name, "data-health": x.health, title: x.health }, x.name))));
}

function renderWaves(status, nodes, byApp, containers) {
  const box = $("waves");
  const plain = nodes.filter((n) => !poolOf(n.name));
  if (!status.deployed || plain.length === 0) {
    box.replaceChildren(el("p", { class: "muted" }, status.deployed ? "No nodes besides pool workers." : "Nothing deployed."));
    return;
  }
  const waves = state.waves.get(status.deploymentId) || new Map();
  const waveOf = new Map();
  for (const [index, w] of waves) for (const n of w.nodes) waveOf.set(n, index);
  const groups = new Map();
  for (const n of plain) {
    const w = waveOf.get(n.appId || n.name) ?? waveOf.get(n.name) ?? 0;
    if (!groups.has(w)) groups.set(w, []);
    groups.get(w).push(n);
  }
  const parts = [...groups.keys()].sort((a, b) => (a || 1e9) - (b || 1e9)).map((w) => {
    const info = waves.get(w);
    const title = w ? "Wave " + w + (info ? " of " + info.waves + " · " + info.state : "")
      : "Wave not seen (deployed before this page's events)";
    return el("div", { class: "wave", "data-wave": w || "unknown", "data-state": info ? info.state : "unknown" },
      el("h3", {}, title),
      el("div", { class: "nodes" }, groups.get(w).map((n) => nodeCard(n, byApp, containers))));
  });
  box.replaceChildren(...parts);
}

// A duration in ms, short: sub-millisecond ones with two decimals.
function ms(v) { return v == null ? "–" : (v < 1 ? v.toFixed(2) : String(Math.round(v))) + " ms"; }

function renderPools(pools, nodes, byApp, containers) {
  const box = $("pools");
  if (!pools || pools.length === 0) {
    box.replaceChildren(el("p", { class: "muted" }, "No pools."));
    return;
  }
  box.replaceChildren(...pools.map(([type, p]) => {
    const workers = nodes.filter((n) => poolOf(n.name) === type);
    if (!p) return el("div", { class: "pool", "data-pool": type }, el("h3", {}, type), el("p", { class: "bad" }, "status unavailable"));
    const m = p.recentMetrics || {};
    return el("div", { class: "pool", "data-pool": type },
      el("h3", {}, type, " ", el("span", { class: "muted" }, "min " + p.minInstances + " · max " + p.maxInstances)),
      el("div", { class: "numbers" },
        el("div", {}, el("b", { "data-field": "total" }, p.totalInstances), el("span", {}, "workers")),
        el("div", {}, el("b", { "data-field": "available" }, p.availableInstances), el("span", {}, "available")),
        el("div", {}, el("b", { "data-field": "busy" }, p.busyInstances), el("span", {}, "leased")),
        el("div", {}, el("b", { "data-field": "queue" }, p.queueDepth), el("span", {}, "queued"))),
      el("div", { class: "bar" }, el("progress", { max: 1, value: p.utilization || 0, title: "utilization" })),
      el("div", { class: "meta muted" }, "utilization " + Math.round((p.utilization || 0) * 100) + "%",
        m.lastScaleEvent ? " · scaled " + ago(m.lastScaleEvent) : "",
        m.avgProcessingTimeMs ? " · avg job " + m.avgProcessingTimeMs + " ms" : "",
        p.recentAcquireP50Ms != null
          ? el("span", { "data-field": "acquire", "data-p50-ms": p.recentAcquireP50Ms, "data-p99-ms": p.recentAcquireP99Ms },
              " · acquire p50 " + ms(p.recentAcquireP50Ms) + " / p99 " + ms(p.recentAcquireP99Ms))
          : ""),
      el("ul", { class: "workers" }, workers.map((n) => {
        const v = nodeView(n, byApp, containers);
        return el("li", { "data-node": n.name, "data-health": v.health, "data-instance": v.instances.join(",") },
          el("span", { class: "pill " + (v.health === "healthy" ? "ok" : "bad") }, v.health), " ",
          el("span", { class: "mono" }, n.name), " · ", v.container ? v.container.status : "not listed");
      })));
  }));
}

function renderRouting(routing, config) {
  const box = $("routing");
  if (!routing) { box.replaceChildren(el("p", { class: "muted" }, "–")); return; }
  const mappings = Object.entries(routing.mappings || {}).sort();
  // Routing lag: each node's applied version (from its heartbeats) against the current one.
  const current = routing.mappingsVersion ?? state.mappingsVersion;
  const nodes = routing.nodeVersions || [];
  const behind = new Set((routing.nodesBehind || []).map((n) => n.appId));
  const lag = nodes.length === 0
    ? el("p", { class: "muted" }, "No node has reported an applied mappings version yet.")
    : el("table", { id: "node-versions" }, el("thead", {}, el("tr", {},
        el("th", {}, "Node"), el("th", {}, "Applied version"), el("th", {}, "Status"))),
      el("tbody", {}, nodes.map((n) => el("tr", {
        "data-node-version": n.appId,
        "data-applied-version": n.appliedVersion,
        "data-behind": behind.has(n.appId) ? "true" : "false",
      }, el("td", { class: "mono" }, n.appId), el("td", {}, n.appliedVersion),
        el("td", { class: behind.has(n.appId) ? "bad" : "" },
          behind.has(n.appId) ? "behind " + current : (current == null ? "–" : "current"))))));
  box.replaceChildren(
    el("table", {}, el("tbody", {},
      el("tr", {}, el("th", {}, "Mappings version"), el("td", { id: "mappings-version", "data-mappings-version": current }, current ?? "not seen yet")),
      el("tr", {}, el("th", {}, "Nodes behind"), el("td", { id: "nodes-behind", "data-nodes-behind": routing.nodesBehind ? behind.size : undefined },
        routing.nodesBehind ? (behind.size === 0 ? "none" : [...behind].sort().join(", ")) : "–")),
      el("tr", {}, el("th", {}, "Config version"), el("td", {}, config ? config.version : "–")),
      el("tr", {}, el("th", {}, "Routed services"), el("td", { id: "routed-count" }, mappings.length)),
      el("tr", {}, el("th", {}, "Default app-id"), el("td", {}, routing.defaultAppId || "–")),
      el("tr", {}, el("th", {}, "Generated"), el("td", {}, ago(routing.generatedAt))))),
    lag,
    el("details", {}, el("summary", {}, "Service → app-id"),
      el("div", { class: "scroll" }, el("table", {}, el("tbody", {},
        mappings.map(([svc, app]) => el("tr", { "data-route": svc }, el("td", {}, svc), el("td", { class: "mono" }, app))))))));
}

function renderServices(health, nodes, byApp) {
  const body = $("services").tBodies[0];
  if (!health) { body.replaceChildren(); return; }
  const rows = [];
  const shown = new Set();
  for (const n of nodes) {
    const app = n.appId || n.name;
    for (const svc of poolOf(n.name) ? [] : n.services || []) {
      const e = (byApp.get(app) || new Map()).get(svc);
      shown.add(app + "/" + svc);
      rows.push({ svc, app, e, deployed: true });
    }
  }
  // Unhealthy registrations of services no node routes still deserve a line.
  for (const e of health.unhealthyServices || []) {
    if (!shown.has(e.appId + "/" + e.serviceId)) rows.push({ svc: e.serviceId, app: e.appId, e, deployed: false });
  }
  body.replaceChildren(...rows.map(({ svc, app, e, deployed }) => {
    const st = e ? e.status : "missing";
    return el("tr", { "data-service": svc, "data-app": app, "data-health": st, "data-deployed": deployed },
      el("td", {}, svc), el("td", { class: "mono" }, app, deployed ? "" : " (not deployed)"),
      el("td", {}, el("span", { class: "pill " + (st === "Healthy" ? "ok" : "bad") }, st)),
      el("td", { title: e ? e.lastSeen : "" }, e ? ago(e.lastSeen) : "–"),
      el("td", { class: "mono" }, e && e.metadata ? short(e.metadata.instanceId) : "–"),
      el("td", {}, e ? issuesOf(e) : "no heartbeat"));
  }));
  const total = health.totalServices ?? 0;
  $("health-summary").textContent = total + " registrations on " + new Set([...byApp.keys()]).size +
    " app-ids, " + Math.round(health.healthPercentage ?? 0) + "% healthy; " +
    (health.unhealthyServices || []).length + " unhealthy. Rows: the services each node routes.";
}

function renderBackends(backends, host) {
  const lead = host && host.leadership;
  $("leadership").replaceChildren(el("p", {},
    lead ? ["Leader ", el("span", { class: "mono" }, lead.holder || "none"),
      " (token " + (lead.token ?? "–") + ")", host.leader ? " — this replica" : ""]
      : "No leadership reported (single replica without a shared store)."));
  const body = $("backends").tBodies[0];
  const list = (backends && backends.backends) || [];
  body.replaceChildren(...list.map((b) => el("tr", { "data-backend": b.type },
    el("td", {}, b.type, b.type === backends.activeBackend ? " (active)" : ""),
    el("td", {}, el("span", { class: "pill " + (b.available ? "ok" : "") }, b.available ? "yes" : "no")),
    el("td", { class: "muted" }, b.error || (b.version ? "version " + b.version : "")))));
}

// ---- the event stream -----------------------------------------------------------------

let streamAbort = null;

function setStream(s, text) {
  $("stream-state").dataset.state = s;
  $("stream-state").textContent = text;
}

function restartStream() {
  if (streamAbort) streamAbort.abort();
}

async function streamLoop() {
  let backoff = 1000;
  for (;;) {
    if (state.needToken) { await sleep(500); continue; }
    const abort = new AbortController();
    streamAbort = abort;
    try {
      const h = headers({ Accept: "text/event-stream" });
      // Fresh page: "0" is never buffered, so the stream answers `reset` naming the oldest
      // buffered id, and the next connection replays the buffer from there.
      h["Last-Event-ID"] = state.lastEventId ?? "0";
      const r = await fetch("/orchestrator/events?types=" + STREAM_TYPES, { headers: h, signal: abort.signal, cache: "no-store" });
      if (r.status === 401) { askForToken(token() ? "That token was refused." : ""); continue; }
      if (!r.ok || !r.body) {
        setStream("polling", "unavailable (" + r.status + "), re-reading every 2 s");
        await sleep(5000);
        continue;
      }
      setStream("live", "live");
      backoff = 1000;
      await readEvents(r.body.getReader(), abort);
      // Aborted (a `reset` to replay, a new token): it reconnects at once.
      if (!abort.signal.aborted) setStream("polling", "reconnecting");
    } catch (e) {
      if (!abort.signal.aborted) setStream("polling", "disconnected, re-reading every 2 s");
    }
    requestRefresh();
    await sleep(abort.signal.aborted ? 0 : backoff);
    backoff = Math.min(backoff * 2, 10000);
  }
}

async function readEvents(reader, abort) {
  const decoder = new TextDecoder();
  let buf = "";
  let ev = { type: "message", data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    // The list is drawn once a chunk, not once an event: a burst stays cheap.
    const before = state.eventsSeen;
    try { takeLines(); } finally { if (state.eventsSeen !== before) renderEvents(); }
    if (abort.signal.aborted) return;
  }

  function takeLines() {
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf[nl] === "\r" && buf[nl + 1] === "\n" ? 2 : 1));
      if (line === "") {
        if (ev.data.length || ev.type !== "message") onEvent(ev, abort);
        // A `reset` aborts to reconnect from the oldest buffered id: the live events that
        // came in the same chunk must not move `lastEventId` past the replay.
        if (abort.signal.aborted) return;
        ev = { type: "message", data: [], id: null };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "event") ev.type = val;
      else if (field === "data") ev.data.push(val);
      else if (field === "id") ev.id = val;
    }
  }
}

function onEvent(ev, abort) {
  let data = null;
  try { data = JSON.parse(ev.data.join("\n")); } catch (_) { data = ev.data.join("\n"); }
  if (ev.id) state.lastEventId = ev.id;
  if (ev.type === "reset") {
    // Replay what the buffer still holds (at most once every 5 s), then go on live.
    if (data && data.oldest && Date.now() - state.replayedAt > 5000) {
      state.replayedAt = Date.now();
      state.lastEventId = String(Number(data.oldest) - 1);
      abort.abort();
    }
    requestRefresh();
    return;
  }
  if (ev.type === "wave.started" || ev.type === "wave.healthy" || ev.type === "wave.failed") {
    noteWave(data, ev.type.slice(5));
  }
  if (ev.type === "routing.published" && data && data.version !== undefined) {
    state.mappingsVersion = data.version;
  }
  state.events.unshift({ type: ev.type, id: ev.id, data, at: new Date() });
  if (state.events.length > MAX_EVENTS) state.events.length = MAX_EVENTS;
  state.eventsSeen++;
  requestRefresh();
}

function noteWave(data, waveState) {
  if (!data || data.phase !== "deploy" || !data.deploymentId) return;
  if (!state.waves.has(data.deploymentId)) state.waves.set(data.deploymentId, new Map());
  state.waves.get(data.deploymentId).set(data.wave, { state: waveState, nodes: data.nodes || [], waves: data.waves });
}

function summary(e) {
  const d = e.data;
  if (!d || typeof d !== "object") return d ? String(d) : "";
  const parts = [];
  if (d.wave !== undefined) parts.push("wave " + d.wave + "/" + d.waves + " " + (d.nodes || []).join(", "));
  if (d.failures && d.failures.length) parts.push(d.failures.join("; "));
  if (d.preset) parts.push(d.preset);
  if (d.deploymentId && d.wave === undefined) parts.push(short(d.deploymentId));
  if (d.version !== undefined) parts.push("version " + d.version);
  if (d.poolType) parts.push(d.poolType);
  if (d.serviceName || d.serviceId) parts.push(d.serviceName || d.serviceId);
  if (d.appId) parts.push(d.appId);
  if (d.replica) parts.push(d.replica + (d.leader === true ? " leads" : d.leader === false ? " follows" : ""));
  for (const k of ["redeployed", "workersRestarted", "removed"]) {
    if (d[k] && d[k].length) parts.push(k + " " + d[k].join(", "));
  }
  if (d.errors && d.errors.length) parts.push(d.errors.join("; "));
  if (d.skipped !== undefined) parts.push(d.skipped + " skipped");
  return parts.join(" · ");
}

function renderEvents() {
  $("events").replaceChildren(...state.events.map((e) => el("li", {
    "data-type": e.type, "data-kind": e.type.split(".").pop(),
  }, el("span", { class: "when" }, clock(e.at)), el("span", { class: "type" }, e.type), " ", summary(e))));
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", tokenEntered);
  requestRefresh(true);
  setInterval(() => requestRefresh(), POLL_MS);
  streamLoop();
});
