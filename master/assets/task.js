// One task (/tasks/ID): status, cancel and retry (for roles that may), its spec, the
// timeline of attempts, and its logs: followed live (Server-Sent Events read with fetch,
// so the token is a header), stdout and stderr toggles, search that highlights or
// filters lines, and a download of what is shown as a text file.
"use strict";

(() => {
  const { h, fill, api, post, send, failure, poll, page, badge, when, between, span, bytes, cores, argv, enc,
    shortId, label, errorText, whoami, mayCancel, plural, ApiError, state, TERMINAL } = CA;

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

  // The log as lines (a chunk may end mid-line: the next chunk of its stream completes
  // it), each searchable; the streams shown are the toggles'.
  function logView(id) {
    const pre = h("pre", { id: "log", class: "log", role: "log", tabindex: "0", "aria-label": "Output" });
    const count = h("span", { id: "log-matches", class: "muted", "aria-live": "polite" });
    const lines = [], open = {}, shown = { stdout: true, stderr: true, system: true };
    let query = "", current = -1;

    function paint(line) {
      const text = line.text, lower = text.toLowerCase();
      line.hit = !!query && lower.includes(query);
      line.el.classList.toggle("match", line.hit);
      if (!line.hit) { line.el.textContent = text; return; }
      const parts = [];
      let at = 0, i;
      while ((i = lower.indexOf(query, at)) >= 0) {
        parts.push(text.slice(at, i), h("mark", {}, text.slice(i, i + query.length)));
        at = i + query.length;
      }
      parts.push(text.slice(at));
      fill(line.el, parts);
    }

    function recount() {
      if (!query) { fill(count, ""); return; }
      const n = lines.filter((l) => l.hit && shown[l.stream]).length;
      fill(count, n ? plural(n, "matching line") : "no matching line");
    }

    function add(stream, text, title) {
      const atEnd = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
      for (const piece of text.split(/(?<=\n)/)) {
        if (!piece) continue;
        let line = open[stream];
        if (line) line.text += piece;
        else {
          line = { stream, text: piece, el: h("span", { class: `line s-${stream}`, title }) };
          lines.push(line);
          pre.append(line.el);
        }
        open[stream] = piece.endsWith("\n") ? null : line;
        paint(line);
      }
      if (query) recount();
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }

    function search(q, only) {
      query = q.toLowerCase();
      current = -1;
      lines.forEach(paint);
      pre.classList.toggle("only-matches", only && !!query);
      recount();
    }

    // Enter in the search box: the next matching line, scrolled to.
    function next() {
      const hits = lines.filter((l) => l.hit && shown[l.stream]);
      if (!hits.length) return;
      lines[current]?.el.classList.remove("current");
      const after = hits.find((l) => lines.indexOf(l) > current) || hits[0];
      current = lines.indexOf(after);
      after.el.classList.add("current");
      after.el.scrollIntoView({ block: "nearest" });
    }

    function toggle(stream, on) {
      shown[stream] = on;
      pre.classList.toggle(`hide-${stream}`, !on);
      recount();
    }

    function download() {
      const text = lines.filter((l) => shown[l.stream]).map((l) => l.text).join("");
      const which = shown.stdout === shown.stderr ? "" : shown.stdout ? ".stdout" : ".stderr";
      const a = h("a", { href: URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" })),
        download: `task-${shortId(id)}${which}.log` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
    }

    const toggleBox = (stream) => h("label", { class: "toggle" },
      h("input", { type: "checkbox", checked: true, "data-stream": stream, onchange: (e) => toggle(stream, e.target.checked) }),
      ` ${stream}`);
    const box = h("input", { type: "search", id: "log-search", placeholder: "text in the output", "aria-describedby": "log-matches" });
    const only = h("input", { type: "checkbox", id: "log-only" });
    const run = () => search(box.value, only.checked);
    box.addEventListener("input", run);
    box.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); next(); } });
    only.addEventListener("change", run);
    const tools = h("div", { class: "log-tools" },
      h("fieldset", { class: "streams" }, h("legend", { class: "sr" }, "Streams"), toggleBox("stdout"), toggleBox("stderr")),
      h("label", { class: "log-find", for: "log-search" }, "Search logs", box),
      h("label", { class: "toggle" }, only, " only matching lines"),
      count,
      h("button", { type: "button", id: "log-download", class: "quiet", onclick: download,
        title: "The streams shown, as a text file" }, "Download log"));
    return { pre, tools, add };
  }

  // Follows the task's log as Server-Sent Events over fetch(), so the token is a header.
  // A dropped stream is read again from the start, skipping chunks already shown.
  async function followLogs(id, view, stateEl) {
    let lastSeq = -1, lastAttempt = null, tries = 0;
    const show = (chunk) => {
      if (chunk.seq <= lastSeq) return;
      lastSeq = chunk.seq;
      if (chunk.attempt !== lastAttempt && chunk.stream !== "system") {
        if (lastAttempt !== null || chunk.attempt > 1) view.add("system", `── attempt ${chunk.attempt} ──\n`, "");
        lastAttempt = chunk.attempt;
      }
      view.add(chunk.stream, chunk.text, `${chunk.stream} · ${chunk.time}`);
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
      if (ended) { fill(stateEl, "end of log"); view.pre.classList.add("ended"); return; }
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

  CA.pages.task = function taskPage(id) {
    const head = h("div", { class: "task-head" });
    const actions = h("div", { class: "actions" });
    const said = h("p", { class: "said", role: "status" });
    const spec = h("dl", { class: "spec" });
    const attempts = h("ol", { class: "timeline" });
    const view = logView(id);
    const logState = h("span", { id: "log-state", class: "h-note", "aria-live": "polite" });
    page(`Task ${shortId(id)}`, "tasks",
      h("p", { class: "crumbs" }, h("a", { href: "/tasks" }, "Tasks"), " / "),
      h("h1", {}, "Task ", h("span", { class: "mono", id: "task-id" }, id)),
      head, actions, said,
      h("section", { "aria-labelledby": "h-logs" },
        h("h2", { id: "h-logs" }, "Logs ", logState), view.tools, view.pre),
      h("section", { "aria-labelledby": "h-attempts" }, h("h2", { id: "h-attempts" }, "Attempts"), attempts),
      h("section", { "aria-labelledby": "h-spec" }, h("h2", { id: "h-spec" }, "Spec"), spec));

    const say = (parts, error = false) => { fill(said, parts); said.classList.toggle("error", error); };
    let following = false, shownKey = null;
    const poller = poll(async () => {
      let t;
      try {
        t = await api(`/api/v1/tasks/${enc(id)}`);
      } catch (e) {
        if (e.status === 404) { fill(head, errorText(e)); return false; }
        throw e;
      }
      const me = await whoami();
      document.title = `Task ${shortId(t.id)} (${label(t.status)}) · cloudai`;
      fill(head, [h("span", { id: "task-status" }, badge(t.status)),
        t.cancel_requested && !TERMINAL.has(t.status) ? h("span", { class: "muted" }, " cancel requested") : null,
        h("span", { class: "muted" }, " created ", when(t.created_at), t.submitted_by ? ` by ${t.submitted_by}` : "")]);
      renderActions(t, me);
      renderSpec(spec, t);
      renderAttempts(attempts, t);
      if (!following) { following = true; followLogs(t.id, view, logState); }
      return !TERMINAL.has(t.status);
    }, 2000);

    // Only the buttons the caller's role may use; redrawn when the task's state changes.
    function renderActions(t, me) {
      const key = `${t.status}/${t.cancel_requested}`;
      if (key === shownKey) return;
      shownKey = key;
      const cancel = !TERMINAL.has(t.status) && !t.cancel_requested && mayCancel(me, t);
      const retry = TERMINAL.has(t.status) && me.may.enqueue;
      fill(actions, [
        cancel ? h("button", { type: "button", id: "cancel", class: "danger", onclick: async (ev) => {
          if (!confirm(`Cancel task ${shortId(t.id)}? A running container is stopped.`)) return;
          ev.target.disabled = true;
          try {
            await post(`/api/v1/tasks/${enc(t.id)}/cancel`);
            say("Cancel requested.");
          } catch (e) {
            say(`The master refused the cancel: ${e.message}.`, true);
            ev.target.disabled = false;
          }
          poller.now();
        } }, "Cancel task") : null,
        retry ? h("button", { type: "button", id: "retry", onclick: async (ev) => {
          ev.target.disabled = true;
          try {
            const r = await post(`/api/v1/tasks/${enc(t.id)}/retry`);
            say(["Retried as task ", h("a", { href: `/tasks/${enc(r.id)}`, id: "retried", class: "mono" }, r.id), "."]);
          } catch (e) {
            say(`The master refused the retry: ${e.message}.`, true);
          }
          ev.target.disabled = false;
        } }, "Retry (as a new task)") : null,
      ]);
    }
  };
})();
