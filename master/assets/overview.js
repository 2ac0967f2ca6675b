// The overview (/): counts by status, throughput and queue wait over the last hour (inline
// SVG drawn here from /api/v1/queue/history), workers at a glance, recent failures.
"use strict";

(() => {
  const { h, fill, api, poll, settle, errorText, page, badge, taskTable, table, sortWorkers, workerState,
    when, span, cores, bytes, enc, plural, STATUSES } = CA;
  const SVG = "http://www.w3.org/2000/svg";
  const MINUTES = 60;

  // An SVG element; kids are elements or text.
  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, String(v));
    for (const k of kids.flat()) if (k != null) el.append(k instanceof Node ? k : String(k));
    return el;
  }

  // The smallest 1, 2 or 5 × 10^n at or above v (an axis' top).
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= v);
  }

  const hhmm = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

  // The frame both charts share: the plot area, y grid with labels, x labels.
  function frame(el, buckets, top, fmt) {
    // The container's width less its padding, so that the picture never overflows it.
    const pad = parseFloat(getComputedStyle(el).paddingLeft) + parseFloat(getComputedStyle(el).paddingRight);
    const W = Math.max(200, Math.floor((el.clientWidth || 600) - (pad || 0))), H = 190;
    const m = { l: 48, r: 10, t: 10, b: 26 };
    const pw = W - m.l - m.r, ph = H - m.t - m.b;
    const svg = s("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img" });
    const y = (v) => m.t + ph - (v / top) * ph;
    const x = (i) => m.l + (i / buckets.length) * pw;
    for (const v of [0, top / 2, top]) {
      svg.append(s("line", { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v), class: v ? "grid" : "axis" }),
        s("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, fmt(v)));
    }
    const n = buckets.length;
    [[0, "start"], [Math.floor(n / 2), "middle"], [n - 1, "end"]].forEach(([i, anchor]) => {
      if (!buckets[i]) return;
      const at = anchor === "end" ? x(n) : anchor === "start" ? x(0) : x(i);
      svg.append(s("text", { x: at, y: H - 8, "text-anchor": anchor, class: "tick" },
        anchor === "end" ? "now" : hhmm(buckets[i].start)));
    });
    return { svg, x, y, bw: pw / Math.max(1, n), ph };
  }

  const KINDS = [["succeeded", "✓"], ["failed", "✗"], ["cancelled", "⊘"]];

  function legend(items) {
    return h("ul", { class: "legend" }, items.map(([cls, mark, text]) =>
      h("li", {}, h("span", { class: `key ${cls}`, "aria-hidden": "true" }, mark), text)));
  }

  // Finished tasks per minute as stacked bars (succeeded, failed, cancelled: each its
  // own fill, the failed ones hatched), tasks started per minute as a line.
  function throughput(el, hist) {
    const b = hist.buckets;
    const total = (k) => b.reduce((n, x) => n + (x[k] || 0), 0);
    const top = niceMax(Math.max(1, ...b.map((x) => Math.max(x.started || 0,
      KINDS.reduce((n, [k]) => n + (x[k] || 0), 0)))));
    const f = frame(el, b, top, (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)));
    f.svg.prepend(s("defs", {}, s("pattern", { id: "hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse",
      patternTransform: "rotate(45)" }, s("rect", { width: 6, height: 6, class: "hatch-bg" }),
    s("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: "hatch-line" }))));
    b.forEach((x, i) => {
      let base = 0;
      const g = s("g", { class: "bucket", "data-start": x.start },
        s("title", {}, `${hhmm(x.start)}: ${x.started || 0} started, ${x.succeeded || 0} succeeded, `
          + `${x.failed || 0} failed, ${x.cancelled || 0} cancelled`));
      for (const [k] of KINDS) {
        const v = x[k] || 0;
        if (!v) continue;
        const y0 = f.y(base), y1 = f.y(base + v);
        g.append(s("rect", { x: f.x(i) + 1, width: Math.max(1, f.bw - 2), y: y1, height: Math.max(1, y0 - y1),
          class: `seg b-${k}`, fill: k === "failed" ? "url(#hatch)" : null, "data-kind": k, "data-n": v }));
        base += v;
      }
      f.svg.append(g);
    });
    const pts = b.map((x, i) => `${f.x(i) + f.bw / 2},${f.y(x.started || 0)}`).join(" ");
    f.svg.append(s("polyline", { points: pts, class: "line started" }));
    const sum = `Last hour: ${total("started")} started, ${total("succeeded")} succeeded, `
      + `${total("failed")} failed (timed out and lost included), ${total("cancelled")} cancelled.`;
    f.svg.setAttribute("aria-label", `Tasks per minute. ${sum}`);
    fill(el, [f.svg, legend([
      ["k-succeeded", "✓", "succeeded"], ["k-failed", "✗", "failed (hatched)"],
      ["k-cancelled", "⊘", "cancelled"], ["k-started", "—", "started (line)"]]),
    h("p", { class: "muted chart-sum", "data-sum": "throughput" }, sum)]);
  }

  // Queue wait per minute: the median (solid) and the 95th percentile (dashed); a minute
  // in which nothing started leaves a gap.
  function queueWait(el, hist) {
    const b = hist.buckets;
    const vals = b.flatMap((x) => [x.queue_wait_p50_seconds, x.queue_wait_p95_seconds]).filter((v) => v != null);
    const top = niceMax(Math.max(0.001, ...vals));
    const f = frame(el, b, top, (v) => (v ? span(v) : "0"));
    for (const [k, cls] of [["queue_wait_p95_seconds", "p95"], ["queue_wait_p50_seconds", "p50"]]) {
      let run = [];
      const flush = () => {
        if (run.length === 1) f.svg.append(s("circle", { cx: run[0][0], cy: run[0][1], r: 3.5, class: `dot ${cls}` }));
        else if (run.length) f.svg.append(s("polyline", { points: run.map((p) => p.join(",")).join(" "), class: `line ${cls}` }));
        run = [];
      };
      b.forEach((x, i) => {
        if (x[k] == null) { flush(); return; }
        run.push([f.x(i) + f.bw / 2, f.y(x[k])]);
      });
      flush();
    }
    let worst = null;
    for (const x of b) if (x.queue_wait_p95_seconds != null && (!worst || x.queue_wait_p95_seconds > worst.queue_wait_p95_seconds)) worst = x;
    const sum = worst
      ? `Longest wait (95th percentile) in the last hour: ${span(worst.queue_wait_p95_seconds)}, at ${hhmm(worst.start)}.`
      : "No task started in the last hour.";
    f.svg.setAttribute("aria-label", `Queue wait per minute. ${sum}`);
    fill(el, [f.svg, legend([["k-p50", "—", "median wait (solid)"], ["k-p95", "- -", "95th percentile (dashed)"]]),
      h("p", { class: "muted chart-sum", "data-sum": "wait" }, sum)]);
  }

  function workersGlance(list) {
    const by = (hl) => list.filter((w) => w.health === hl).length;
    if (!list.length) return h("p", { class: "muted empty" }, "No worker has joined. Start one with cloudai worker --master URL.");
    const cordoned = list.filter((w) => w.cordoned).length;
    return [
      h("p", { class: "summary" }, `${plural(list.length, "worker")}: `,
        `${by("healthy")} healthy, ${by("suspect")} suspect, ${by("dead")} dead`, cordoned ? `; ${cordoned} cordoned.` : "."),
      table([
        { key: "id", name: "Worker", cell: (w) => h("a", { href: `/workers#w-${enc(w.id)}` }, w.id) },
        { key: "health", name: "Health", cell: (w) => [badge(w.health, "hl"), " ", workerState(w)] },
        { key: "running", name: "Running", cell: (w) => String(w.running_task_ids.length) },
        { key: "cpu", name: "CPU free", cell: (w) => `${cores(w.free.cpu)} of ${cores(w.capacity.cpu)} cores` },
        { key: "mem", name: "Memory free", cell: (w) => `${bytes(w.free.memory_bytes)} of ${bytes(w.capacity.memory_bytes)}` },
      ], sortWorkers(list), ""),
    ];
  }

  CA.pages.overview = function overviewPage() {
    const counts = h("div", { class: "counts" });
    const meta = h("p", { class: "muted" });
    const thr = h("div", { class: "chart", id: "chart-throughput" });
    const wait = h("div", { class: "chart", id: "chart-wait" });
    const workers = h("div");
    const failures = h("div");
    page("Overview", "overview",
      h("h1", {}, "Overview"),
      h("section", { "aria-labelledby": "h-counts" }, h("h2", { id: "h-counts" }, "Tasks by status"), counts, meta),
      h("div", { class: "charts" },
        h("section", { "aria-labelledby": "h-thr" }, h("h2", { id: "h-thr" }, "Throughput, last hour (tasks per minute)"), thr),
        h("section", { "aria-labelledby": "h-wait" }, h("h2", { id: "h-wait" }, "Queue wait, last hour"), wait)),
      h("section", { "aria-labelledby": "h-workers" },
        h("h2", { id: "h-workers" }, h("a", { href: "/workers" }, "Workers")), workers),
      h("section", { "aria-labelledby": "h-failures" },
        h("h2", { id: "h-failures" }, h("a", { href: "/tasks?status=failed,timed_out,lost" }, "Recent failures")), failures));
    let hist = null;
    const draw = () => {
      if (!hist) return;
      throughput(thr, hist);
      queueWait(wait, hist);
    };
    let resized = null;
    window.addEventListener("resize", () => { clearTimeout(resized); resized = setTimeout(draw, 150); });
    poll(async () => {
      const [st, w, f, hi] = await Promise.all([
        settle(api("/api/v1/queue/stats")),
        settle(api("/api/v1/workers")),
        settle(api("/api/v1/tasks?status=failed,timed_out,lost&limit=10")),
        settle(api(`/api/v1/queue/history?minutes=${MINUTES}`)),
      ]);
      if (st.error) fill(counts, errorText(st.error));
      else {
        const c = st.value.counts || {};
        const total = STATUSES.reduce((n, x) => n + (c[x] || 0), 0);
        fill(counts, [
          STATUSES.map((x) => h("a", { class: `count c-${x}`, href: `/tasks?status=${x}`, "data-count": x },
            h("span", { class: "n" }, String(c[x] || 0)), badge(x))),
          h("a", { class: "count c-all", href: "/tasks", "data-count": "all" },
            h("span", { class: "n" }, String(total)), h("span", { class: "badge" }, "all tasks")),
        ]);
        fill(meta, [
          `Finished in the last minute: ${st.value.finished_last_minute ?? 0}.`,
          st.value.oldest_queued_at ? [" Oldest queued task waits since ", when(st.value.oldest_queued_at), "."] : " Nothing waits in the queue.",
        ]);
      }
      if (hi.error) { hist = null; fill(thr, errorText(hi.error)); fill(wait, errorText(hi.error)); }
      else { hist = hi.value; draw(); }
      fill(workers, w.error ? errorText(w.error) : workersGlance(w.value.workers));
      fill(failures, f.error ? errorText(f.error)
        : taskTable(f.value.tasks, ["id", "status", "image", "worker", "exit", "error", "finished"], "No failed tasks."));
    }, 5000);
  };
})();
