// clawguard console. Every value is put on the page with textContent (never innerHTML), so
// whatever an agent names a tool is shown as text. The API key lives in sessionStorage only
// and goes in a header; the page updates from GET /api/events, read with fetch() because
// EventSource cannot send headers. Nothing here polls: lists are read when the page opens,
// when an event says they changed, and after the stream reconnects.
"use strict";

(() => {
  const KEY_SLOT = "clawguard.apiKey";
  const VIEWS = {
    // role -> the views it may use, in tab order
    leader: ["approvals"],
    operator: ["approvals", "budgets", "runs", "audit"],
    admin: ["approvals", "budgets", "runs", "audit"],
  };
  const TITLES = { approvals: "Approvals", budgets: "Budgets", runs: "Runs", audit: "Audit" };
  const $ = (id) => document.getElementById(id);

  let me = null;          // GET /api/me
  let current = null;     // the view on screen
  let stream = null;      // the AbortController of the open event stream
  let lastEventId = null; // resume point for Last-Event-ID
  const approvals = new Map(); // id -> approval row
  const pendingReads = new Map(); // view -> timer, to fold a burst of events into one read
  let runTrips = new Map(); // runId -> breaker reason, from circuit_break audit rows

  // --- DOM helpers: text only -------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = String(value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function show(node, visible) { node.hidden = !visible; }

  function notice(text) {
    const box = $("notice");
    box.textContent = text || "";
    show(box, Boolean(text));
  }

  // --- money and time -----------------------------------------------------------------------

  function usd(cents) { return "$" + (cents / 100).toFixed(2); }
  function usdMicros(micros) { return "$" + (micros / 1_000_000).toFixed(micros % 10_000 ? 4 : 2); }

  function when(ms) {
    if (ms === null || ms === undefined) return "";
    const d = new Date(ms);
    return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
  }

  function span(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + String(s % 60).padStart(2, "0") + " s";
    const h = Math.floor(m / 60);
    return h + " h " + String(m % 60).padStart(2, "0") + " min";
  }

  // --- the API --------------------------------------------------------------------------------

  function key() { return sessionStorage.getItem(KEY_SLOT); }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && (body.message || body.error)) || "HTTP " + status);
      this.status = status;
      this.code = body && body.error;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + key() };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    const text = await resp.text();
    const data = text ? JSON.parse(text) : null;
    if (resp.status === 401) { signOut("The key was refused (unknown, revoked or expired)."); }
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  }

  // --- sign-in ----------------------------------------------------------------------------------

  async function signIn(given) {
    sessionStorage.setItem(KEY_SLOT, given);
    let who;
    try {
      who = await api("GET", "/api/me");
    } catch (err) {
      sessionStorage.removeItem(KEY_SLOT);
      $("signin-error").textContent = err.status === 401 ? "That key is not valid." : err.message;
      return;
    }
    const views = VIEWS[who.role];
    if (!views) {
      sessionStorage.removeItem(KEY_SLOT);
      $("signin-error").textContent =
        "An " + who.role + " key has nothing to show here: sign in with a leader, operator or admin key.";
      return;
    }
    me = who;
    $("key").value = "";
    $("signin-error").textContent = "";
    show($("signin"), false);
    show($("session"), true);
    $("who").textContent = who.name + " · " + who.role +
      (who.leads ? " of " + who.leads.join(", ") : "");
    buildTabs(views);
    openStream();
    const wanted = location.hash.slice(1);
    select(views.includes(wanted) ? wanted : views[0]);
  }

  function signOut(why) {
    sessionStorage.removeItem(KEY_SLOT);
    me = null;
    if (stream) { stream.abort(); stream = null; }
    lastEventId = null;
    approvals.clear();
    for (const name of Object.keys(TITLES)) show($("view-" + name), false);
    $("tabs").replaceChildren();
    show($("tabs"), false);
    show($("session"), false);
    show($("signin"), true);
    $("signin-error").textContent = why || "";
    notice("");
    $("key").focus();
  }

  function buildTabs(views) {
    const nav = $("tabs");
    nav.replaceChildren(...views.map((name) => el("button", {
      type: "button", id: "tab-" + name, "data-view": name,
      onclick: () => select(name),
    }, TITLES[name], name === "approvals" ? el("span", { class: "count", id: "approvals-count", hidden: true }) : null)));
    show(nav, true);
  }

  function select(name) {
    current = name;
    for (const view of Object.keys(TITLES)) show($("view-" + view), view === name);
    for (const tab of $("tabs").querySelectorAll("button")) {
      if (tab.dataset.view === name) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
    }
    history.replaceState(null, "", "#" + name);
    load(name);
  }

  function load(name) {
    const loader = { approvals: loadApprovals, budgets: loadBudgets, runs: loadRuns, audit: loadAudit }[name];
    loader().catch((err) => { if (err.status !== 401) notice("Could not read " + name + ": " + err.message); });
  }

  // Events arrive in bursts (a spend that crosses and pauses); one read answers the burst.
  function reloadSoon(name) {
    if (!me || !VIEWS[me.role].includes(name) || pendingReads.has(name)) return;
    pendingReads.set(name, setTimeout(() => { pendingReads.delete(name); load(name); }, 150));
  }

  // --- approvals ------------------------------------------------------------------------------------

  const canDecide = () => me.role === "leader" || me.role === "admin";

  async function loadApprovals() {
    const found = await api("GET", "/api/tools/approvals?limit=200");
    approvals.clear();
    for (const row of found.approvals) approvals.set(row.id, row);
    renderApprovals();
  }

  function what(row) {
    if (row.toolName.startsWith("delegate:")) {
      return { verb: "delegate", object: row.toolName.slice("delegate:".length) + " work" };
    }
    return { verb: "run", object: row.toolName };
  }

  function renderApprovals() {
    $("approvals-mode").textContent = canDecide()
      ? "Each card is one agent asking to act. Approve once lets this one call through; allow always also lets the same agent use the same tool later without asking."
      : "Read-only: an operator key sees what waits; a leader decides.";
    const rows = [...approvals.values()].sort((a, b) => a.createdAt - b.createdAt);
    $("approvals-list").replaceChildren(...rows.map(approvalCard));
    show($("approvals-empty"), rows.length === 0);
    const count = $("approvals-count");
    if (count) { count.textContent = String(rows.length); show(count, rows.length > 0); }
    tick();
  }

  function approvalCard(row) {
    const { verb, object } = what(row);
    const title = el("h3", {}, el("span", { class: "agent", text: row.agentId }),
      " asks to " + verb + " ", el("span", { class: "tool", text: object }));
    const facts = el("dl", {},
      el("dt", { text: "Agent" }), el("dd", { text: row.agentId }),
      el("dt", { text: verb === "run" ? "Tool" : "Delegation" }), el("dd", { class: "tool-name", text: row.toolName }),
      row.reason ? el("dt", { text: "Reason" }) : null, row.reason ? el("dd", { text: row.reason }) : null,
      row.taskId ? el("dt", { text: "Task" }) : null, row.taskId ? el("dd", { text: row.taskId }) : null,
      row.tenantId ? el("dt", { text: "Tenant" }) : null, row.tenantId ? el("dd", { text: row.tenantId }) : null,
    );
    const args = row.argsSummary
      ? el("pre", { class: "args", "aria-label": "Arguments (secrets masked)", text: prettyArgs(row.argsSummary) })
      : el("p", { class: "hint", text: "No arguments." });
    const meta = el("p", { class: "meta" },
      el("span", { class: "age", "data-since": row.createdAt }),
      el("span", { class: "countdown", "data-until": row.expiresAt }),
      el("span", { text: row.id }));
    const card = el("li", { class: "card approval", "data-id": row.id }, title, meta, facts, args,
      stages(row), decisions(row, verb, object));
    return card;
  }

  function prettyArgs(text) {
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (_) { return text; }
  }

  // Staged approvals (gates and quorum) say who has voted; Clawboo's prompts have none.
  function stages(row) {
    if (!Array.isArray(row.stages) || row.stages.length === 0) return null;
    return el("ol", { class: "stages", "aria-label": "Stages" }, ...row.stages.map((stage) =>
      el("li", {}, String(stage.name || "stage") + " — " + String(stage.status || ""),
        el("ul", {}, ...(stage.gates || []).map((gate) => el("li", {},
          (gate.group ? "group " + gate.group + ": " : "") +
          (gate.votes || []).length + " of " + gate.count + " votes" +
          ((gate.votes || []).length ? " (" + gate.votes.map((v) =>
            String(v.keyName || v.keyId || v.voter || "?") + " " + String(v.decision || "")).join(", ") + ")" : "")))))));
  }

  function decisions(row, verb, object) {
    if (!canDecide()) return null;
    const label = (action) => action + ": " + row.agentId + " may " + verb + " " + object;
    const box = el("div", { class: "actions" },
      el("button", { type: "button", class: "act primary", "data-decision": "allow_once",
        "aria-label": label("Approve once"), onclick: () => decide(row, "allow_once") }, "Approve once"),
      el("button", { type: "button", class: "act", "data-decision": "allow_always",
        "aria-label": label("Allow always"), onclick: () => decide(row, "allow_always") }, "Allow always"),
      el("button", { type: "button", class: "act danger", "data-decision": "deny",
        "aria-label": "Deny: " + row.agentId + " may not " + verb + " " + object,
        onclick: () => decide(row, "deny") }, "Deny"));
    if (me.role !== "admin") return box;
    const reason = el("input", { type: "text", maxlength: 500, placeholder: "Reason for waiving",
      "aria-label": "Reason for waiving " + row.id });
    const waive = el("form", { class: "waive" }, reason,
      el("button", { type: "submit", class: "act" }, "Waive"));
    waive.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (!reason.value.trim()) { reason.focus(); notice("A waiver needs a reason."); return; }
      act(row, "/api/tools/approvals/" + encodeURIComponent(row.id) + "/waive", { reason: reason.value.trim() });
    });
    return el("div", {}, box, waive);
  }

  function decide(row, decision) {
    act(row, "/api/tools/approvals/" + encodeURIComponent(row.id) + "/resolve", { decision });
  }

  async function act(row, path, body) {
    const card = document.querySelector('li.approval[data-id="' + CSS.escape(row.id) + '"]');
    if (card) for (const b of card.querySelectorAll("button")) b.disabled = true;
    try {
      const answer = await api("POST", path, body);
      notice("");
      if (answer.approval && answer.approval.status === "pending") approvals.set(row.id, answer.approval);
      else approvals.delete(row.id);
    } catch (err) {
      notice("Not done: " + err.message);
      if (err.status === 409) approvals.delete(row.id); // decided or expired meanwhile
      else if (err.status !== 401) { load("approvals"); return; }
    }
    renderApprovals();
  }

  // One clock for every countdown on the page: it updates text, it reads nothing.
  function tick() {
    const now = Date.now();
    for (const node of document.querySelectorAll("[data-since]")) {
      node.textContent = "asked " + span(now - Number(node.dataset.since)) + " ago";
    }
    for (const node of document.querySelectorAll("[data-until]")) {
      const left = Number(node.dataset.until) - now;
      node.textContent = left > 0 ? "expires in " + span(left) : "expired";
      node.classList.toggle("expiring", left < 60_000);
    }
  }
  setInterval(tick, 1000);

  // --- budgets ----------------------------------------------------------------------------------------

  async function loadBudgets() {
    const found = await api("GET", "/api/governance/budgets");
    const rows = found.budgets;
    $("budgets-list").replaceChildren(...rows.map(budgetCard));
    show($("budgets-empty"), rows.length === 0);
  }

  function budgetCard(b) {
    const pct = b.limitUsdCents > 0 ? (b.spentUsdMicros / 10_000) / b.limitUsdCents * 100 : 100;
    const fill = el("div", { class: "fill" + (pct >= 100 ? " over" : pct >= 80 ? " soft" : "") });
    fill.style.width = Math.min(100, pct).toFixed(2) + "%";
    const bar = el("div", { class: "meter", role: "img",
      "aria-label": usdMicros(b.spentUsdMicros) + " spent of " + usd(b.limitUsdCents) + " (" + pct.toFixed(1) + "%); the mark is 80%" },
    fill);
    if (b.heldUsdCents > 0 && b.limitUsdCents > 0) {
      const held = el("div", { class: "held" });
      held.style.left = Math.min(100, pct).toFixed(2) + "%";
      held.style.width = Math.max(0, Math.min(100 - pct, b.heldUsdCents / b.limitUsdCents * 100)).toFixed(2) + "%";
      bar.append(held);
    }
    bar.append(el("div", { class: "line80" }));
    const facts = el("dl", {},
      el("dt", { text: "Spent" }), el("dd", { text: usdMicros(b.spentUsdMicros) + " of " + usd(b.limitUsdCents) + " (" + pct.toFixed(1) + "%)" }),
      b.heldUsdCents ? el("dt", { text: "Held" }) : null, b.heldUsdCents ? el("dd", { text: usd(b.heldUsdCents) }) : null,
      el("dt", { text: "Mode" }), el("dd", { text: b.mode === "cap" ? "cap (pauses at 100%)" : "warn" }),
      b.window ? el("dt", { text: "Window" }) : null, b.window ? el("dd", { text: windowText(b) }) : null,
      b.tenantId ? el("dt", { text: "Tenant" }) : null, b.tenantId ? el("dd", { text: b.tenantId }) : null,
      el("dt", { text: "Updated" }), el("dd", { text: when(b.updatedAt) }));
    return el("li", { class: "card budget", "data-scope": b.scope, "data-scope-id": b.scopeId },
      el("h3", {}, b.scope + " ", el("span", { text: b.scopeId }), " ",
        el("span", { class: "badge " + b.status, text: b.status.replace("_", " ") })),
      bar, facts, b.status === "paused" ? resumeForm(b) : null);
  }

  function windowText(b) {
    const w = b.window;
    if (typeof w !== "object") return String(w);
    return [w.kind || w.period || "", w.resetsAt ? "resets " + when(w.resetsAt) : ""].filter(Boolean).join(", ");
  }

  function resumeForm(b) {
    const grace = el("input", { type: "number", min: 0, step: 1, inputmode: "numeric",
      placeholder: "grace ¢", "aria-label": "Grace in cents for " + b.scope + " " + b.scopeId });
    const form = el("form", { class: "resume" },
      el("button", { type: "submit", class: "act primary", "aria-label": "Resume " + b.scope + " " + b.scopeId }, "Resume"),
      grace, el("span", { class: "hint", text: "optional grace: cents allowed over the limit before it pauses again" }));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = grace.value === "" ? {} : { graceUsdCents: Number(grace.value) };
      try {
        const answer = await api("POST", "/api/governance/budgets/" + encodeURIComponent(b.scope) + "/" +
          encodeURIComponent(b.scopeId) + "/resume", body);
        notice(answer.willRepause ? "Resumed; its next spend pauses it again unless the limit or grace allows it." : "");
      } catch (err) { notice("Not resumed: " + err.message); }
      load("budgets");
    });
    return form;
  }

  // --- runs -----------------------------------------------------------------------------------------

  async function loadRuns() {
    const [found, trips] = await Promise.all([
      api("GET", "/api/governance/runs?limit=200"),
      api("GET", "/api/governance/audit?eventType=circuit_break&limit=1000"),
    ]);
    runTrips = new Map(trips.audit.map((row) => [row.details.runId, row.details]));
    const body = $("runs-table").tBodies[0];
    body.replaceChildren(...found.runs.map((run) => {
      const trip = runTrips.get(run.id);
      return el("tr", { "data-run": run.id },
        el("td", { class: "mono", text: run.id }),
        el("td", { text: run.agentId }),
        el("td", {}, el("span", { class: "badge " + run.status, text: run.status })),
        el("td", { text: trip ? trip.reason + (trip.detail ? ": " + trip.detail : "") : (run.status === "running" ? "closed (ok)" : "") }),
        el("td", { text: String(run.depth) + (run.parentRunId ? " (from " + run.parentRunId + ")" : "") }),
        el("td", { text: when(run.startedAt) }),
        el("td", { text: run.endedAt ? when(run.endedAt) : "lease to " + when(run.leaseExpiresAt) }));
    }));
    show($("runs-empty"), found.runs.length === 0);
  }

  // --- audit ------------------------------------------------------------------------------------------

  async function loadAudit() {
    const form = new FormData($("audit-filters"));
    const query = new URLSearchParams();
    const agent = String(form.get("agentId") || "").trim();
    if (agent) query.set("agentId", agent);
    if (form.get("eventType")) query.set("eventType", String(form.get("eventType")));
    if (form.get("since")) query.set("since", String(new Date(String(form.get("since"))).getTime()));
    query.set("limit", String(form.get("limit") || 200));
    const [found, head] = await Promise.all([
      api("GET", "/api/governance/audit?" + query.toString()),
      api("GET", "/api/governance/audit/head"),
    ]);
    const rows = found.audit;
    $("audit-table").tBodies[0].replaceChildren(...rows.map((row) => el("tr", { "data-seq": row.id },
      el("td", { text: String(row.id) }),
      el("td", { text: when(row.createdAt) }),
      el("td", { text: row.eventType }),
      el("td", { text: row.action }),
      el("td", { text: row.agentId || "" }),
      el("td", { class: "details", text: row.detailsValid ? row.summary : "unreadable: " + row.detailsRaw }))));
    verifyShown(rows, head).catch((err) => chain("bad", "Could not check the chain: " + err.message));
  }

  function chain(kind, text) {
    const box = $("chain");
    box.className = "chain " + kind;
    box.textContent = text;
  }

  // The rows on screen, checked as `clawguard audit verify` checks the whole chain: each row's
  // hash recomputed from its content, each next to its predecessor linked by prevHash, and the
  // newest shown equal to the head when it is the head.
  async function verifyShown(rows, head) {
    if (!window.crypto || !crypto.subtle) {
      chain("", "Chain: not checked here (the browser offers hashing on https or localhost only). Run `clawguard audit verify`.");
      return;
    }
    for (const row of rows) {
      const details = row.detailsValid ? row.summary : row.detailsRaw;
      const content = JSON.stringify([row.id, row.eventType, row.action, row.agentId, details, row.createdAt]);
      const bytes = new TextEncoder().encode("\u0001" + row.prevHash + content);
      const digest = await crypto.subtle.digest("SHA-256", bytes);
      const hex = [...new Uint8Array(digest)].map((x) => x.toString(16).padStart(2, "0")).join("");
      if (hex !== row.hash) { chain("bad", "Chain broken: row " + row.id + " does not match its hash (edited)."); return; }
    }
    let links = 0;
    for (let i = 0; i + 1 < rows.length; i++) {
      if (rows[i].id === rows[i + 1].id + 1) {
        if (rows[i].prevHash !== rows[i + 1].hash) { chain("bad", "Chain broken: row " + rows[i].id + " does not link to row " + rows[i + 1].id + "."); return; }
        links++;
      }
    }
    const newest = rows[0];
    if (newest && newest.id === head.seq && newest.hash !== head.hash) { chain("bad", "Chain broken: the newest row is not the head."); return; }
    chain("ok", "Chain verified for the " + rows.length + " rows shown: each matches its hash, " + links +
      " adjacent links hold; head is row " + head.seq + ". `clawguard audit verify` checks every row.");
  }

  // --- the event stream -----------------------------------------------------------------------------

  function setLive(on) {
    const badge = $("live");
    badge.textContent = on ? "live" : "reconnecting";
    badge.classList.toggle("on", on);
  }

  function openStream() {
    if (stream) stream.abort();
    const ctl = new AbortController();
    stream = ctl;
    follow(ctl).catch(() => {});
  }

  async function follow(ctl) {
    let backoff = 1000;
    let first = true;
    while (!ctl.signal.aborted && me) {
      try {
        const headers = { Authorization: "Bearer " + key() };
        if (lastEventId) headers["Last-Event-ID"] = lastEventId;
        const resp = await fetch("/api/events", { headers, signal: ctl.signal, cache: "no-store" });
        if (resp.status === 401) { signOut("The key was refused (unknown, revoked or expired)."); return; }
        if (!resp.ok || !resp.body) throw new Error("HTTP " + resp.status);
        setLive(true);
        backoff = 1000;
        if (!first && current) load(current); // spends have no id to replay: read afresh
        first = false;
        await readEvents(resp.body);
      } catch (err) {
        if (ctl.signal.aborted) return;
      }
      setLive(false);
      await new Promise((done) => setTimeout(done, backoff));
      backoff = Math.min(backoff * 2, 30_000);
    }
  }

  async function readEvents(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const message = { event: "message", data: "", id: null };
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const at = line.indexOf(":");
          const field = at < 0 ? line : line.slice(0, at);
          const text = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
          if (field === "event") message.event = text;
          else if (field === "data") message.data += text;
          else if (field === "id") message.id = text;
        }
        if (message.id) lastEventId = message.id;
        if (message.data) handle(message.event, JSON.parse(message.data));
      }
    }
  }

  function handle(name, body) {
    const data = body.data || {};
    if (name === "approval.requested" || name === "approval.decided") {
      if (name === "approval.decided" && data.approvalId) { approvals.delete(data.approvalId); renderApprovals(); }
      reloadSoon("approvals");
    } else if (name === "spend" || name === "budget.crossed" || name === "budget.paused") {
      if (current === "budgets") reloadSoon("budgets");
    } else if (name === "run.tripped") {
      if (current === "runs") reloadSoon("runs");
    }
    if (current === "audit" && body.id) reloadSoon("audit");
  }

  // --- start ------------------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const given = $("key").value.trim();
      if (given) signIn(given);
    });
    $("signout").addEventListener("click", () => signOut(""));
    $("audit-filters").addEventListener("submit", (ev) => { ev.preventDefault(); load("audit"); });
    const saved = key();
    if (saved) signIn(saved); else $("key").focus();
  });
})();
