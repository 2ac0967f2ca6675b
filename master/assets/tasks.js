// The task list (/tasks): filters and free-text search in the address, server-side order
// (newest or oldest first) and cursor paging (next_page_token: nothing is counted or
// loaded whole), columns sorted on the loaded page, and bulk cancel / retry by the current
// filter, confirmed after a dry run says how many tasks it would touch.
"use strict";

(() => {
  const { h, fill, api, post, poll, page, label, plural, taskTable, whoami, ask, shortId, errorText, STATUSES } = CA;
  const RANGES = [["", "any time"], ["15m", "last 15 minutes"], ["1h", "last hour"], ["24h", "last 24 hours"],
    ["7d", "last 7 days"], ["custom", "between…"]];
  const RANGE_MS = { "15m": 9e5, "1h": 36e5, "24h": 864e5, "7d": 6048e5 };
  const COLS = ["id", "status", "image", "command", "worker", "submitter", "created", "duration"];
  const LIMITS = ["10", "25", "50", "100", "200"];

  // The creation-time bounds the address asks for, as RFC 3339 (computed once per load).
  function bounds(q) {
    const range = q.get("range") || "";
    if (RANGE_MS[range]) return { since: new Date(Date.now() - RANGE_MS[range]).toISOString() };
    if (range !== "custom") return {};
    const iso = (v, what) => {
      if (!v) return undefined;
      const d = new Date(v);
      if (Number.isNaN(d.getTime())) throw new Error(`the ${what} time ${JSON.stringify(v)} is not a date`);
      return d.toISOString();
    };
    return { since: iso(q.get("since"), "from"), until: iso(q.get("until"), "to") };
  }

  // "a=1, b=2" as {a: "1", b: "2"}, for the bulk body.
  function labelObject(text) {
    const out = {};
    for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
      const i = part.indexOf("=");
      if (i < 1) throw new Error(`the label ${JSON.stringify(part)} is not key=value`);
      out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
    }
    return out;
  }

  function filterForm(q) {
    const status = q.get("status") || "";
    const limit = q.get("limit") || "50";
    const range = q.get("range") || "";
    const choices = [
      ["", "any status"], ...STATUSES.map((s) => [s, label(s)]),
      ["queued,assigned,running", "not finished (queued, assigned, running)"],
      ["failed,timed_out,lost", "went wrong (failed, timed out, lost)"],
    ];
    if (!choices.some(([v]) => v === status)) choices.push([status, label(status)]);
    const text = (name, title, extra = {}) => h("label", {}, title,
      h("input", Object.assign({ name, id: `f-${name}`, value: q.get(name) || "", placeholder: "any" }, extra)));
    const custom = [
      h("label", { class: "when" }, "From", h("input", { name: "since", id: "f-since", type: "datetime-local", value: q.get("since") || "" })),
      h("label", { class: "when" }, "To", h("input", { name: "until", id: "f-until", type: "datetime-local", value: q.get("until") || "" })),
    ];
    const showCustom = (on) => custom.forEach((c) => { c.hidden = !on; c.querySelector("input").disabled = !on; });
    const form = h("form", { class: "filters", method: "get", action: "/tasks", role: "search", "aria-label": "Filter tasks" },
      h("label", { class: "wide" }, "Search", h("input", { name: "q", id: "f-q", type: "search", value: q.get("q") || "",
        placeholder: "id, image or command" })),
      h("label", {}, "Status", h("select", { name: "status", id: "f-status" },
        choices.map(([v, l]) => h("option", { value: v, selected: v === status }, l)))),
      text("image", "Image", { placeholder: "exact, or prefix*" }),
      text("worker", "Worker", { list: "worker-ids" }),
      text("label", "Labels", { placeholder: "key=value, …" }),
      text("submitter", "Submitter"),
      h("label", {}, "Created", h("select", { name: "range", id: "f-range", onchange: (e) => showCustom(e.target.value === "custom") },
        RANGES.map(([v, l]) => h("option", { value: v, selected: v === range }, l)))),
      custom,
      h("label", {}, "Order", h("select", { name: "order", id: "f-order" },
        [["", "newest first"], ["asc", "oldest first"]].map(([v, l]) => h("option", { value: v, selected: v === (q.get("order") || "") }, l)))),
      h("label", {}, "Per page", h("select", { name: "limit", id: "f-limit" },
        LIMITS.concat(LIMITS.includes(limit) ? [] : [limit]).map((v) => h("option", { value: v, selected: v === limit }, v)))),
      ["sort", "dir"].map((k) => (q.get(k) ? h("input", { type: "hidden", name: k, value: q.get(k) }) : null)),
      h("div", { class: "buttons" }, h("button", { type: "submit" }, "Filter"), h("a", { href: "/tasks", class: "button quiet" }, "Clear")),
      h("datalist", { id: "worker-ids" }));
    showCustom(range === "custom");
    // Empty fields are left out of the address.
    form.addEventListener("submit", () => {
      for (const el of form.elements) if (el.name && !el.value) el.disabled = true;
    });
    window.addEventListener("pageshow", () => {
      for (const el of form.elements) el.disabled = false;
      showCustom(form.elements.range.value === "custom");
    });
    return form;
  }

  CA.pages.tasks = function tasksPage() {
    const q = new URLSearchParams(location.search);
    const pageNo = Number(q.get("page") || "1");
    const form = filterForm(q);
    const list = h("div", { id: "task-list" });
    const pager = h("nav", { class: "pager", "aria-label": "Pages" });
    const tools = h("div", { class: "bulk", id: "bulk" });
    const said = h("p", { class: "said", id: "bulk-said", role: "status" });
    page("Tasks", "tasks", h("h1", {}, "Tasks"), form, tools, said, list, pager);

    let crit;
    const params = new URLSearchParams();
    try {
      const b = bounds(q);
      for (const k of ["status", "worker", "image", "label", "submitter", "q", "order", "limit", "page_token"]) {
        if (q.get(k)) params.set(k, q.get(k));
      }
      if (!params.has("limit")) params.set("limit", "50");
      for (const [k, v] of Object.entries(b)) if (v) params.set(k, v);
      crit = {
        status: (q.get("status") || "").split(",").map((x) => x.trim()).filter(Boolean),
        worker: q.get("worker") || undefined,
        submitter: q.get("submitter") || undefined,
        image: q.get("image") || undefined,
        labels: q.get("label") ? labelObject(q.get("label")) : undefined,
        since: b.since, until: b.until,
        q: q.get("q") || undefined,
      };
    } catch (e) {
      fill(list, errorText(e));
      return;
    }
    const filtered = Object.entries(crit).some(([, v]) => (Array.isArray(v) ? v.length : v !== undefined));

    api("/api/v1/workers").then((r) => fill(form.querySelector("#worker-ids"),
      r.workers.map((w) => h("option", { value: w.id }))), () => {});

    // Sorting orders the loaded page only (the address keeps it); Order orders all pages.
    const sort = { key: q.get("sort") || "", dir: q.get("dir") === "desc" ? "desc" : "asc" };
    let last = null;
    const render = () => {
      if (!last) return;
      fill(list, taskTable(last.tasks, COLS,
        q.toString() ? "No task matches these filters." : "No tasks yet. Enqueue one with cloudai enqueue IMAGE.",
        { sort, onSort }));
    };
    function onSort(key) {
      sort.dir = sort.key === key && sort.dir === "asc" ? "desc" : "asc";
      sort.key = key;
      const u = new URLSearchParams(location.search);
      u.set("sort", key);
      u.set("dir", sort.dir);
      history.replaceState(null, "", `/tasks?${u}`);
      render();
      list.querySelector(`button[data-sort="${key}"]`)?.focus();
    }

    const poller = poll(async () => {
      const r = await api(`/api/v1/tasks?${params}`);
      last = r;
      render();
      const next = new URLSearchParams(location.search);
      next.set("page_token", r.next_page_token || "");
      next.set("page", String(pageNo + 1));
      const first = new URLSearchParams(location.search);
      first.delete("page_token");
      first.delete("page");
      fill(pager, [
        q.get("page_token") ? h("a", { href: `/tasks?${first}`, class: "button quiet", id: "first-page" }, "← First page") : null,
        h("span", { class: "muted" }, `Page ${pageNo} · ${plural(r.tasks.length, "task")}`),
        r.next_page_token ? h("a", { href: `/tasks?${next}`, class: "button", id: "next-page", rel: "next" }, "Next page →") : null,
      ]);
    }, 5000);

    const say = (text, error = false) => { fill(said, text); said.classList.toggle("error", error); };

    async function bulk(kind) {
      const verb = kind === "cancel" ? "cancel" : "retry";
      say(`Counting the tasks this filter matches…`);
      let dry;
      try {
        dry = await post(`/api/v1/tasks/${kind}`, Object.assign({}, crit, { dry_run: true }));
      } catch (e) {
        say(`The master refused the ${verb}: ${e.message}.`, true);
        return;
      }
      const n = dry.task_ids.length;
      if (!n) {
        say(kind === "cancel" ? "No unfinished task matches this filter: nothing to cancel."
          : "No ended task matches this filter: nothing to retry.");
        return;
      }
      const skipped = dry.skipped?.length || 0;
      const ok = await ask({
        title: kind === "cancel" ? `Cancel ${plural(n, "task")}?` : `Retry ${plural(n, "task")}?`,
        body: [
          h("p", { id: "ask-count", "data-n": n }, `${plural(n, "task")} match${n === 1 ? "es" : ""} this filter`,
            dry.truncated ? " (the most one action takes; more match)" : "",
            kind === "cancel" ? ". Running containers are stopped." : ". Each runs again as a new task."),
          skipped ? h("p", { class: "muted" }, `${plural(skipped, "task")} that ${skipped === 1 ? "has" : "have"} not ended ${skipped === 1 ? "is" : "are"} left alone.`) : null,
          h("ul", { class: "ask-ids" }, dry.task_ids.slice(0, 5).map((id) => h("li", { class: "mono" }, shortId(id))),
            n > 5 ? h("li", { class: "muted" }, `and ${n - 5} more`) : null),
        ],
        confirm: kind === "cancel" ? `Cancel ${plural(n, "task")}` : `Retry ${plural(n, "task")}`,
        danger: kind === "cancel",
      });
      if (!ok) { say(""); return; }
      try {
        // At most what was shown: tasks that arrived since the count are not touched.
        const r = await post(`/api/v1/tasks/${kind}`, Object.assign({}, crit, { dry_run: false, limit: n }));
        const done = r.task_ids.length, skip = r.skipped?.length || 0;
        say(`${kind === "cancel" ? "Cancelled" : "Retried"} ${plural(done, "task")}${skip ? `; ${skip} skipped` : ""}.`);
      } catch (e) {
        say(`The master refused the ${verb}: ${e.message}.`, true);
      }
      poller.now();
    }

    whoami().then((me) => {
      if (!me.may.bulk) return;
      fill(tools, [
        h("span", { class: "muted" }, "Every task this filter matches, on all pages:"),
        h("button", { type: "button", id: "bulk-cancel", class: "danger", disabled: !filtered, onclick: () => bulk("cancel") }, "Cancel matching…"),
        h("button", { type: "button", id: "bulk-retry", disabled: !filtered, onclick: () => bulk("retry") }, "Retry matching…"),
        filtered ? null : h("span", { class: "muted" }, "(filter first)"),
      ]);
    }, () => {});
  };
})();
