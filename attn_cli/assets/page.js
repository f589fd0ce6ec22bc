// attn --page: the explorer. Reads the JSON in #attn-data and the packed weights in
// #blob-NAME (base64 of deflated k/255 or k/65535 fractions), draws them, and answers the mouse
// and the keyboard. No library, no network.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("attn-data").textContent);
  const SCALE = D.bits === 16 ? 65535 : 255;
  const DEC = D.decimals;
  const ROW = 20; // px per token in the head view
  const ALL_LINES_UP_TO = 4096; // without a chosen token, every line is drawn up to this many
  const LETTERS = "P previous-token · S self · F first-token · I induction · D duplicate-token · L local · · none or diffuse";
  const SCORE_NAMES = { score: "its label's score (the largest pattern score)", previous_token: "previous-token",
    self: "self", first_token: "first-token", induction: "induction", duplicate_token: "duplicate-token" };

  // ------------------------------------------------------------ little helpers
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids) if (kid !== null && kid !== undefined) e.append(kid);
    return e;
  }
  const byId = (id) => document.getElementById(id);
  const fmtQ = (q) => (q / SCALE).toFixed(DEC);
  const fmt2 = (x) => (x === null || x === undefined ? "—" : x.toFixed(2));
  function fmtP(p) { // a probability: never 0.000 when it is not zero (SPEC §7)
    if (p === 0) return "0";
    if (p >= 0.001) return p.toFixed(3);
    const [m, e] = p.toExponential(1).split("e");
    const n = Math.abs(+e);
    return `${m}e${+e < 0 ? "-" : "+"}${n < 10 ? "0" + n : n}`;
  }
  const rampStops = D.ramp;
  function ramp(x) {
    x = Math.min(Math.max(x, 0), 1);
    for (let s = 0; s + 1 < rampStops.length; s++) {
      const [x0, c0] = rampStops[s], [x1, c1] = rampStops[s + 1];
      if (x <= x1) {
        const t = (x - x0) / (x1 - x0);
        return c0.map((a, i) => Math.round(a + (c1[i] - a) * t));
      }
    }
    return rampStops[rampStops.length - 1][1];
  }
  const ink = ([r, g, b]) => (0.299 * r + 0.587 * g + 0.114 * b > 140 ? "#000" : "#fff");
  const headColour = (h) => `hsl(${Math.round((h * 137.508) % 360)} 75% 50%)`;
  let accentRGB = null; // read once (reading a computed style costs a style pass)
  const accent = () => accentRGB || (accentRGB = getComputedStyle(document.documentElement).getPropertyValue("--accent").trim());
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => { accentRGB = null; colours = null; if (D.command === "generate") genPaint(); else draw(); });

  // ------------------------------------------------------------ the packed weights
  const blobs = new Map();
  // Each blob is followed by a script that pushes its name on window.attnArrived: the page is
  // drawn as soon as the blob it shows first (placed before this script) has been read, while
  // the browser reads the rest of the file.
  const arrived = new Set(window.attnArrived || []), waiting = new Map();
  window.attnArrived = { push(name) {
    arrived.add(name);
    for (const go of waiting.get(name) || []) go();
    waiting.delete(name);
  } };
  function whenArrived(name) {
    if (arrived.has(name) || document.readyState !== "loading") return Promise.resolve();
    return new Promise((go) => waiting.set(name, [...(waiting.get(name) || []), go]));
  }
  document.addEventListener("DOMContentLoaded", () => {
    for (const [, gos] of waiting) for (const go of gos) go();
    waiting.clear();
  });
  function bytesOf(text) {
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
    const s = atob(text), out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function blob(name) {
    if (!blobs.has(name)) {
      blobs.set(name, (async () => {
        await whenArrived(name);
        // fed straight to the inflater: a Blob's stream would go through the browser process,
        // and its reads wait behind the parsing of the rest of a big file (~100 ms at 10 MB)
        const inflater = new DecompressionStream("deflate"), writer = inflater.writable.getWriter();
        writer.write(bytesOf(byId("blob-" + name).textContent.trim()));
        writer.close();
        const reader = inflater.readable.getReader(), parts = [];
        let size = 0;
        for (let r = await reader.read(); !r.done; r = await reader.read()) { parts.push(r.value); size += r.value.length; }
        const bytes = new Uint8Array(size);
        parts.reduce((at, part) => { bytes.set(part, at); return at + part.length; }, 0);
        return D.bits === 16 ? new Uint16Array(bytes.buffer) : bytes;
      })());
    }
    return blobs.get(name);
  }
  // A head's stored weight q (k of SCALE) at (i, j); -1 where the key is masked.
  function q(h, data, i, j) {
    if (h.tri) return j > i ? -1 : data[h.offset + (i * (i + 1)) / 2 + j];
    return data[h.offset + i * h.cols + j];
  }

  // ------------------------------------------------------------ state
  const S = { tab: 0, layer: null, head: 0, mode: "lines", pin: null, hover: null, colourBy: "score", step: 0, row: 0 };
  const view = () => D.views[S.tab];
  const layersOf = (v) => [...new Set(v.heads.map((h) => h.layer))];
  const headsOf = (v, layer) => v.heads.filter((h) => h.layer === layer);
  const current = () => headsOf(view(), S.layer).filter((h) => S.head === "all" || h.head === S.head);

  // ------------------------------------------------------------ header and footer
  function describe(m) {
    if (!m) return "";
    const parts = [m.source === "seeded" || !m.source ? `seeded model (seed ${m.seed})` : m.source];
    if (m.family && m.family !== "seeded") parts.push(m.family);
    if (m.encoder) parts.push(`encoder ${m.encoder.layers}×${m.encoder.heads} heads, decoder ${m.decoder.layers}×${m.decoder.heads} heads`);
    else parts.push(`${m.layers} layers × ${m.heads} heads`);
    if (m.d_model) parts.push(`d_model ${m.d_model}`);
    if (m.causal !== undefined) parts.push(m.causal ? "causal" : "bidirectional");
    return parts.join(" · ");
  }
  function header() {
    byId("command").textContent = D.command;
    byId("title").textContent = D.title;
    byId("about").textContent = `${describe(D.model)} · ${D.encoding}`;
    const step = D.bits === 16 ? "k/65535" : "k/255";
    const err = (0.5 / SCALE).toFixed(D.bits === 16 ? 7 : 4);
    byId("precision").textContent =
      `Weights are stored in this page as ${D.bits}-bit fractions ${step} (each within ±${err} of the float32 value that --json writes) ` +
      `and shown to ${DEC} decimals. Scores and probabilities are float32 as in --json. ` +
      `Made by attn ${D.command} --page; it works offline and loads nothing from the network.`;
  }

  // ------------------------------------------------------------ tabs (cross)
  function tabs() {
    const nav = byId("tabs");
    if (D.views.length < 2) return;
    nav.hidden = false;
    const names = { encoder: "Encoder self-attention", decoder: "Decoder self-attention (masked)", cross: "Cross-attention" };
    D.views.forEach((v, t) => {
      nav.append(el("button", { role: "tab", id: "tab-" + v.name, "data-tab": v.name, "aria-selected": String(t === S.tab),
        tabindex: t === S.tab ? "0" : "-1", text: names[v.name] || v.name,
        onclick: () => choose({ tab: t }) }));
    });
    nav.addEventListener("keydown", (e) => {
      const d = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (!d) return;
      const t = (S.tab + d + D.views.length) % D.views.length;
      choose({ tab: t });
      nav.children[t].focus();
      e.preventDefault();
    });
  }
  function syncTabs() {
    [...byId("tabs").children].forEach((b, t) => {
      b.setAttribute("aria-selected", String(t === S.tab));
      b.tabIndex = t === S.tab ? 0 : -1;
    });
  }

  // ------------------------------------------------------------ controls
  function controls() {
    const box = byId("controls");
    box.replaceChildren();
    const v = view();
    const layerSel = el("select", { id: "layer", "aria-label": "Layer", onchange: (e) => choose({ layer: +e.target.value }) },
      ...layersOf(v).map((l) => el("option", { value: String(l), selected: l === S.layer, text: l < 0 ? "all (reduced)" : String(l) })));
    box.append(el("label", {}, "Layer", layerSel));
    const chips = el("span", { class: "chips", role: "group", "aria-label": "Head" }, el("span", { text: "Head" }));
    const hs = headsOf(v, S.layer);
    for (const h of hs) {
      chips.append(el("button", { class: "chip", "data-head": String(h.head), "aria-pressed": String(S.head === h.head),
        style: `--chip:${headColour(h.head)}`, title: `head ${h.head}: ${h.pattern || "no clear pattern"}`,
        text: h.head < 0 ? "reduced" : String(h.head), onclick: () => choose({ head: h.head }) }));
    }
    if (hs.length > 1) {
      chips.append(el("button", { class: "chip", "data-head": "all", "aria-pressed": String(S.head === "all"),
        title: "every head of the layer, each in its colour", text: "all", onclick: () => choose({ head: "all" }) }));
    }
    chips.addEventListener("keydown", (e) => {
      const d = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (!d) return;
      const bs = [...chips.querySelectorAll("button")];
      const i = bs.indexOf(document.activeElement);
      if (i < 0) return;
      const next = bs[(i + d + bs.length) % bs.length];
      next.focus(); next.click(); e.preventDefault();
    });
    box.append(chips);
    const modes = el("span", { class: "chips", role: "group", "aria-label": "Drawing" }, el("span", { text: "Show" }));
    for (const [m, label] of [["lines", "lines"], ["matrix", "matrix"]]) {
      modes.append(el("button", { "data-mode": m, "aria-pressed": String(S.mode === m), text: label, onclick: () => choose({ mode: m }) }));
    }
    box.append(modes);
  }

  // ------------------------------------------------------------ the head view: lines
  let built = null; // {tab, queries: [el], keys: [el], svg}
  const RUN = 50; // tokens a run: runs off screen are neither styled, laid out nor painted
  function runs(toks, texts) {
    const out = [];
    for (let i = 0; i < toks.length; i += RUN) {
      const run = el("div", { class: "run" }, ...toks.slice(i, i + RUN));
      // its size until it is first drawn: exact in height, about right in width (a 13px
      // monospace character is ~8px; the index and the weight take ~100px)
      const longest = Math.max(...texts.slice(i, i + RUN).map((t) => t.length));
      run.style.containIntrinsicSize = `auto ${Math.min(260, 100 + 8 * longest)}px auto ${Math.min(RUN, toks.length - i) * ROW}px`;
      out.push(run);
    }
    return out;
  }
  function columns() {
    const v = view();
    if (built && built.tab === S.tab) return built;
    const mk = (texts, side) => texts.map((t, i) => el("div", { class: "tok", "data-side": side, "data-i": String(i), tabindex: i === 0 ? "0" : "-1",
      role: "option", "aria-label": `${side === "q" ? "query" : "key"} ${i} ${t}` },
    el("span", { class: "i", text: String(i) }), el("span", { class: "t", text: t }), el("span", { class: "w" })));
    const qs = mk(v.queries, "q"), ks = mk(v.keys, "k");
    const height = Math.max(qs.length, ks.length) * ROW;
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", "lines");
    svg.setAttribute("height", String(height));
    svg.setAttribute("aria-hidden", "true");
    const qcol = el("div", { class: "col queries", role: "listbox", "aria-label": "Queries (the token that asks)" }, ...runs(qs, v.queries));
    const kcol = el("div", { class: "col keys", role: "listbox", "aria-label": "Keys (the tokens that answer)" }, ...runs(ks, v.keys));
    const cols = el("div", { class: "columns" },
      el("div", { class: "colhead", text: v.name === "cross" ? "target (queries)" : "queries" }), el("div", {}),
      el("div", { class: "colhead", text: v.name === "cross" ? "source (keys)" : "keys" }),
      qcol, el("div", {}, svg), kcol);
    for (const col of [qcol, kcol]) {
      col.addEventListener("pointerover", (e) => {
        const t = e.target.closest(".tok");
        if (t) { S.hover = { side: t.dataset.side, i: +t.dataset.i }; paint(); }
      });
      col.addEventListener("pointerleave", () => { S.hover = null; paint(); });
      col.addEventListener("click", (e) => {
        const t = e.target.closest(".tok");
        if (!t) return;
        S.pin = { side: t.dataset.side, i: +t.dataset.i }; // Escape lets go
        paint();
      });
      col.addEventListener("focusin", (e) => {
        const t = e.target.closest(".tok");
        if (t) { S.pin = { side: t.dataset.side, i: +t.dataset.i }; paint(); }
      });
      col.addEventListener("keydown", keyOnTokens);
    }
    built = { tab: S.tab, queries: qs, keys: ks, svg, node: cols, touched: [] };
    return built;
  }
  function keyOnTokens(e) {
    const t = e.target.closest(".tok");
    if (!t) return;
    const side = t.dataset.side, i = +t.dataset.i;
    const list = side === "q" ? built.queries : built.keys;
    let next = null;
    if (e.key === "ArrowDown") next = list[Math.min(i + 1, list.length - 1)];
    else if (e.key === "ArrowUp") next = list[Math.max(i - 1, 0)];
    else if (e.key === "Home") next = list[0];
    else if (e.key === "End") next = list[list.length - 1];
    else if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      const other = e.key === "ArrowRight" ? built.keys : built.queries;
      next = other[Math.min(i, other.length - 1)];
    } else if (e.key === "Escape") { S.pin = null; paint(); return; }
    if (!next) return;
    e.preventDefault();
    for (const x of list) x.tabIndex = -1;
    next.tabIndex = 0;
    next.focus();
  }

  // The weights of the chosen token: for each head shown, (other index, q) pairs.
  function weightsOf(sel, h, data) {
    const n = sel.side === "q" ? h.cols : h.rows;
    const out = new Array(n);
    for (let o = 0; o < n; o++) out[o] = sel.side === "q" ? q(h, data, sel.i, o) : q(h, data, o, sel.i);
    return out;
  }

  async function paint() {
    if (D.command === "generate") return;
    const v = view(), hs = current();
    const datas = await Promise.all(hs.map((h) => blob(h.blob)));
    if (S.mode === "matrix") { detail(hs, datas); return; }
    const b = columns();
    const sel = S.hover || S.pin;
    const single = hs.length === 1;
    for (const t of b.touched) { // only what the last paint changed
      t.classList.remove("on", "masked");
      t.style.background = "";
      t.lastChild.textContent = "";
      t.removeAttribute("title");
    }
    b.touched = [];
    let lines = "";
    const x2 = "100%";
    if (sel) {
      const mine = (sel.side === "q" ? b.queries : b.keys)[sel.i];
      const others = sel.side === "q" ? b.keys : b.queries;
      if (mine) { mine.classList.add("on"); b.touched.push(mine); }
      hs.forEach((h, n) => {
        const ws = weightsOf(sel, h, datas[n]);
        const colour = single ? `rgb(${accent()})` : headColour(h.head);
        if (n === 0) b.touched.push(...others);
        ws.forEach((qv, o) => {
          const t = others[o];
          if (qv < 0) { if (single && t) t.classList.add("masked"); return; }
          if (single && t) {
            t.lastChild.textContent = fmtQ(qv);
            t.style.background = `rgba(${accent()}, ${(0.85 * qv / SCALE).toFixed(3)})`;
          } else if (t) {
            t.title = (t.title ? t.title + "\n" : "") + `head ${h.head}: ${fmtQ(qv)}`;
          }
          if (qv === 0) return;
          const [yq, yk] = sel.side === "q" ? [sel.i, o] : [o, sel.i];
          lines += `<line x1="0" y1="${yq * ROW + ROW / 2}" x2="${x2}" y2="${yk * ROW + ROW / 2}" stroke="${colour}" stroke-width="${single ? 2 : 1.5}" stroke-opacity="${(qv / SCALE).toFixed(3)}"/>`;
        });
      });
    } else if (single && hs[0].rows * hs[0].cols <= ALL_LINES_UP_TO) {
      const h = hs[0], data = datas[0];
      for (let i = 0; i < h.rows; i++) {
        for (let j = 0; j < h.cols; j++) {
          const qv = q(h, data, i, j);
          if (qv > 0) lines += `<line x1="0" y1="${i * ROW + ROW / 2}" x2="${x2}" y2="${j * ROW + ROW / 2}" stroke="rgb(${accent()})" stroke-width="1" stroke-opacity="${(0.8 * qv / SCALE).toFixed(3)}"/>`;
        }
      }
    }
    b.svg.innerHTML = lines;
    detail(hs, datas);
    document.documentElement.dataset.painted = String((+document.documentElement.dataset.painted || 0) + 1);
  }

  // ------------------------------------------------------------ the head view: matrices
  let colours = null; // the heat ramp in 256 steps, then the masked colour, as RGBA pixels
  const MASKED = 256;
  function matrixColours() {
    if (colours) return colours;
    const masked = getComputedStyle(document.documentElement).getPropertyValue("--masked").trim(); // (a style pass: once)
    const m = masked.match(/^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i);
    const rgbs = [];
    for (let k = 0; k <= 255; k++) rgbs.push(ramp(k / 255));
    rgbs.push(m ? [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)] : [128, 128, 128]);
    const little = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
    colours = Uint32Array.from(rgbs, ([r, g, b]) => (little ? (255 << 24) | (b << 16) | (g << 8) | r : (r << 24) | (g << 16) | (b << 8) | 255));
    return colours;
  }
  function drawMatrix(h, data, px) {
    const c = el("canvas", { width: String(h.cols), height: String(h.rows), "data-layer": String(h.layer), "data-head": String(h.head) });
    c.style.width = h.cols * px + "px";
    c.style.height = h.rows * px + "px";
    const ctx = c.getContext("2d");
    const img = ctx.createImageData(h.cols, h.rows), pixels = new Uint32Array(img.data.buffer);
    const lut = matrixColours(), step = SCALE === 255 ? null : 255 / SCALE; // 16 bits: to the nearest of 256 colours
    for (let i = 0, p = 0; i < h.rows; i++, p += h.cols) { // row by row, straight from the stored weights
      const row = h.offset + (h.tri ? (i * (i + 1)) / 2 : i * h.cols), stored = h.tri ? i + 1 : h.cols;
      if (step === null) for (let j = 0; j < stored; j++) pixels[p + j] = lut[data[row + j]];
      else for (let j = 0; j < stored; j++) pixels[p + j] = lut[Math.round(data[row + j] * step)];
      pixels.fill(lut[MASKED], p + stored, p + h.cols);
    }
    ctx.putImageData(img, 0, 0);
    const at = (e) => {
      const r = c.getBoundingClientRect();
      return [Math.floor(((e.clientY - r.top) / r.height) * h.rows), Math.floor(((e.clientX - r.left) / r.width) * h.cols)];
    };
    c.addEventListener("pointermove", (e) => {
      const [i, j] = at(e);
      if (i < 0 || j < 0 || i >= h.rows || j >= h.cols) return;
      const v = view(), qv = q(h, data, i, j);
      byId("readout").textContent = `head ${h.head} · query ${i} ${v.queries[i]} → key ${j} ${v.keys[j]}: ${qv < 0 ? "masked" : fmtQ(qv)}`;
    });
    c.addEventListener("click", (e) => {
      const [i] = at(e);
      if (S.head === "all") { choose({ head: h.head }); return; }
      S.pin = { side: "q", i }; detail(current(), [data]);
    });
    return c;
  }
  async function matrices() {
    const hs = current();
    const datas = await Promise.all(hs.map((h) => blob(h.blob)));
    const n = Math.max(hs[0].rows, hs[0].cols);
    const room = hs.length === 1 ? 560 : 200;
    const px = Math.max(1, Math.min(24, Math.floor(room / n)));
    const wrap = el("div", { class: "matrix-wrap" });
    hs.forEach((h, k) => {
      wrap.append(el("figure", { class: "matrix" }, drawMatrix(h, datas[k], px),
        el("figcaption", { text: `head ${h.head}${h.pattern ? " · " + h.pattern : ""}` })));
    });
    return [el("p", { id: "readout", class: "readout", text: "Point at a cell: query → key and its weight." }), wrap,
      el("p", { class: "hint", text: `rows: ${view().name === "cross" ? "target" : ""} queries, columns: keys; ${hs.length > 1 ? "click a matrix to open its head" : "click a row to list what that query attends to"}.` })];
  }

  // ------------------------------------------------------------ the detail panel
  function ranked(ws, names, k) {
    return ws.map((qv, o) => [qv, o]).filter(([qv]) => qv > 0).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, k)
      .map(([qv, o]) => el("li", { text: `${fmtQ(qv)}  ${o} ${names[o]}` }));
  }
  function detail(hs, datas) {
    const box = byId("detail");
    const v = view();
    const sel = S.hover || S.pin;
    const parts = [];
    if (hs.length === 1) {
      const h = hs[0];
      parts.push(el("h2", { text: `Layer ${h.layer} · Head ${h.head}` }));
      const what = h.pattern ? "label: " + h.pattern : v.name === "cross" ? `cross-attention, focus ${fmt2(h.score)}` : "no clear pattern";
      parts.push(el("p", { text: `${what}; mean entropy ${fmt2(h.mean_entropy)} nats` }));
      if (h.scores && Object.keys(h.scores).length) {
        parts.push(el("p", { class: "hint", text: Object.entries(h.scores).map(([k, x]) => `${k.replaceAll("_", "-")} ${fmt2(x)}`).join(" · ") }));
      }
    } else {
      parts.push(el("h2", { text: `Layer ${S.layer} · all ${hs.length} heads` }));
    }
    if (!sel) {
      parts.push(el("p", { class: "none", text: "Point at a token, or pick one with Tab and the arrow keys, to see what it attends to and what attends to it." }));
    } else {
      const names = sel.side === "q" ? v.keys : v.queries;
      const me = (sel.side === "q" ? v.queries : v.keys)[sel.i];
      hs.forEach((h, n) => {
        const k = hs.length === 1 ? 8 : 3;
        const ws = weightsOf(sel, h, datas[n]);
        const title = sel.side === "q" ? `query ${sel.i} ${me} attends to` : `key ${sel.i} ${me} is attended to by`;
        parts.push(el("h2", { text: hs.length === 1 ? title : `head ${h.head}: ${title}` }));
        parts.push(el("ol", { class: "top" }, ...ranked(ws, names, k)));
        if (hs.length === 1 && v.name !== "cross") { // self-attention: the other way too
          const back = weightsOf({ side: sel.side === "q" ? "k" : "q", i: sel.i }, h, datas[n]);
          parts.push(el("h2", { text: sel.side === "q" ? `${me} is attended to by` : `${me} (as a query) attends to` }));
          parts.push(el("ol", { class: "top" }, ...ranked(back, v.queries, 8)));
        }
      });
    }
    box.replaceChildren(...parts);
  }

  // ------------------------------------------------------------ the map of every head
  function map() {
    const box = byId("map");
    const v = view();
    const layers = layersOf(v);
    const width = Math.max(...layers.map((l) => headsOf(v, l).length));
    const value = (h) => (S.colourBy === "score" ? h.score : (h.scores || {})[S.colourBy]);
    const pick = el("select", { id: "colour-by", "aria-label": "Colour the map by", onchange: (e) => { S.colourBy = e.target.value; map(); } },
      ...Object.entries(SCORE_NAMES).map(([k, name]) => el("option", { value: k, selected: k === S.colourBy, text: name })));
    const grid = el("div", { class: "grid", role: "grid", "aria-label": "Every head: layers down, heads across",
      style: `grid-template-columns: 2.2em repeat(${width}, 26px)` });
    grid.append(el("span", { class: "lab", text: "L\\H" }));
    for (let c = 0; c < width; c++) grid.append(el("span", { class: "lab", text: String(headsOf(v, layers[0])[c] ? headsOf(v, layers[0])[c].head : c) }));
    const cells = [];
    layers.forEach((l, r) => {
      grid.append(el("span", { class: "lab", text: l < 0 ? "all" : String(l) }));
      headsOf(v, l).forEach((h, c) => {
        const x = value(h);
        const rgb = x === null || x === undefined ? null : ramp(x);
        const isCur = l === S.layer && (S.head === "all" || S.head === h.head);
        const b = el("button", { class: "cell" + (isCur ? " current" : ""), "data-layer": String(l), "data-head": String(h.head),
          "data-row": String(r), "data-col": String(c), tabindex: "-1",
          style: rgb ? `background: rgb(${rgb.join(",")}); color: ${ink(rgb)}` : "",
          "aria-label": `layer ${l} head ${h.head}: ${h.pattern || "no clear pattern"}${x === null || x === undefined ? "" : ", " + fmt2(x)}`,
          title: `layer ${l} · head ${h.head}\n${h.pattern || "no clear pattern"}\n` +
            Object.entries(h.scores || {}).map(([k, y]) => `${k.replaceAll("_", "-")}: ${fmt2(y)}`).join("\n"),
          text: h.letter, onclick: () => choose({ layer: l, head: h.head }) });
        cells.push(b);
        grid.append(b);
      });
      for (let c = headsOf(v, l).length; c < width; c++) grid.append(el("span"));
    });
    (cells.find((b) => b.classList.contains("current")) || cells[0]).tabIndex = 0;
    grid.addEventListener("keydown", (e) => {
      const d = { ArrowRight: [0, 1], ArrowLeft: [0, -1], ArrowDown: [1, 0], ArrowUp: [-1, 0] }[e.key];
      const t = e.target.closest(".cell");
      if (!d || !t) return;
      const r = +t.dataset.row + d[0], c = +t.dataset.col + d[1];
      const next = cells.find((b) => +b.dataset.row === r && +b.dataset.col === c);
      if (!next) return;
      e.preventDefault();
      cells.forEach((b) => { b.tabIndex = -1; });
      next.tabIndex = 0;
      next.focus();
    });
    const best = v.heads.filter((h) => value(h) !== null && value(h) !== undefined)
      .sort((a, b) => value(b) - value(a) || a.layer - b.layer || a.head - b.head).slice(0, 5)
      .map((h) => `L${h.layer} H${h.head} ${fmt2(value(h))}`).join(" · ");
    box.replaceChildren(
      el("h2", { text: v.name === "cross" ? "Every cross-attention head" : v.name === "self-attention" ? "Every head" : `Every ${v.name} head` }),
      el("p", { class: "legend" }, el("label", {}, "Colour by ", pick), `  ·  letters: ${LETTERS}. Click a head to open it.`),
      grid,
      el("p", { class: "best", text: best ? `best by ${SCORE_NAMES[S.colourBy]}: ${best}` : "" }));
    if (v.name === "cross") box.querySelector(".legend").append(" Cross heads have no self-attention pattern (letters ·); by its label's score, a cross head is coloured by its focus, 1 − mean entropy ÷ ln(source tokens).");
  }

  // ------------------------------------------------------------ choosing
  async function choose(change) {
    if ("tab" in change && change.tab !== S.tab) {
      S.tab = change.tab; S.pin = null; S.hover = null;
      S.layer = layersOf(view())[0]; S.head = headsOf(view(), S.layer)[0].head;
      syncTabs();
    }
    if ("layer" in change) {
      S.layer = change.layer;
      const hs = headsOf(view(), S.layer);
      if (!("head" in change) && S.head !== "all" && !hs.some((h) => h.head === S.head)) S.head = hs[0].head;
    }
    if ("head" in change) S.head = change.head;
    if ("mode" in change) S.mode = change.mode;
    await draw();
  }
  async function draw() {
    controls();
    const box = byId("view");
    box.dataset.tab = view().name; box.dataset.layer = String(S.layer); box.dataset.head = String(S.head); box.dataset.mode = S.mode;
    if (S.mode === "matrix") {
      box.replaceChildren(...await matrices());
    } else {
      const b = columns();
      if (box.firstChild !== b.node) box.replaceChildren(b.node,
        el("p", { class: "hint", text: "Point at a token (or Tab to it and use the arrow keys; click or Enter pins it): lines go to what it attends to, numbers are the weights." }));
    }
    await paint();
    map();
  }

  // ------------------------------------------------------------ generate
  function generate() {
    byId("map").hidden = true;
    const steps = D.steps;
    const rows = steps[0].rows;
    const box = byId("controls");
    const rowSel = el("select", { id: "row", "aria-label": "Which attention", onchange: (e) => { S.row = +e.target.value; genPaint(); } },
      ...rows.map((r, k) => el("option", { value: String(k), text: r.head < 0 ? `layer ${r.layer} · mean over its heads` : `layer ${r.layer} · head ${r.head}` })));
    const range = el("input", { type: "range", id: "step-range", min: "0", max: String(steps.length - 1), value: "0", "aria-label": "Step",
      oninput: (e) => { S.step = +e.target.value; genPaint(); } });
    const prev = el("button", { id: "prev", text: "◀ previous", onclick: () => go(-1) });
    const next = el("button", { id: "next", text: "next ▶", onclick: () => go(1) });
    box.replaceChildren(el("label", {}, "Attention of ", rowSel),
      el("span", { class: "steps" }, prev, range, next, el("span", { id: "step-label" })));
    const flow = el("div", { class: "flow", id: "flow" },
      ...D.tokens.map((t, i) => el("span", { class: "g" + (i >= D.prompt_length ? " new" : ""), "data-i": String(i), text: t })));
    byId("view").replaceChildren(flow, el("p", { class: "hint", text: "Each new token was chosen by the position before it; its row of attention covers every earlier token. ← and → step through the new tokens." }));
    document.addEventListener("keydown", (e) => {
      if (e.target.closest && e.target.closest("select, input")) return;
      if (e.key === "ArrowRight") { go(1); e.preventDefault(); }
      if (e.key === "ArrowLeft") { go(-1); e.preventDefault(); }
    });
    function go(d) { S.step = Math.min(Math.max(S.step + d, 0), steps.length - 1); range.value = String(S.step); genPaint(); }
    return genPaint();
  }
  async function genPaint() {
    const s = D.steps[S.step], r = s.rows[S.row];
    const data = await blob(r.blob);
    const rgb = accent();
    byId("step-label").textContent = `step ${S.step + 1} of ${D.steps.length}`;
    const ws = [];
    for (const t of byId("flow").children) {
      const i = +t.dataset.i;
      t.classList.toggle("now", i === s.index);
      t.classList.toggle("later", i > s.index);
      if (i < r.length) {
        const qv = data[r.offset + i];
        ws.push([qv, i]);
        t.dataset.w = fmtQ(qv);
        t.title = `weight ${fmtQ(qv)}`;
        t.style.background = `rgba(${rgb}, ${(0.85 * qv / SCALE).toFixed(3)})`;
      } else {
        delete t.dataset.w;
        t.removeAttribute("title");
        t.style.background = "";
      }
    }
    const top = ws.filter(([qv]) => qv > 0).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, 8);
    byId("view").dataset.step = String(S.step);
    byId("detail").replaceChildren(
      el("h2", { id: "chosen", text: `token ${s.index}: ${s.token}` }),
      el("p", { id: "probability", text: `probability ${fmtP(s.probability)}` }),
      el("h2", { text: "the most likely tokens at this step" }),
      el("table", { class: "cands" }, ...s.top.map((c) => el("tr", {}, el("td", { text: fmtP(c.probability) }), el("td", { text: c.token })))),
      el("h2", { text: `it attended to (${r.head < 0 ? "layer " + r.layer + ", mean of heads" : "layer " + r.layer + " head " + r.head})` }),
      el("ol", { class: "top" }, ...top.map(([qv, i]) => el("li", { text: `${fmtQ(qv)}  ${i} ${D.tokens[i]}` }))));
    document.documentElement.dataset.painted = String((+document.documentElement.dataset.painted || 0) + 1);
  }

  // ------------------------------------------------------------ start
  async function start() {
    header();
    if (typeof DecompressionStream === "undefined") {
      byId("view").textContent = "This browser cannot inflate the stored weights (no DecompressionStream): open the page in a current Chromium, Firefox or Safari.";
      return;
    }
    if (D.command === "generate") {
      await generate();
    } else {
      tabs();
      const v = view();
      const st = D.start || {};
      S.layer = st.layer !== null && st.layer !== undefined && layersOf(v).includes(st.layer) ? st.layer : layersOf(v)[0];
      S.head = headsOf(v, S.layer)[0].head;
      const chosen = headsOf(v, S.layer).find((h) => h.head === st.head);
      if (chosen) S.head = chosen.head; // heads --from A --to B: its top head, A pinned
      else if (D.command === "heads" && headsOf(v, S.layer).length > 1) { S.head = "all"; S.mode = "matrix"; }
      if (Number.isInteger(st.query) && st.query < v.queries.length) S.pin = { side: "q", i: st.query };
      if (st.pattern) S.colourBy = st.pattern.replaceAll("-", "_");
      await draw();
    }
    window.attnReadyAt = performance.now();
    document.documentElement.dataset.ready = "1";
  }
  start().catch((err) => {
    byId("view").textContent = "The page could not be drawn: " + err;
    document.documentElement.dataset.ready = "error";
  });
})();
