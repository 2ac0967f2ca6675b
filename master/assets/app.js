// The cloudai dashboard: one static page per route (/, /tasks, /tasks/ID, /workers) that
// reads the master's JSON API (/api/v1) with the token the user logged in with. Live logs
// are the API's Server-Sent Events, read with fetch() so that the token goes in the
// authorization header (EventSource cannot send one). Hand-written, no dependencies.
// Every value from the API reaches the page through textContent, never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "cloudai.token";
  const STATUSES = ["queued", "assigned", "running", "succeeded", "failed", "cancelled", "timed_out", "lost"];
  const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out", "lost"]);
  // A glyph beside each status's name: the name is the cue, the colour and glyph help.
  const MARK = {
    queued: "○", assigned: "◔", running: "▶", succeeded: "✓", failed: "✗",
    cancelled: "⊘", timed_out: "◷", lost: "?", healthy: "✓", suspect: "!", dead: "✗", unknown: "?",
  };
  const state = { login: false, pollers: [] };

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

  function label(s) {
    return String(s).replace(/_/g, " ");
  }

  function badge(status, kind = "st") {
    const s = status || "unknown";
    return h("span", { class: `badge ${kind}-${s}`, "data-status": s },
      h("span", { class: "mark", "aria-hidden": "true" }, MARK[s] || "•"), label(s));
  }

  function shortId(id) {
    return String(id).slice(0, 13);
  }

  function taskLink(id) {
    return h("a", { href: `/tasks/${enc(id)}`, class: "mono", title: id }, shortId(id));
  }

  function ago(iso) {
    if (!iso) return "—";
    const s = (Date.now() - Date.parse(iso)) / 1000;
    if (s < 0) return "in " + span(-s);
    return span(s) + " ago";
  }

  function span(s) {
    if (s < 1) return `${Math.round(s * 1000)}ms`;
    if (s < 60) return `${Math.round(s)}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
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

  function cores(n) {
    return `${Math.round(n * 100) / 100}`;
  }

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

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function headers(extra) {
    const hs = Object.assign({ accept: "application/json" }, extra);
    const t = token();
    if (t) hs.authorization = `Bearer ${t}`;
    return hs;
  }

  async function send(path, opts = {}) {
    try {
      return await fetch(path, { method: opts.method || "GET", headers: headers(opts.headers), signal: opts.signal });
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

  // ---- login, notices, polling -------------------------------------------------------

  function needLogin(message) {
    const had = token();
    sessionStorage.removeItem(TOKEN_KEY);
    if (state.login) return;
    state.login = true;
    state.pollers.forEach((p) => p.stop());
    $("#main").hidden = true;
    $("#logout").hidden = true;
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
    let timer = null, stopped = false, busy = false;
    const run = async () => {
      clearTimeout(timer);
      if (stopped || state.login || busy) return;
      busy = true;
      let again = true;
      try {
        again = (await fn()) !== false;
        notice(null);
      } catch (e) {
        notice(e);
      }
      busy = false;
      if (again && !stopped && !state.login) timer = setTimeout(run, document.hidden ? ms * 4 : ms);
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

  // ---- tables ------------------------------------------------------------------------

  // A table that becomes a list of cards on a narrow screen (each cell says its column).
  function table(cols, rows, empty) {
    if (!rows.length) return h("p", { class: "muted empty" }, empty);
    return h("div", { class: "table-wrap" }, h("table", { class: "cards" },
      h("thead", {}, h("tr", {}, cols.map(([name]) => h("th", { scope: "col" }, name)))),
      h("tbody", {}, rows.map((r) => h("tr", { "data-id": r.id },
        cols.map(([name, cell]) => h("td", { "data-label": name }, cell(r))))))));
  }

  const TASK_COLS = {
    id: ["ID", (t) => taskLink(t.id)],
    status: ["Status", (t) => badge(t.status)],
    image: ["Image", (t) => h("span", { class: "mono" }, t.spec.image)],
    worker: ["Worker", (t) => lastAttempt(t)?.worker_id ?? "—"],
    submitter: ["Submitter", (t) => t.submitted_by ?? "—"],
    attempts: ["Attempts", (t) => String(t.attempts.length)],
    created: ["Created", (t) => when(t.created_at)],
    finished: ["Finished", (t) => when(t.finished_at)],
    duration: ["Ran", (t) => { const a = lastAttempt(t); return a ? between(a.started_at, a.finished_at) : "—"; }],
    exit: ["Exit code", (t) => (t.exit_code ?? "—").toString()],
    error: ["Error", (t) => h("span", { class: "clip" }, t.error ?? "—")],
  };

  function lastAttempt(t) {
    return t.attempts[t.attempts.length - 1];
  }

  function taskTable(tasks, names, empty) {
    return table(names.map((n) => TASK_COLS[n]), tasks, empty);
  }

  // ---- pages -------------------------------------------------------------------------

  function overviewPage() {
    const counts = h("div", { class: "counts" });
    const meta = h("p", { class: "muted" });
    const workers = h("div");
    const failures = h("div");
    page("Overview", "overview",
      h("h1", {}, "Overview"),
      h("section", { "aria-labelledby": "h-counts" }, h("h2", { id: "h-counts" }, "Tasks by status"), counts, meta),
      h("section", { "aria-labelledby": "h-workers" },
        h("h2", { id: "h-workers" }, h("a", { href: "/workers" }, "Workers")), workers),
      h("section", { "aria-labelledby": "h-failures" },
        h("h2", { id: "h-failures" }, h("a", { href: "/tasks?status=failed" }, "Recent failures")), failures));
    poll(async () => {
      const [s, w, f] = await Promise.all([
        settle(api("/api/v1/queue/stats")),
        settle(api("/api/v1/workers")),
        settle(api("/api/v1/tasks?status=failed&limit=10")),
      ]);
      if (s.error) fill(counts, errorText(s.error));
      else {
        const c = s.value.counts || {};
        const total = STATUSES.reduce((n, st) => n + (c[st] || 0), 0);
        fill(counts, [
          STATUSES.map((st) => h("a", { class: `count c-${st}`, href: `/tasks?status=${st}`, "data-count": st },
            h("span", { class: "n" }, String(c[st] || 0)), badge(st))),
          h("a", { class: "count c-all", href: "/tasks", "data-count": "all" },
            h("span", { class: "n" }, String(total)), h("span", { class: "badge" }, "all tasks")),
        ]);
        fill(meta, [
          `Finished in the last minute: ${s.value.finished_last_minute ?? 0}.`,
          s.value.oldest_queued_at ? [" Oldest queued task waits since ", when(s.value.oldest_queued_at), "."] : " Nothing waits in the queue.",
        ]);
      }
      fill(workers, w.error ? errorText(w.error) : workersGlance(w.value.workers));
      fill(failures, f.error ? errorText(f.error)
        : taskTable(f.value.tasks, ["id", "image", "worker", "exit", "error", "finished"], "No failed tasks."));
    }, 5000);
  }

  function workersGlance(list) {
    const by = (hl) => list.filter((w) => w.health === hl).length;
    if (!list.length) return h("p", { class: "muted empty" }, "No worker has joined. Start one with cloudai worker --master URL.");
    return [
      h("p", { class: "summary" }, `${list.length} worker${list.length === 1 ? "" : "s"}: `,
        `${by("healthy")} healthy, ${by("suspect")} suspect, ${by("dead")} dead.`),
      table([
        ["Worker", (w) => h("a", { href: `/workers#w-${enc(w.id)}` }, w.id)],
        ["Health", (w) => badge(w.health, "hl")],
        ["Running", (w) => String(w.running_task_ids.length)],
        ["CPU free", (w) => `${cores(w.free.cpu)} of ${cores(w.capacity.cpu)} cores`],
        ["Memory free", (w) => `${bytes(w.free.memory_bytes)} of ${bytes(w.capacity.memory_bytes)}`],
      ], sortWorkers(list), ""),
    ];
  }

  function sortWorkers(list) {
    return list.slice().sort((a, b) => a.id.localeCompare(b.id));
  }

  function tasksPage() {
    const q = new URLSearchParams(location.search);
    const status = q.get("status") || "";
    const limit = q.get("limit") || "50";
    const pageNo = Number(q.get("page") || "1");
    const choices = [
      ["", "any status"], ...STATUSES.map((s) => [s, label(s)]),
      ["queued,assigned,running", "not finished (queued, assigned, running)"],
      ["failed,timed_out,lost", "went wrong (failed, timed out, lost)"],
    ];
    if (!choices.some(([v]) => v === status)) choices.push([status, label(status)]);
    const workerList = h("datalist", { id: "worker-ids" });
    const form = h("form", { class: "filters", method: "get", action: "/tasks", role: "search" },
      h("label", {}, "Status", h("select", { name: "status", id: "f-status" },
        choices.map(([v, l]) => h("option", { value: v, selected: v === status }, l)))),
      h("label", {}, "Worker", h("input", { name: "worker", id: "f-worker", list: "worker-ids", value: q.get("worker") || "", placeholder: "any" })),
      h("label", {}, "Submitter", h("input", { name: "submitter", id: "f-submitter", value: q.get("submitter") || "", placeholder: "any" })),
      h("label", {}, "Per page", h("select", { name: "limit", id: "f-limit" },
        ["10", "25", "50", "100", "200"].concat(["10", "25", "50", "100", "200"].includes(limit) ? [] : [limit])
          .map((v) => h("option", { value: v, selected: v === limit }, v)))),
      h("div", { class: "buttons" }, h("button", { type: "submit" }, "Filter"), h("a", { href: "/tasks", class: "button quiet" }, "Clear")),
      workerList);
    // Empty fields are left out of the address.
    form.addEventListener("submit", () => {
      for (const el of form.elements) if (el.name && !el.value) el.disabled = true;
    });
    window.addEventListener("pageshow", () => { for (const el of form.elements) el.disabled = false; });
    const list = h("div", { id: "task-list" });
    const pager = h("nav", { class: "pager", "aria-label": "Pages" });
    page("Tasks", "tasks", h("h1", {}, "Tasks"), form, list, pager);

    const params = new URLSearchParams();
    for (const k of ["status", "worker", "submitter", "limit", "page_token"]) if (q.get(k)) params.set(k, q.get(k));
    if (!params.has("limit")) params.set("limit", limit);
    api("/api/v1/workers").then((r) => fill(workerList, r.workers.map((w) => h("option", { value: w.id }))), () => {});
    poll(async () => {
      const r = await api(`/api/v1/tasks?${params}`);
      fill(list, taskTable(r.tasks, ["id", "status", "image", "worker", "submitter", "attempts", "created", "duration"],
        q.toString() ? "No task matches these filters." : "No tasks yet. Enqueue one with cloudai enqueue IMAGE."));
      const next = new URLSearchParams(q);
      next.set("page_token", r.next_page_token || "");
      next.set("page", String(pageNo + 1));
      const first = new URLSearchParams(q);
      first.delete("page_token");
      first.delete("page");
      fill(pager, [
        q.get("page_token") ? h("a", { href: `/tasks?${first}`, class: "button quiet", id: "first-page" }, "← First page") : null,
        h("span", { class: "muted" }, `Page ${pageNo}`),
        r.next_page_token ? h("a", { href: `/tasks?${next}`, class: "button", id: "next-page", rel: "next" }, "Next page →") : null,
      ]);
    }, 5000);
  }

  function taskPage(id) {
    const head = h("div", { class: "task-head" });
    const actions = h("div", { class: "actions" });
    const said = h("p", { class: "said", role: "status" });
    const spec = h("dl", { class: "spec" });
    const attempts = h("ol", { class: "timeline" });
    const log = h("pre", { id: "log", class: "log", role: "log", tabindex: "0", "aria-label": "Output" });
    const logState = h("span", { id: "log-state", class: "muted", "aria-live": "polite" });
    const toggle = (stream) => h("label", { class: "toggle" },
      h("input", { type: "checkbox", checked: true, "data-stream": stream, onchange: (e) => log.classList.toggle(`hide-${stream}`, !e.target.checked) }),
      ` ${stream}`);
    page(`Task ${shortId(id)}`, "tasks",
      h("p", { class: "crumbs" }, h("a", { href: "/tasks" }, "Tasks"), " / "),
      h("h1", {}, "Task ", h("span", { class: "mono", id: "task-id" }, id)),
      head, actions, said,
      h("section", { "aria-labelledby": "h-logs" },
        h("h2", { id: "h-logs" }, "Logs"),
        h("div", { class: "log-tools" }, toggle("stdout"), toggle("stderr"), logState), log),
      h("section", { "aria-labelledby": "h-attempts" }, h("h2", { id: "h-attempts" }, "Attempts"), attempts),
      h("section", { "aria-labelledby": "h-spec" }, h("h2", { id: "h-spec" }, "Spec"), spec));

    let following = false;
    const poller = poll(async () => {
      let t;
      try {
        t = await api(`/api/v1/tasks/${enc(id)}`);
      } catch (e) {
        if (e.status === 404) { fill(head, errorText(e)); return false; }
        throw e;
      }
      document.title = `Task ${shortId(t.id)} (${label(t.status)}) · cloudai`;
      fill(head, [h("span", { id: "task-status" }, badge(t.status)),
        t.cancel_requested && !TERMINAL.has(t.status) ? h("span", { class: "muted" }, " cancel requested") : null,
        h("span", { class: "muted" }, " created ", when(t.created_at), t.submitted_by ? ` by ${t.submitted_by}` : "")]);
      renderActions(t);
      renderSpec(spec, t);
      renderAttempts(attempts, t);
      if (!following) { following = true; followLogs(t.id, log, logState); }
      return !TERMINAL.has(t.status);
    }, 2000);

    function renderActions(t) {
      if (TERMINAL.has(t.status) || t.cancel_requested) { actions.replaceChildren(); return; }
      if (actions.firstChild) return;
      fill(actions, h("button", { type: "button", id: "cancel", class: "danger", onclick: async (ev) => {
        if (!confirm(`Cancel task ${shortId(t.id)}? A running container is stopped.`)) return;
        ev.target.disabled = true;
        try {
          await api(`/api/v1/tasks/${enc(t.id)}/cancel`, { method: "POST" });
          fill(said, "Cancel requested.");
        } catch (e) {
          fill(said, e.status === 403 ? `Your token may not cancel this task: ${e.message}.`
            : `The master refused the cancel: ${e.message}.`);
          said.classList.add("error");
          ev.target.disabled = e.status === 403;
        }
        poller.now();
      } }, "Cancel task"));
    }
  }

  function renderSpec(dl, t) {
    const s = t.spec;
    const r = s.resources || {};
    const kv = (m) => Object.keys(m || {}).length
      ? h("ul", { class: "kv" }, Object.entries(m).map(([k, v]) => h("li", {}, h("span", { class: "mono" }, `${k}=${String(v).replace(/\n/g, "\\n")}`))))
      : "—";
    const rows = [
      ["Image", h("span", { class: "mono" }, s.image)],
      ["Command", s.command.length ? h("code", {}, argv(s.command)) : "the image's own"],
      ["Entrypoint", s.entrypoint.length ? h("code", {}, argv(s.entrypoint)) : "the image's own"],
      ["Resources", `${r.cpu_millis ? cores(r.cpu_millis / 1000) + " cores" : "no CPU request"}, `
        + `${r.memory_bytes ? bytes(r.memory_bytes) : "no memory request"}${r.gpus ? `, ${r.gpus} GPU${r.gpus > 1 ? "s" : ""}` : ""}`],
      ["Priority", String(s.priority)],
      ["Attempts allowed", `${s.max_attempts} (and ${s.max_lost_retries} more if a worker is lost)`],
      ["Timeout", s.timeout != null ? span(s.timeout / 1000) : "none"],
      ["Pinned to", s.pinned_worker ?? "any worker"],
      ["Labels", kv(s.labels)],
      ["Environment", kv(s.env)],
      ["Idempotency key", s.idempotency_key ?? "—"],
      ["Submitted by", t.submitted_by ?? "—"],
      ["Created", [new Date(t.created_at).toLocaleString(), " (", when(t.created_at), ")"]],
      ["Finished", t.finished_at ? [new Date(t.finished_at).toLocaleString(), " (", when(t.finished_at), ")"] : "—"],
      ["Exit code", t.exit_code != null ? String(t.exit_code) : "—"],
      ["Error", t.error ?? "—"],
    ];
    fill(dl, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  }

  function renderAttempts(ol, t) {
    if (!t.attempts.length) {
      fill(ol, h("li", { class: "muted" }, TERMINAL.has(t.status) ? "It never ran." : "Not assigned to a worker yet."));
      return;
    }
    fill(ol, t.attempts.slice().reverse().map((a) => h("li", { class: "attempt", "data-attempt": a.number },
      h("div", { class: "attempt-head" }, h("strong", {}, `Attempt ${a.number}`), " ",
        a.outcome ? badge(a.outcome) : badge(a.started_at ? "running" : "assigned"),
        " on ", h("a", { href: `/workers#w-${enc(a.worker_id)}` }, a.worker_id)),
      h("dl", { class: "times" }, [
        ["assigned", when(a.assigned_at)],
        ["started", when(a.started_at)],
        ["finished", when(a.finished_at)],
        ["ran", between(a.started_at, a.finished_at)],
        a.exit_code != null ? ["exit code", String(a.exit_code)] : null,
      ].filter(Boolean).map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v)))),
      a.error ? h("p", { class: "error" }, a.error) : null,
      a.lost_to_silence ? h("p", { class: "muted" }, "Its worker went silent; a late result is still accepted.") : null)));
  }

  // Follows the task's log as Server-Sent Events over fetch(), so the token is a header.
  // A dropped stream is read again from the start, skipping chunks already shown.
  async function followLogs(id, log, stateEl) {
    let lastSeq = -1, lastAttempt = null, tries = 0;
    const show = (chunk) => {
      if (chunk.seq <= lastSeq) return;
      lastSeq = chunk.seq;
      const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 8;
      if (chunk.attempt !== lastAttempt && chunk.stream !== "system") {
        if (lastAttempt !== null || chunk.attempt > 1) {
          log.append(h("span", { class: "s-system" }, `── attempt ${chunk.attempt} ──\n`));
        }
        lastAttempt = chunk.attempt;
      }
      log.append(h("span", { class: `s-${chunk.stream}`, title: `${chunk.stream} · ${chunk.time}` }, chunk.text));
      if (atEnd) log.scrollTop = log.scrollHeight;
    };
    for (;;) {
      fill(stateEl, tries ? "reconnecting…" : "following live…");
      let ended = false;
      try {
        const res = await send(`/api/v1/tasks/${enc(id)}/logs?follow=true`, { headers: { accept: "text/event-stream" } });
        if (!res.ok) throw await failure(res);
        await readEvents(res.body, (event, data) => {
          if (event === "log") { tries = 0; show(JSON.parse(data)); }
          else if (event === "end") ended = true;
          else if (event === "error") throw new ApiError(0, "", JSON.parse(data).message);
        });
      } catch (e) {
        if (e.status === 401 || e.status === 403 || e.status === 404) { fill(stateEl, `no logs: ${e.message}`); return; }
        fill(stateEl, `the log stream stopped: ${e.message}`);
      }
      if (ended) { fill(stateEl, "end of log"); log.classList.add("ended"); return; }
      if (++tries > 10 || state.login) return;
      await new Promise((r) => setTimeout(r, Math.min(10000, 500 * 2 ** tries)));
    }
  }

  // Calls onEvent(name, data) for each event of a text/event-stream body.
  async function readEvents(body, onEvent) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value.replace(/\r/g, "");
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const c = line.indexOf(":");
          const field = c < 0 ? line : line.slice(0, c);
          const val = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
          if (field === "event") event = val;
          else if (field === "data") data.push(val);
        }
        if (data.length) onEvent(event, data.join("\n"));
      }
    }
  }

  function workersPage() {
    const list = h("div", { class: "workers", id: "worker-list" });
    page("Workers", "workers", h("h1", {}, "Workers"), list);
    poll(async () => {
      const r = await api("/api/v1/workers");
      if (!r.workers.length) { fill(list, h("p", { class: "muted empty" }, "No worker has joined. Start one with cloudai worker --master URL.")); return; }
      fill(list, sortWorkers(r.workers).map(workerCard));
      if (location.hash) document.getElementById(decodeURIComponent(location.hash.slice(1)))?.classList.add("target");
    }, 5000);
  }

  function workerCard(w) {
    const used = (k) => Math.max(0, (w.capacity[k] || 0) - (w.free[k] || 0));
    const bar = (name, k, fmt) => {
      const cap = w.capacity[k] || 0;
      const pct = cap ? Math.min(100, (used(k) / cap) * 100) : 0;
      const fillEl = h("span", { class: "fill" });
      fillEl.style.width = `${pct}%`;
      return h("div", { class: "res" },
        h("div", { class: "res-label" }, h("span", {}, name), h("span", {}, `${fmt(used(k))} used of ${fmt(cap)} · ${fmt(w.free[k] || 0)} free`)),
        h("div", { class: "bar", role: "meter", "aria-label": `${name} used`, "aria-valuemin": 0, "aria-valuemax": cap, "aria-valuenow": used(k),
          "aria-valuetext": `${fmt(used(k))} of ${fmt(cap)} used` }, fillEl));
    };
    const labels = Object.entries(w.labels || {});
    return h("article", { class: "worker", id: `w-${w.id}`, "data-worker": w.id },
      h("header", {}, h("h2", {}, w.id), badge(w.health, "hl")),
      h("p", { class: "muted" }, [w.hostname, w.version ? `cloudai ${w.version}` : null].filter(Boolean).join(" · "),
        " · last heartbeat ", when(w.last_heartbeat)),
      labels.length ? h("ul", { class: "chips", "aria-label": "Labels" }, labels.map(([k, v]) => h("li", {}, `${k}=${v}`))) : null,
      bar("CPU", "cpu", (n) => `${cores(n)} cores`),
      bar("Memory", "memory_bytes", bytes),
      w.capacity.gpus ? bar("GPUs", "gpus", String) : null,
      h("h3", {}, `Running tasks (${w.running_task_ids.length})`),
      w.running_task_ids.length ? h("ul", { class: "running" }, w.running_task_ids.map((id) => h("li", {}, taskLink(id))))
        : h("p", { class: "muted" }, "None."));
  }

  // ---- start -------------------------------------------------------------------------

  function start() {
    $("#login-form").addEventListener("submit", logIn);
    const out = $("#logout");
    out.hidden = !token();
    out.addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); location.reload(); });
    const path = location.pathname.replace(/\/+$/, "") || "/";
    const m = path.match(/^\/tasks\/([^/]+)$/);
    if (path === "/") overviewPage();
    else if (path === "/tasks") tasksPage();
    else if (m) taskPage(decodeURIComponent(m[1]));
    else if (path === "/workers") workersPage();
    else page("Not found", "", h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/" }, "Back to the overview")));
  }

  start();
})();
