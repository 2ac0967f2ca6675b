// The cloudai dashboard, shared part: DOM helpers, the JSON API (/api/v1) with the token
// the user logged in with, the login, what the caller may do (whoami), polling, dialogs
// and tables. Each page is its own file (overview.js, tasks.js, task.js, workers.js) that
// adds itself to CA.pages; app.js picks one by the address. Hand-written, no dependencies.
// Every value from the API reaches the page through textContent, never as HTML.
"use strict";

const CA = (() => {
  const TOKEN_KEY = "cloudai.token";
  const STATUSES = ["waiting", "queued", "assigned", "running", "succeeded", "failed", "cancelled", "timed_out", "lost"];
  const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out", "lost"]);
  // A glyph beside each status's name: the name is the cue, the colour and glyph help.
  const MARK = {
    waiting: "⧗", queued: "○", assigned: "◔", running: "▶", succeeded: "✓", failed: "✗",
    cancelled: "⊘", timed_out: "◷", lost: "?", healthy: "✓", suspect: "!", dead: "✗", unknown: "?",
    cordoned: "‖", draining: "⇥",
  };
  const state = { login: false, pollers: [], me: null };

  // ---- DOM helpers -------------------------------------------------------------------

  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    fill(el, kids, false);
    return el;
  }

  // Appends (or, with replace, replaces the children with) strings as text and nodes.
  function fill(el, kids, replace = true) {
    if (replace) el.replaceChildren();
    for (const k of [kids].flat(Infinity)) {
      if (k == null || k === false) continue;
      el.append(k instanceof Node ? k : String(k));
    }
    return el;
  }

  const $ = (sel) => document.querySelector(sel);
  const enc = encodeURIComponent;
  const label = (s) => String(s).replace(/_/g, " ");
  const shortId = (id) => String(id).slice(0, 13);
  const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

  function badge(status, kind = "st") {
    const s = status || "unknown";
    return h("span", { class: `badge ${kind}-${s}`, "data-status": s },
      h("span", { class: "mark", "aria-hidden": "true" }, MARK[s] || "•"), label(s));
  }

  function taskLink(id) {
    return h("a", { href: `/tasks/${enc(id)}`, class: "mono", title: id }, shortId(id));
  }

  function span(s) {
    if (s < 1) return `${Math.round(s * 1000)}ms`;
    if (s >= 59.5) s = Math.round(s);
    if (s < 60) return `${Math.round(s * 10) / 10}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }

  function ago(iso) {
    if (!iso) return "—";
    const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
    if (s === 0) return "just now";
    return s < 0 ? `in ${span(-s)}` : `${span(s)} ago`;
  }

  function when(iso) {
    if (!iso) return "—";
    return h("time", { datetime: iso, title: new Date(iso).toLocaleString() }, ago(iso));
  }

  function between(a, b) {
    if (!a) return "—";
    const end = b ? Date.parse(b) : Date.now();
    return span(Math.max(0, end - Date.parse(a)) / 1000) + (b ? "" : " so far");
  }

  function bytes(n) {
    if (!n) return "0";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
  }

  const cores = (n) => `${Math.round(n * 100) / 100}`;

  function argv(list) {
    return (list || []).map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(" ");
  }

  // ---- the API -----------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message, leaderUrl) {
      super(message);
      this.status = status;
      this.code = code;
      this.leaderUrl = leaderUrl;
    }
  }

  const token = () => sessionStorage.getItem(TOKEN_KEY);

  function headers(extra) {
    const hs = Object.assign({ accept: "application/json" }, extra);
    const t = token();
    if (t) hs.authorization = `Bearer ${t}`;
    return hs;
  }

  async function send(path, opts = {}) {
    const init = { method: opts.method || "GET", headers: headers(opts.headers), signal: opts.signal };
    if (opts.json !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(opts.json);
    }
    try {
      return await fetch(path, init);
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new ApiError(0, "UNAVAILABLE", `cannot reach the master (${e.message})`);
    }
  }

  // An answer that is not 2xx as an ApiError; a 401 also opens the login.
  async function failure(res) {
    let code = "", message = `${res.status} ${res.statusText}`, leader;
    try {
      const j = await res.json();
      if (j && j.error) ({ code, message, leader_url: leader } = j.error);
    } catch (_) { /* not JSON: keep the status line */ }
    if (res.status === 401) needLogin(message);
    return new ApiError(res.status, code, message, leader);
  }

  async function api(path, opts) {
    const res = await send(path, opts);
    if (!res.ok) throw await failure(res);
    return res.json();
  }

  const post = (path, json) => api(path, { method: "POST", json: json === undefined ? {} : json });

  // What the caller may do, asked once per page. The pages hide what a role may not use;
  // the API refuses it anyway.
  function whoami() {
    if (!state.me) {
      state.me = api("/api/v1/whoami").catch((e) => {
        if (e.status !== 404) throw e;
        // A master without whoami: show everything, the API decides.
        const may = { enqueue: true, cancel_own: true, cancel_any: true, bulk: true, manage_users: true };
        return { auth_enforced: !!token(), user: null, role: null, may };
      });
    }
    return state.me;
  }

  // May the caller cancel task t (its own, or any)?
  function mayCancel(me, t) {
    return me.may.cancel_any || (me.may.cancel_own && me.user != null && t.submitted_by === me.user);
  }

  // ---- login, notices, polling -------------------------------------------------------

  function needLogin(message) {
    const had = token();
    sessionStorage.removeItem(TOKEN_KEY);
    if (state.login) return;
    state.login = true;
    state.pollers.forEach((p) => p.stop());
    $("#main").hidden = true;
    $("#logout").hidden = true;
    $("#whoami").hidden = true;
    fill($("#login-why"), had
      ? `The master refused the token: ${message}. Log in again.`
      : "This master requires an API token.");
    $("#login").hidden = false;
    $("#login-token").focus();
  }

  async function logIn(ev) {
    ev.preventDefault();
    const t = $("#login-token").value.trim();
    const err = $("#login-error");
    err.hidden = true;
    if (!t) return;
    // Check it before keeping it: any role may read the queue stats.
    const res = await fetch("/api/v1/queue/stats", { headers: { authorization: `Bearer ${t}` } })
      .catch((e) => ({ ok: false, status: 0, statusText: e.message, json: async () => null }));
    if (res.ok || res.status === 503) {
      sessionStorage.setItem(TOKEN_KEY, t);
      location.reload();
      return;
    }
    let message = `${res.status} ${res.statusText}`;
    try { message = (await res.json()).error.message; } catch (_) { /* keep the status */ }
    fill(err, `That token did not work: ${message}`);
    err.hidden = false;
  }

  function notice(e) {
    const el = $("#notice");
    if (!e) { el.hidden = true; el.replaceChildren(); return; }
    if (e.status === 401) return;
    fill(el, [e.message || String(e),
      e.leaderUrl ? [" — the leader is at ", h("a", { href: e.leaderUrl }, e.leaderUrl)] : null]);
    el.hidden = false;
  }

  // Runs fn now and every ms after it settles, until it returns false or the login shows.
  function poll(fn, ms) {
    let timer = null, stopped = false, busy = false, again = false;
    const run = async () => {
      clearTimeout(timer);
      if (stopped || state.login) return;
      if (busy) { again = true; return; }
      busy = true;
      let more = true;
      try {
        more = (await fn()) !== false;
        notice(null);
      } catch (e) {
        notice(e);
      }
      busy = false;
      if (again) { again = false; run(); return; }
      if (more && !stopped && !state.login) timer = setTimeout(run, document.hidden ? ms * 4 : ms);
    };
    const p = { stop() { stopped = true; clearTimeout(timer); }, now: run };
    state.pollers.push(p);
    run();
    return p;
  }

  // Each section answers for itself: one failed call does not blank the others.
  async function settle(promise) {
    try {
      return { value: await promise };
    } catch (error) {
      if (error.status === 401) throw error;
      return { error };
    }
  }

  function errorText(e) {
    return h("p", { class: "error" }, e.message,
      e.leaderUrl ? [" — the leader is at ", h("a", { href: e.leaderUrl }, e.leaderUrl)] : null);
  }

  function page(title, nav, ...kids) {
    document.title = `${title} · cloudai`;
    for (const a of document.querySelectorAll("nav a")) {
      if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    fill($("#main"), kids);
  }

  // A modal question. fields: [{name, label, type, value, min, step, hint}]. Resolves to
  // the fields' values (an object) when confirmed, or null.
  function ask({ title, body, fields = [], confirm, danger = false }) {
    return new Promise((resolve) => {
      const inputs = fields.map((f) => h("input", {
        name: f.name, id: `ask-${f.name}`, type: f.type || "text", value: f.value ?? "",
        min: f.min, step: f.step, required: true,
      }));
      const form = h("form", { class: "ask-form" },
        h("h2", { id: "ask-title" }, title),
        h("div", { class: "ask-body" }, body),
        fields.map((f, i) => h("label", { class: "ask-field", for: `ask-${f.name}` }, f.label, inputs[i],
          f.hint ? h("span", { class: "hint" }, f.hint) : null)),
        h("div", { class: "buttons" },
          h("button", { type: "submit", id: "ask-confirm", class: danger ? "danger" : null }, confirm),
          h("button", { type: "button", id: "ask-dismiss", class: "quiet", onclick: () => dlg.close("") }, "Keep as is")));
      const dlg = h("dialog", { class: "ask", "aria-labelledby": "ask-title" }, form);
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        if (!form.reportValidity()) return;
        dlg.close("ok");
      });
      dlg.addEventListener("close", () => {
        const out = dlg.returnValue === "ok" ? Object.fromEntries(inputs.map((i) => [i.name, i.value])) : null;
        dlg.remove();
        resolve(out);
      });
      document.body.append(dlg);
      dlg.showModal();
      (inputs[0] || dlg.querySelector("#ask-confirm")).focus();
    });
  }

  // ---- tables ------------------------------------------------------------------------

  // cols: [{key, name, cell(row), sort(row) -> comparable}]. With opts.sort ({key, dir}
  // and onSort(key)), sortable columns get a button in their header; the rows are sorted
  // here. A table becomes a list of cards on a narrow screen (each cell says its column).
  function table(cols, rows, empty, opts = {}) {
    if (!rows.length) return h("p", { class: "muted empty" }, empty);
    const s = opts.sort;
    const col = s && cols.find((c) => c.key === s.key && c.sort);
    if (col) {
      const k = (r) => col.sort(r) ?? "";
      rows = rows.slice().sort((a, b) => {
        const x = k(a), y = k(b);
        const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return s.dir === "desc" ? -c : c;
      });
    }
    const head = (c) => {
      if (!(s && c.sort)) return h("th", { scope: "col" }, c.name);
      const on = col === c;
      const dir = on ? (s.dir === "desc" ? "descending" : "ascending") : null;
      return h("th", { scope: "col", "aria-sort": dir || "none", "data-col": c.key },
        h("button", { type: "button", class: "sort", "data-sort": c.key, onclick: () => opts.onSort(c.key),
          title: `Sort this page by ${c.name.toLowerCase()}` },
        c.name, h("span", { class: "arrow", "aria-hidden": "true" }, on ? (s.dir === "desc" ? " ▼" : " ▲") : " ↕")));
    };
    return h("div", { class: "table-wrap" }, h("table", { class: "cards" },
      h("thead", {}, h("tr", {}, cols.map(head))),
      h("tbody", {}, rows.map((r) => h("tr", { "data-id": r.id },
        cols.map((c) => h("td", { "data-label": c.name }, c.cell(r))))))));
  }

  const lastAttempt = (t) => t.attempts[t.attempts.length - 1];
  const time = (iso) => (iso ? Date.parse(iso) : null);

  const TASK_COLS = {
    id: { name: "ID", cell: (t) => taskLink(t.id), sort: (t) => t.id },
    status: { name: "Status", cell: (t) => badge(t.status), sort: (t) => STATUSES.indexOf(t.status) },
    image: { name: "Image", cell: (t) => h("span", { class: "mono" }, t.spec.image), sort: (t) => t.spec.image },
    command: { name: "Command", cell: (t) => h("code", { class: "cmd" }, argv(t.spec.command) || "—"), sort: (t) => argv(t.spec.command) },
    worker: { name: "Worker", cell: (t) => lastAttempt(t)?.worker_id ?? "—", sort: (t) => lastAttempt(t)?.worker_id },
    submitter: { name: "Submitter", cell: (t) => t.submitted_by ?? "—", sort: (t) => t.submitted_by },
    attempts: { name: "Attempts", cell: (t) => String(t.attempts.length), sort: (t) => t.attempts.length },
    created: { name: "Created", cell: (t) => when(t.created_at), sort: (t) => time(t.created_at) },
    finished: { name: "Finished", cell: (t) => when(t.finished_at), sort: (t) => time(t.finished_at) ?? Infinity },
    duration: {
      name: "Ran",
      cell: (t) => { const a = lastAttempt(t); return a ? between(a.started_at, a.finished_at) : "—"; },
      sort: (t) => { const a = lastAttempt(t); return a?.started_at ? (time(a.finished_at) ?? Date.now()) - time(a.started_at) : -1; },
    },
    exit: { name: "Exit code", cell: (t) => (t.exit_code ?? "—").toString(), sort: (t) => t.exit_code ?? -Infinity },
    error: { name: "Error", cell: (t) => h("span", { class: "clip" }, t.error ?? "—"), sort: (t) => t.error },
  };

  function taskTable(tasks, names, empty, opts) {
    return table(names.map((key) => Object.assign({ key }, TASK_COLS[key])), tasks, empty, opts);
  }

  const sortWorkers = (list) => list.slice().sort((a, b) => a.id.localeCompare(b.id));

  // A worker's state beside its health: cordoned (no new tasks) or draining (until when).
  function workerState(w) {
    if (w.drain_deadline) return badge("draining", "ws");
    return w.cordoned ? badge("cordoned", "ws") : null;
  }

  return {
    STATUSES, TERMINAL, state, pages: {},
    h, fill, $, enc, label, shortId, plural, badge, taskLink, span, ago, when, between, bytes, cores, argv,
    ApiError, token, send, failure, api, post, whoami, mayCancel,
    logIn, notice, poll, settle, errorText, page, ask, table, lastAttempt, taskTable, sortWorkers, workerState,
    TOKEN_KEY,
  };
})();
