// The workers (/workers): health, labels, capacity with used and free bars, running tasks,
// and for roles that may: cordon (no new tasks), drain (no new tasks, and what still runs
// at a deadline the user gives is moved elsewhere) and uncordon.
"use strict";

(() => {
  const { h, fill, api, post, poll, page, badge, when, cores, bytes, enc, taskLink, sortWorkers, workerState,
    whoami, ask, plural } = CA;

  function bar(w, name, k, fmt) {
    const cap = w.capacity[k] || 0;
    const used = Math.max(0, cap - (w.free[k] || 0));
    const pct = cap ? Math.min(100, (used / cap) * 100) : 0;
    const fillEl = h("span", { class: "fill" });
    fillEl.style.width = `${pct}%`;
    return h("div", { class: "res" },
      h("div", { class: "res-label" }, h("span", {}, name),
        h("span", {}, `${fmt(used)} used of ${fmt(cap)} · ${fmt(w.free[k] || 0)} free`)),
      h("div", { class: "bar", role: "meter", "aria-label": `${name} used`, "aria-valuemin": 0, "aria-valuemax": cap,
        "aria-valuenow": used, "aria-valuetext": `${fmt(used)} of ${fmt(cap)} used` }, fillEl));
  }

  function card(w, me, act) {
    const labels = Object.entries(w.labels || {});
    const drain = w.drain_deadline;
    const button = (action, text, cls) => h("button", { type: "button", class: cls, "data-action": action,
      onclick: (ev) => act(action, w, ev.target) }, text);
    const hb = when(w.last_heartbeat);
    const el = h("article", { class: "worker", id: `w-${w.id}`, "data-worker": w.id },
      h("header", {}, h("h2", {}, w.id), h("span", { class: "states" }, badge(w.health, "hl"), workerState(w))),
      h("p", { class: "muted" }, [w.hostname, w.version ? `cloudai ${w.version}` : null].filter(Boolean).join(" · "),
        " · last heartbeat ", h("span", { class: "hb" }, hb)),
      drain ? h("p", { class: "state-note", "data-state": "draining" }, "Draining: no new tasks; what still runs is moved at ",
        h("time", { datetime: drain, title: new Date(drain).toLocaleString() }, new Date(drain).toLocaleTimeString()),
        ` (${when(drain).textContent}).`)
        : w.cordoned ? h("p", { class: "state-note", "data-state": "cordoned" }, "Cordoned: no new tasks; running ones go on.") : null,
      labels.length ? h("ul", { class: "chips", "aria-label": "Labels" }, labels.map(([k, v]) => h("li", {}, `${k}=${v}`))) : null,
      bar(w, "CPU", "cpu", (n) => `${cores(n)} cores`),
      bar(w, "Memory", "memory_bytes", bytes),
      w.capacity.gpus ? bar(w, "GPUs", "gpus", String) : null,
      h("h3", {}, `Running tasks (${w.running_task_ids.length})`),
      w.running_task_ids.length ? h("ul", { class: "running" }, w.running_task_ids.map((id) => h("li", {}, taskLink(id))))
        : h("p", { class: "muted" }, "None."),
      me.may.bulk ? h("div", { class: "buttons worker-actions" },
        w.cordoned ? null : button("cordon", "Cordon", "quiet"),
        drain ? null : button("drain", "Drain…", "danger"),
        w.cordoned ? button("uncordon", "Uncordon", "") : null) : null,
      h("p", { class: "said", role: "status" }));
    return el;
  }

  CA.pages.workers = function workersPage() {
    const list = h("div", { class: "workers", id: "worker-list" });
    page("Workers", "workers", h("h1", {}, "Workers"), list);
    // Cards are redrawn only when something but the heartbeat changed, so that a button
    // being pressed is not swapped under the pointer.
    const shown = new Map();

    async function act(action, w, btn) {
      const said = btn.closest(".worker").querySelector(".said");
      let body;
      if (action === "drain") {
        const n = w.running_task_ids.length;
        const ok = await ask({
          title: `Drain ${w.id}?`,
          body: h("p", {}, `No new tasks go to it. ${plural(n, "task")} ${n === 1 ? "runs" : "run"} there now: `
            + "what still runs at the deadline is stopped and queued again for another worker."),
          fields: [{ name: "minutes", label: "Deadline, in minutes from now", type: "number", value: "10", min: "0", step: "any",
            hint: "0 moves them now" }],
          confirm: "Drain worker",
          danger: true,
        });
        if (!ok) return;
        body = { deadline_seconds: Number(ok.minutes) * 60 };
      }
      btn.disabled = true;
      try {
        await post(`/api/v1/workers/${enc(w.id)}/${action}`, body);
        fill(said, `${action === "drain" ? "Draining" : action === "cordon" ? "Cordoned" : "Uncordoned"}.`);
        said.classList.remove("error");
      } catch (e) {
        fill(said, `The master refused: ${e.message}.`);
        said.classList.add("error");
        btn.disabled = false;
        return;
      }
      shown.delete(w.id);
      poller.now();
    }

    const poller = poll(async () => {
      const [r, me] = await Promise.all([api("/api/v1/workers"), whoami()]);
      if (!r.workers.length) {
        shown.clear();
        fill(list, h("p", { class: "muted empty" }, "No worker has joined. Start one with cloudai worker --master URL."));
        return;
      }
      const cards = sortWorkers(r.workers).map((w) => {
        const key = JSON.stringify(Object.assign({}, w, { last_heartbeat: null }));
        const had = shown.get(w.id);
        if (had && had.key === key) {
          fill(had.el.querySelector(".hb"), when(w.last_heartbeat));
          return had.el;
        }
        const el = card(w, me, act);
        shown.set(w.id, { key, el });
        return el;
      });
      const ids = new Set(r.workers.map((w) => w.id));
      for (const id of shown.keys()) if (!ids.has(id)) shown.delete(id);
      if (cards.some((c, i) => list.children[i] !== c) || list.children.length !== cards.length) fill(list, cards);
      if (location.hash) document.getElementById(decodeURIComponent(location.hash.slice(1)))?.classList.add("target");
    }, 5000);
  };
})();
