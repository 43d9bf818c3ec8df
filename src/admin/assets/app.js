// noviqi admin dashboard: fetches /admin/api/usage and draws it as SVG charts and tables.
// Plain JavaScript, no dependencies, no HTML strings (every node is built with the DOM API),
// so the page runs under a CSP without 'unsafe-inline'.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 640, H = 200, LEFT = 48, RIGHT = 10, TOP = 10, BOTTOM = 26;
  const RANGES = ["hour", "day", "week", "month"];
  let range = "day";
  let timer = null;

  const { el, fmtUsd } = noviqiUi;

  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmtInt(n) {
    if (n === null || n === undefined) return "–";
    if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
    if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return String(Math.round(n));
  }

  function fmtMs(ms) {
    if (ms === null || ms === undefined) return "–";
    // The usage log counts whole milliseconds: 0 means under one.
    if (ms < 1) return "< 1 ms";
    if (ms >= 1000) return (ms / 1000).toFixed(ms >= 10000 ? 0 : 1) + " s";
    return (ms < 10 && ms % 1 ? ms.toFixed(1) : Math.round(ms)) + " ms";
  }

  function fmtPct(x) {
    if (x === null || x === undefined) return "–";
    const p = x * 100;
    return (p === 0 ? "0" : p < 1 ? p.toFixed(2) : p.toFixed(1)) + "%";
  }

  function fmtTime(t, bucket) {
    const d = new Date(t * 1000);
    const hm = String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
    if (bucket < 3600 || range === "day") return hm;
    const day = d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
    return range === "week" ? day + " " + hm : day;
  }

  // The axis top: four gridline steps of 1, 2 or 5 times a power of ten.
  function niceMax(v) {
    if (!(v > 0)) return 4;
    const raw = v / 4;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return 4 * m * p;
    return 40 * p;
  }

  // Draws one chart: `series` is [{values, cls}], drawn as bars ("bar") or lines ("line").
  // `opts.empty`: the range has no requests (say so over the chart); `opts.floor`: the
  // smallest axis top (whole things: 4, one per gridline); `opts.ceiling`: the largest (a
  // rate never goes past 100 %).
  function chart(id, t, bucket, series, kind, fmt, opts) {
    const box = document.getElementById(id);
    box.replaceChildren();
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
    const n = t.length;
    const all = series.flatMap((s) => s.values.filter((v) => v !== null));
    const max = Math.min(opts.ceiling || Infinity, niceMax(Math.max(opts.floor || 0, ...all)));
    const pw = W - LEFT - RIGHT, ph = H - TOP - BOTTOM;
    const x = (i) => LEFT + (pw * i) / n;
    const y = (v) => TOP + ph - (ph * v) / max;
    for (let g = 0; g <= 4; g++) {
      const v = (max * g) / 4;
      svg.append(svgEl("line", { class: "grid", x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v) }));
      svg.append(svgEl("text", { class: "axis", x: LEFT - 6, y: y(v) + 4, "text-anchor": "end" }, fmt(v)));
    }
    const labels = Math.min(n, 6);
    for (let l = 0; l < labels; l++) {
      const i = Math.round(((n - 1) * l) / Math.max(1, labels - 1));
      svg.append(svgEl("text", {
        class: "axis", x: x(i) + pw / n / 2, y: H - 8, "text-anchor": "middle",
      }, fmtTime(t[i], bucket)));
    }
    if (kind === "bar") {
      const slot = pw / n;
      const bw = Math.max(1, (slot * 0.8) / series.length);
      series.forEach((s, si) => {
        s.values.forEach((v, i) => {
          if (!v) return;
          const bar = svgEl("rect", {
            class: "bar " + s.cls, x: x(i) + slot * 0.1 + bw * si, y: y(v),
            width: bw, height: Math.max(0.5, TOP + ph - y(v)),
          });
          bar.append(svgEl("title", {}, `${fmtTime(t[i], bucket)}: ${fmt(v)}`));
          svg.append(bar);
        });
      });
    } else {
      series.forEach((s) => {
        let d = "";
        s.values.forEach((v, i) => {
          if (v === null) return;
          const cx = x(i) + pw / n / 2;
          d += (d ? " L" : "M") + cx.toFixed(1) + " " + y(v).toFixed(1);
          const dot = svgEl("circle", { class: "dot " + s.cls, cx: cx, cy: y(v), r: 2.5 });
          dot.append(svgEl("title", {}, `${fmtTime(t[i], bucket)}: ${fmt(v)}`));
          svg.append(dot);
        });
        if (d) svg.prepend(svgEl("path", { class: "line " + s.cls, d: d }));
      });
    }
    if (opts.empty) {
      svg.append(svgEl("text", { class: "empty", x: W / 2, y: H / 2, "text-anchor": "middle" },
        "no requests in this range"));
    }
    box.append(svg);
  }

  function table(id, rows, withPrefix, label) {
    const tbl = document.getElementById(id);
    tbl.replaceChildren();
    const head = el("tr");
    const cols = [label].concat(withPrefix ? ["Prefix"] : [],
      ["Requests", "Tokens in", "Tokens out", "Cost", "Error rate", "p50", "p95"]);
    cols.forEach((c) => {
      head.append(el("th", c === "Prefix" ? { scope: "col", class: "prefix" } : { scope: "col" }, c));
    });
    const thead = el("thead");
    thead.append(head);
    const tbody = el("tbody");
    if (rows.length === 0) {
      const tr = el("tr");
      tr.append(el("td", { colspan: String(cols.length) }, "no requests in this range"));
      tbody.append(tr);
    }
    rows.forEach((r) => {
      const tr = el("tr");
      tr.append(el("td", {}, r.name));
      if (withPrefix) tr.append(el("td", { class: "prefix" }, r.prefix ? r.prefix + "…" : ""));
      const tt = r.totals;
      [fmtInt(tt.requests), fmtInt(tt.prompt_tokens), fmtInt(tt.completion_tokens),
        fmtUsd(tt.cost_usd), fmtPct(tt.error_rate), fmtMs(tt.p50_ms), fmtMs(tt.p95_ms)]
        .forEach((v) => tr.append(el("td", {}, v)));
      tbody.append(tr);
    });
    tbl.append(thead, tbody);
  }

  // One bar per key with a budget: spent / budget in its period, and when it resets.
  function budgets(list) {
    const box = document.getElementById("budgets");
    box.replaceChildren();
    document.getElementById("budgets-section").hidden = list.length === 0;
    list.forEach((b) => {
      const used = b.budget_usd > 0 ? Math.min(1, b.spent_usd / b.budget_usd) : 0;
      const row = el("div", { class: "budget" });
      row.append(el("span", { class: "budget-key" }, b.key));
      const bar = el("div", {
        class: "budget-bar" + (used >= 1 ? " over" : used >= 0.8 ? " near" : ""),
        role: "meter", "aria-valuemin": "0", "aria-valuemax": String(b.budget_usd),
        "aria-valuenow": String(b.spent_usd), "aria-label": "budget of " + b.key,
      });
      const fill = el("div", { class: "budget-fill" });
      // Through the CSSOM: the CSP allows no style attributes.
      fill.style.width = (used * 100).toFixed(1) + "%";
      bar.append(fill);
      row.append(bar);
      const resets = new Date(b.resets_at).toLocaleDateString(undefined,
        { month: "short", day: "numeric" });
      row.append(el("span", { class: "budget-text" },
        `${fmtUsd(b.spent_usd)} of ${fmtUsd(b.budget_usd)} this ${b.period} · resets ${resets}`));
      box.append(row);
    });
  }

  // One row per configured target: its state now, and its attempts over the range
  // (fallback attempts included; latency to the answer's head).
  function targets(list) {
    document.getElementById("targets-section").hidden = list.length === 0;
    const tbl = document.getElementById("table-targets");
    tbl.replaceChildren();
    const thead = el("thead");
    const head = el("tr");
    ["Target", "State", "In flight", "Requests", "Errors", "Latency p50"].forEach((c) =>
      head.append(el("th", { scope: "col" }, c)));
    thead.append(head);
    const tbody = el("tbody");
    list.forEach((t) => {
      const tr = el("tr");
      tr.append(el("td", {}, t.name));
      const state = t.state === "cooling"
        ? `cooling down (${t.cooling_secs} s left)`
        : t.state === "trial" ? "trial request out" : "up";
      tr.append(el("td", { class: "state-" + t.state }, state));
      [fmtInt(t.inflight), fmtInt(t.requests), fmtInt(t.errors), fmtMs(t.p50_ms)]
        .forEach((v) => tr.append(el("td", {}, v)));
      tbody.append(tr);
    });
    tbl.append(thead, tbody);
  }

  function render(data) {
    const tt = data.totals;
    document.getElementById("total-cost").textContent = fmtUsd(tt.cost_usd);
    document.getElementById("total-requests").textContent = String(tt.requests);
    document.getElementById("total-prompt").textContent = String(tt.prompt_tokens);
    document.getElementById("total-completion").textContent = String(tt.completion_tokens);
    document.getElementById("total-errors").textContent = fmtPct(tt.error_rate);
    document.getElementById("total-p50").textContent = fmtMs(tt.p50_ms);
    document.getElementById("total-p95").textContent = fmtMs(tt.p95_ms);
    const s = data.series, t = data.t, b = data.bucket_secs;
    const rate = s.requests.map((r, i) => (r ? s.errors[i] / r : null));
    const empty = tt.requests === 0;
    // Bars count whole things: at least a step of one.
    chart("chart-requests", t, b, [{ values: s.requests, cls: "s0" }], "bar", fmtInt,
      { empty, floor: 4 });
    chart("chart-tokens", t, b, [
      { values: s.prompt_tokens, cls: "s0" }, { values: s.completion_tokens, cls: "s1" },
    ], "bar", fmtInt, { empty, floor: 4 });
    chart("chart-cost", t, b, [{ values: s.cost_usd, cls: "s0" }], "bar", fmtUsd,
      { empty, floor: 0.01 });
    chart("chart-errors", t, b, [{ values: rate, cls: "s0" }], "line", fmtPct,
      { empty, floor: 0.04, ceiling: 1 });
    chart("chart-latency", t, b, [
      { values: s.p50_ms, cls: "s0" }, { values: s.p95_ms, cls: "s1" },
    ], "line", fmtMs, { empty, floor: 4 });
    budgets(data.budgets || []);
    targets(data.targets || []);
    table("table-keys", data.by_key, true, "Key");
    table("table-models", data.by_model, false, "Model");
    table("table-status", data.by_status, false, "Status");
    const status = document.getElementById("status");
    status.classList.remove("bad");
    status.textContent = "Updated " + new Date().toLocaleTimeString() + " · last " + data.range +
      (data.scope === "cluster" ? " · all instances" : "");
    document.body.dataset.loaded = data.range;
  }

  async function load() {
    const status = document.getElementById("status");
    try {
      const resp = await fetch("/admin/api/usage?range=" + range, {
        credentials: "same-origin", headers: { accept: "application/json" },
      });
      if (resp.status === 401) {
        window.location.assign("/admin");
        return;
      }
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      render(await resp.json());
    } catch (e) {
      status.textContent = "Could not load usage: " + e.message;
      status.classList.add("bad");
    }
  }

  function select(r) {
    range = RANGES.includes(r) ? r : "day";
    document.querySelectorAll(".ranges button").forEach((btn) => {
      btn.setAttribute("aria-pressed", String(btn.dataset.range === range));
    });
    if (window.location.hash !== "#" + range) history.replaceState(null, "", "#" + range);
    load();
    clearInterval(timer);
    timer = setInterval(load, 30000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll(".ranges button").forEach((btn) => {
      btn.addEventListener("click", () => select(btn.dataset.range));
    });
    select(window.location.hash.slice(1));
  });
})();
