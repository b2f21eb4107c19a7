// Clamor dashboard: reads /api/* (the reputation service's and the router's answers as JSON) and draws them as inline SVG and tables.
// Posts are written by strangers: every text goes in through textContent, and only http(s) URLs become links.
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const HOUR = 3600 * 1000;
  const SEVERITIES = ["CRITICAL", "HIGH", "MEDIUM", "LOW"];
  const MAX_CATEGORIES = 8;
  const state = { refreshS: 30, router: "", timer: 0, refreshes: 0 };

  const $ = (id) => document.getElementById(id);
  const num = (value) => Number(value || 0); // int64 fields arrive as strings, zero fields not at all
  const fmt = (value, digits = 1) => (Number.isFinite(value) ? value.toFixed(digits) : "–");
  const sum = (values) => values.reduce((a, b) => a + b, 0);
  const utc = (iso) => (iso ? new Date(iso).toISOString().slice(0, 16).replace("T", " ") : "–");
  const name = (value, prefix) => (value || `${prefix}UNSPECIFIED`).slice(prefix.length);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, parent) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    if (parent) parent.appendChild(node);
    return node;
  }

  function link(url, text) {
    let href = null;
    try {
      const parsed = new URL(url);
      if (parsed.protocol === "http:" || parsed.protocol === "https:") href = parsed.href;
    } catch {
      href = null;
    }
    if (!href) return null;
    const anchor = el("a", "", text);
    anchor.href = href;
    anchor.rel = "noopener noreferrer nofollow";
    anchor.target = "_blank";
    return anchor;
  }

  async function getJson(path) {
    let response;
    try {
      response = await fetch(path, { headers: { Accept: "application/json" } });
    } catch {
      throw new Error("the dashboard server does not answer: is clamor dashboard still running?");
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error(body && body.error ? body.error : `HTTP ${response.status} from ${path}`);
    return body;
  }

  // --- trends ---------------------------------------------------------------------------------

  function seriesOf(s) {
    const counts = (s.counts || []).map(num);
    const baseline = (s.baseline || []).map((v) => (Number.isFinite(Number(v)) ? Number(v) : NaN));
    return { counts, baseline, start: Date.parse(s.start || ""), total: sum(counts) };
  }

  function latest({ counts, baseline }) {
    if (!counts.length) return "no hours counted";
    const last = counts[counts.length - 1];
    const expected = baseline[counts.length - 1];
    return Number.isFinite(expected) ? `latest hour ${last} vs ${fmt(expected)} expected` : `latest hour ${last}`;
  }

  function highest({ counts, baseline }) {
    return Math.max(1, ...counts, ...baseline.filter(Number.isFinite));
  }

  function niceMax(value) {
    const step = 10 ** Math.floor(Math.log10(value));
    return [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].map((m) => m * step).find((v) => v >= value);
  }

  function alertWhat(alert) {
    // A watch-wide alert's topic is the watch itself: naming it twice says nothing.
    const topic = alert.topic !== alert.watch ? alert.topic : "";
    return alert.category || (alert.keyword ? `“${alert.keyword}”` : "") || topic || "";
  }

  function chart(data, alerts, { width, height, small, label, scale }) {
    const { counts, baseline, start } = data;
    const n = counts.length;
    const pad = small ? { l: 2, r: 2, t: 4, b: 2 } : { l: 40, r: 10, t: 10, b: 24 };
    const plotW = width - pad.l - pad.r;
    const plotH = height - pad.t - pad.b;
    const slot = plotW / Math.max(n, 1);
    const top = scale || niceMax(highest(data));
    const x = (i) => pad.l + (i + 0.5) * slot;
    const y = (v) => pad.t + plotH * (1 - Math.max(0, v) / top);
    const peak = Math.max(0, ...counts);
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: small ? "chart small" : "chart", role: "img" });
    root.setAttribute("aria-label", `${label}: ${data.total} complaints in ${n} hours, peak ${peak} per hour; ${latest(data)}`);
    svg("title", {}, root).textContent = root.getAttribute("aria-label");
    if (!small) axes(root, data, { y, top, pad, slot, height, width });
    alerts.forEach((alert, k) => {
      const i0 = Math.max(0, (Date.parse(alert.window_start || "") - start) / HOUR);
      const i1 = Math.min(n, (Date.parse(alert.window_end || "") - start) / HOUR);
      if (!(i1 > i0)) return;
      const firing = alert.status === "ALERT_STATUS_FIRING";
      const band = svg("g", { class: `band ${firing ? "firing" : "resolved"}` }, root);
      const x0 = pad.l + i0 * slot;
      const x1 = pad.l + i1 * slot;
      svg("rect", { x: x0, y: pad.t, width: Math.max(2, x1 - x0), height: plotH }, band);
      const text = `${alertWhat(alert) || alert.watch} ×${fmt(num(alert.ratio))} (${num(alert.count)} vs ${fmt(num(alert.baseline))})`;
      svg("title", {}, band).textContent = `${firing ? "firing" : "resolved"} alert: ${text}`;
      if (!small) {
        const right = x1 > width / 2;
        const attrs = { x: right ? x0 - 4 : x1 + 4, y: pad.t + 12 + k * 14, "text-anchor": right ? "end" : "start" };
        svg("text", { class: "band-label", ...attrs }, band).textContent = `▲ ${text}`;
      }
    });
    if (n) {
      const line = counts.map((v, i) => `${fmt(x(i), 1)},${fmt(y(v), 1)}`);
      svg("path", { class: "area", d: `M${fmt(x(0), 1)},${y(0)} L${line.join(" L")} L${fmt(x(n - 1), 1)},${y(0)} Z` }, root);
      let d = "";
      baseline.slice(0, n).forEach((v, i) => {
        if (Number.isFinite(v)) d += `${d && Number.isFinite(baseline[i - 1]) ? "L" : "M"}${fmt(x(i), 1)},${fmt(y(v), 1)} `;
      });
      if (d) svg("path", { class: "baseline", d: d.trim(), "stroke-dasharray": small ? "3 2" : "5 4" }, root);
      svg("polyline", { class: "line", points: line.join(" ") }, root);
    }
    if (!small) hover(root, data, { x, pad, slot, height });
    return root;
  }

  function axes(root, { counts, start }, { y, top, pad, slot, height, width }) {
    for (const v of [0, top / 2, top]) {
      svg("line", { class: "grid", x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v) }, root);
      svg("text", { class: "axis", x: pad.l - 6, y: y(v) + 4, "text-anchor": "end" }, root).textContent = fmt(v, 0);
    }
    svg("line", { class: "axis-line", x1: pad.l, x2: width - pad.r, y1: height - pad.b, y2: height - pad.b }, root);
    const step = counts.length <= 24 ? 3 : counts.length <= 72 ? 6 : 24;
    for (let i = 0; i < counts.length && Number.isFinite(start); i += 1) {
      const at = new Date(start + i * HOUR);
      if (at.getUTCHours() % step !== 0) continue;
      const midnight = at.getUTCHours() === 0;
      const text = midnight ? at.toUTCString().slice(5, 11) : `${String(at.getUTCHours()).padStart(2, "0")}:00`;
      const left = pad.l + i * slot;
      svg("line", { class: midnight ? "tick day" : "tick", x1: left, x2: left, y1: pad.t, y2: height - pad.b }, root);
      svg("text", { class: "axis", x: left, y: height - 6, "text-anchor": "middle" }, root).textContent = text;
    }
  }

  function hover(root, { counts, baseline, start }, { x, pad, slot, height }) {
    counts.forEach((count, i) => {
      const at = new Date(start + i * HOUR);
      const hit = svg("rect", { class: "hit", x: x(i) - slot / 2, y: pad.t, width: slot, height: height - pad.t - pad.b }, root);
      const expected = Number.isFinite(baseline[i]) ? `, ${fmt(baseline[i])} expected` : "";
      const when = Number.isFinite(start) ? `${utc(at.toISOString())} UTC: ` : "";
      svg("title", {}, hit).textContent = `${when}${count} complaints${expected}`;
    });
  }

  function drawTrends(answer) {
    const host = $("watches");
    const series = answer.series || [];
    const alerts = answer.alerts || [];
    const watches = [...new Set(series.map((s) => s.watch || ""))].sort();
    const blocks = watches.map((watch) => {
      const mine = series.filter((s) => (s.watch || "") === watch);
      const theirs = alerts.filter((a) => (a.watch || "") === watch);
      const total = mine.find((s) => !s.category);
      const categories = mine.filter((s) => s.category).map((s) => ({ s, data: seriesOf(s) }));
      categories.sort((a, b) => b.data.total - a.data.total);
      const block = el("article", "watch");
      block.dataset.watch = watch;
      const head = el("div", "watch-head");
      head.append(el("h3", "", watch || "(no watch)"));
      block.append(head);
      if (total) {
        const data = seriesOf(total);
        head.append(el("p", "summary", `${data.total} complaints · peak ${Math.max(0, ...data.counts)}/h · ${latest(data)}`));
        block.append(chart(data, theirs, { width: 960, height: 200, small: false, label: `${watch} complaints per hour` }));
      }
      // One scale for a watch's categories, so their sizes compare at a glance.
      const scale = niceMax(Math.max(1, ...categories.map(({ data }) => highest(data))));
      const grid = el("div", "multiples");
      for (const { s, data } of categories.slice(0, MAX_CATEGORIES)) {
        const cell = el("figure", "multiple");
        const caption = el("figcaption");
        caption.append(el("strong", "", s.category), el("span", "", ` ${data.total} · ${latest(data)}`));
        const mineOnly = theirs.filter((a) => a.category === s.category);
        cell.append(caption, chart(data, mineOnly, { width: 300, height: 64, small: true, scale, label: `${watch} ${s.category}` }));
        grid.append(cell);
      }
      if (categories.length) block.append(el("h4", "", "By category"), grid);
      return block;
    });
    host.replaceChildren(...(blocks.length ? blocks : [el("p", "empty", "Nothing counted in this span yet.")]));
  }

  // --- alerts ---------------------------------------------------------------------------------

  function drawAlerts(list) {
    const firing = list.filter((a) => a.status === "ALERT_STATUS_FIRING");
    const cards = firing.map((alert) => {
      const card = el("article", "alert");
      card.dataset.alertId = alert.id || "";
      const head = el("header");
      head.append(el("span", "badge", "Firing"), el("h3", "", [alert.watch, alertWhat(alert)].filter(Boolean).join(" · ")));
      head.append(el("span", "ratio", `×${fmt(num(alert.ratio))}`));
      const peak = num(alert.peak) ? ` · peak ${num(alert.peak)} per window` : "";
      card.append(head, el("p", "numbers", `${num(alert.count)} complaints vs ${fmt(num(alert.baseline))} expected${peak}`));
      if (alert.window_start) {
        const day = new Date(alert.window_start).toUTCString().slice(5, 16);
        const since = alert.started_at ? ` · surging since ${utc(alert.started_at).slice(11)}` : "";
        card.append(el("p", "meta", `${utc(alert.window_start).slice(11)}–${utc(alert.window_end).slice(11)} UTC, ${day}${since}`));
      }
      if (alert.summary) card.append(el("p", "summary", alert.summary));
      if ((alert.top_terms || []).length) {
        const terms = el("ul", "terms");
        terms.setAttribute("aria-label", "Top terms");
        for (const term of alert.top_terms.slice(0, 8)) terms.append(el("li", "", term));
        card.append(terms);
      }
      const samples = el("ul", "samples");
      for (const sample of (alert.samples || []).slice(0, 3)) {
        const item = el("li");
        const meta = el("p", "meta", `@${sample.author || "unknown"}`);
        if (num(sample.followers)) meta.append(` · ${num(sample.followers).toLocaleString("en")} followers`);
        if (sample.case_id) meta.append(` · case ${sample.case_id}`);
        const anchor = link(sample.url, "open post");
        if (anchor) meta.append(" · ", anchor);
        item.append(el("blockquote", "", (sample.text || "").slice(0, 400)), meta);
        samples.append(item);
      }
      if (samples.childElementCount) card.append(samples);
      return card;
    });
    $("alerts").replaceChildren(...(cards.length ? cards : [el("p", "empty", "No alert is firing.")]));
  }

  // --- cases ----------------------------------------------------------------------------------

  function drawCases(cases) {
    const open = cases.filter((c) => c.state !== "CASE_STATE_RESOLVED");
    const counts = new Map();
    for (const c of open) {
      const severity = name(c.severity, "SEVERITY_");
      const sla = c.sla || {};
      // One column per case: the worse breach wins.
      const column = sla.resolution_breached ? 2 : sla.first_response_breached ? 1 : 0;
      if (!counts.has(severity)) counts.set(severity, [0, 0, 0]);
      counts.get(severity)[column] += 1;
    }
    const rows = [...SEVERITIES, ...[...counts.keys()].filter((s) => !SEVERITIES.includes(s))].map((severity) => {
      const cells = counts.get(severity) || [0, 0, 0];
      const row = el("tr");
      row.dataset.severity = severity;
      row.append(el("th", `sev sev-${severity.toLowerCase()}`, severity === "UNSPECIFIED" ? "Unrated" : severity));
      row.firstChild.scope = "row";
      cells.forEach((count, i) => row.append(el("td", count && i ? "num bad" : count ? "num" : "num zero", count)));
      row.append(el("td", "num total", sum(cells)));
      return row;
    });
    $("cases").tBodies[0].replaceChildren(...rows);
    $("cases-caption").textContent = `Open: ${open.length} of the ${cases.length} latest case${cases.length === 1 ? "" : "s"}`;

    const posts = cases.flatMap((c) => (c.mentions || []).map((m) => ({ ...m, caseId: c.id || "" })));
    posts.sort((a, b) => Date.parse(b.mention?.created_at || 0) - Date.parse(a.mention?.created_at || 0));
    const postRows = posts.slice(0, 10).map(({ mention = {}, result = {}, caseId }) => {
      const row = el("tr");
      const author = mention.author?.handle ? `@${mention.author.handle}` : "unknown author";
      const severity = name(result.severity, "SEVERITY_");
      row.append(el("td", "when", utc(mention.created_at)), el("td", "author", author));
      row.append(el("td", `sev sev-${severity.toLowerCase()}`, severity === "UNSPECIFIED" ? "–" : severity));
      const cell = el("td");
      const meta = el("p", "meta", [mention.platform, mention.watch, `case ${caseId}`].filter(Boolean).join(" · "));
      const anchor = link(mention.url, "open post");
      if (anchor) meta.append(" · ", anchor);
      cell.append(el("p", "text", (mention.text || "").slice(0, 400)), meta);
      row.append(cell);
      return row;
    });
    const none = el("tr");
    none.append(el("td", "empty", "No complaints yet."));
    none.firstChild.colSpan = 4;
    $("posts").tBodies[0].replaceChildren(...(postRows.length ? postRows : [none]));
  }

  // --- refresh --------------------------------------------------------------------------------

  function unavailable(host) {
    const note = el(host.tagName === "TBODY" ? "td" : "p", "empty", "Not available: see the message above.");
    if (host.tagName !== "TBODY") return note;
    note.colSpan = 5;
    const row = el("tr");
    row.append(note);
    return row;
  }

  function showProblems(problems) {
    const banner = $("banner");
    banner.replaceChildren(...problems.map((text) => el("p", "", text)));
    banner.hidden = problems.length === 0;
  }

  async function refresh() {
    clearTimeout(state.timer);
    const hours = encodeURIComponent($("hours").value);
    const answers = await Promise.allSettled([
      getJson(`api/trends?hours=${hours}`),
      getJson("api/alerts?firing_only=true&limit=20"),
      getJson("api/cases?limit=200"),
    ]);
    const problems = answers.filter((a) => a.status === "rejected").map((a) => a.reason.message);
    const [trends, alerts, cases] = answers.map((a) => (a.status === "fulfilled" ? a.value : null));
    const draws = [
      [trends, () => drawTrends(trends), [$("watches")]],
      [alerts, () => drawAlerts(alerts.alerts || []), [$("alerts")]],
      [cases, () => drawCases(cases.cases || []), [$("cases").tBodies[0], $("posts").tBodies[0]]],
    ];
    for (const [answer, draw, hosts] of draws) {
      try {
        if (answer) draw();
      } catch (error) {
        problems.push(`the page could not draw an answer: ${error.message}`);
      }
      // Data already shown stays; a panel that never had any says why it is empty.
      for (const host of hosts) if (!answer && !host.childElementCount) host.append(unavailable(host));
    }
    showProblems([...new Set(problems)]);
    const now = new Date().toISOString().slice(11, 19);
    $("status").textContent = `Refreshed ${now} UTC · every ${state.refreshS} s · router ${state.router}`;
    // Tests wait for this: the page has drawn every answer of one refresh.
    document.body.dataset.refreshes = String(++state.refreshes);
    state.timer = setTimeout(refresh, state.refreshS * 1000);
  }

  async function start() {
    try {
      const config = await getJson("api/config");
      state.refreshS = Number(config.refresh_s) || state.refreshS;
      state.router = config.router || "";
    } catch (error) {
      showProblems([error.message]);
    }
    $("hours").addEventListener("change", refresh);
    await refresh();
  }

  start();
})();
