// netspec serve: how a unit is computed. A chosen unit (app.js's "netspec:unit") is sent with
// the current image to POST /api/explain; the answer's arithmetic (the input patch, kernel,
// products and sum, bias, then the activation and the pooled value) is shown in a panel
// under the unit's layer, and the window it read is outlined on the input layer's maps, so
// a click inside the outline explains that unit in turn, layer by layer back to the pixels
// (a click on "As the network sees it" explains one pixel). Re-asked after every answer,
// so the numbers follow the drawing.
"use strict";

(() => {
  const page = () => window.netspecPage;
  let current = null;   // {layer, unit}: the unit shown
  let asked = 0;        // requests sent: a late answer to an older one is dropped
  let inputName = null; // the network input's name, as the answers give it

  const make = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const num = (x) => {
    if (x === null || x === undefined) return "pad";
    if (x === 0) return "0";
    const a = Math.abs(x);
    return a >= 1e4 || a < 1e-3 ? x.toExponential(2) : x.toPrecision(4).replace(/\.?0+$/, "");
  };
  // A grid cell's number: two significant digits (the whole number is its tooltip).
  const short = (x) => {
    if (x === 0) return "0";
    const a = Math.abs(x);
    return a >= 100 || a < 1e-3 ? x.toExponential(0) : x.toPrecision(2);
  };
  const where = (u) => ["channel" in u ? `c${u.channel}` : null, "y" in u ? `y${u.y}` : null,
    "x" in u ? `x${u.x}` : null].filter(Boolean).join(" ") || `#${u.index}`;

  // The image POST /api/run takes: the loaded digit or upload as it is, else the drawing
  // at the input's size (as app.js reads it), else black.
  function image() {
    const { state } = page(), { h, w, c } = state.size;
    let bytes = state.exact;
    const draw = document.getElementById("draw");
    if (!bytes && draw) {
      const small = new OffscreenCanvas(w, h), ctx = small.getContext("2d");
      ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = "high";
      ctx.drawImage(draw, 0, 0, w, h);
      const rgba = ctx.getImageData(0, 0, w, h).data;
      bytes = new Uint8Array(h * w * c);
      for (let i = 0; i < h * w; i++) for (let ch = 0; ch < c; ch++) bytes[i * c + ch] = rgba[i * 4 + ch];
    }
    bytes = bytes || new Uint8Array(h * w * c);
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return { height: h, width: w, channels: c, pixels: btoa(s) };
  }

  async function explain(layer, unit) {
    current = { layer, unit };
    const mine = ++asked;
    const body = JSON.stringify({ image: image(), layer, unit });
    let answer;
    try {
      const response = await fetch("/api/explain", { method: "POST", headers: { "Content-Type": "application/json" }, body });
      answer = await response.json();
      if (!response.ok) throw new Error(answer.error || `${response.status}`);
    } catch (e) {
      if (mine === asked) showError(layer, e.message);
      return;
    }
    if (mine !== asked) return;
    if (answer.input) inputName = answer.input;
    render(answer);
    await outline(answer);
  }

  // --- the panel -------------------------------------------------------------------------
  function panel(layer) {
    let box = document.getElementById("explain");
    if (!box) {
      box = make("section", "explain");
      box.id = "explain";
      box.setAttribute("aria-live", "polite");
      box.setAttribute("aria-label", "how this unit is computed");
    }
    const home = document.getElementById(`layer-${layer}`);
    if (home) home.after(box);
    else document.getElementById("layers").prepend(box);  // the input: before the first layer
    box.hidden = false;
    return box;
  }

  function showError(layer, message) {
    const box = panel(layer);
    box.replaceChildren(heading(), make("p", "error", `cannot explain this unit: ${message}`));
    box.dataset.layer = layer; box.dataset.kind = "error";
  }

  function heading() {
    const h = make("h3", "", "How this unit is computed");
    const close = make("button", "close", "×");
    close.type = "button"; close.title = "close"; close.setAttribute("aria-label", "close");
    close.addEventListener("click", () => { current = null; asked++; clearOutline(); document.getElementById("explain").hidden = true; });
    h.append(close);
    return h;
  }

  function render(a) {
    const box = panel(a.layer);
    Object.assign(box.dataset, { layer: a.layer, kind: a.kind, index: a.unit.index, matches: `${a.matches}` });
    const title = make("p", "unit");
    title.append(make("b", "", `${a.layer} [${where(a.unit)}]`), ` = ${num(a.value)}`);
    if (a.spec) title.append(make("code", "spec", `line ${a.line}: ${a.spec}`));
    const parts = [heading(), title];
    if (a.input) parts.push(reads(a));
    parts.push(...(KINDS[a.kind] || KINDS.other)(a), check(a));
    for (const step of a.then) parts.push(then(step));
    if (a.input) parts.push(make("p", "hint", a.input === inputName && !isLayer(a.input)
      ? `The outlined pixels on "As the network sees it" are this window: click one to see its value.`
      : `The window is outlined on ${a.input}'s maps: click a unit inside it to see how it was computed.`));
    box.replaceChildren(...parts);
  }

  const isLayer = (name) => page().state.model.layers.some((l) => l.name === name);

  function reads(a) {
    const p = a.patch, text = [`reads ${a.inputs.map((i) => i.name).join(", ")}`];
    if (p && p.channels.length) text.push(`channels ${span(p.channels)}`);
    if (p && p.rows) text.push(`rows ${p.rows[0]}..${p.rows[1]}`, `columns ${p.cols[0]}..${p.cols[1]} (inclusive)`);
    return make("p", "reads", text.join(", "));
  }

  function span(list) {
    const contiguous = list.every((v, i) => i === 0 || v === list[i - 1] + 1);
    return contiguous && list.length > 2 ? `${list[0]}..${list[list.length - 1]}` : list.join(", ");
  }

  function check(a) {
    if (a.matches === null) return make("p", "check", `the network's value: ${num(a.value)}`);
    const ok = a.matches ? "✓" : "✗";
    const p = make("p", `check ${a.matches ? "ok" : "bad"}`,
      `${ok} recomputed ${num(a.recomputed)}; the network computed ${num(a.value)} (tolerance ${a.tolerance.toExponential(1)})`);
    return p;
  }

  function then(step) {
    const n = step.numbers, p = make("p", "then");
    p.dataset.layer = step.layer;
    let text;
    if (step.kind === "activation") text = `${n.formula} with x = ${num(n.x)}`;
    else if (step.kind === "batchnorm") text = `(${num(n.x)} − ${num(n.mean)}) / √(${num(n.var)} + ${n.eps}) × ${num(n.gamma)} + ${num(n.beta)}`;
    else if (step.kind === "layer_scale") text = `${num(n.x)} × ${num(n.gamma)}`;
    else if (step.kind === "maxpool") text = `the largest of its window: ${step.won ? "this unit won" : "another unit won"}`;
    else if (step.kind === "avgpool") text = `the mean of its window: ${num(n.sum)} / ${n.divisor}`;
    else if (step.kind === "subsample") text = `its window's sum ${num(n.sum)} × ${num(n.coefficient)} + ${num(n.bias)}`;
    else text = step.op;
    p.append("then ", make("b", "", `${step.layer} [${where(step.unit)}]`), `: ${text} = ${num(step.value)}`);
    if (step.matches === false) p.append(make("span", "bad", " ✗"));
    return p;
  }

  // A heat grid of a 2-D list of numbers (null: padding), blue below zero, red above.
  function grid(rows, cls, winner) {
    const table = make("table", `grid ${cls}`), big = Math.max(1e-12, ...rows.flat().map((v) => Math.abs(v || 0)));
    rows.forEach((row, i) => {
      const tr = make("tr");
      row.forEach((v, j) => {
        const td = make("td", v === null ? "pad" : "", v === null ? "" : short(v));
        td.title = num(v);
        if (v !== null) {
          const t = Math.abs(v) / big, hue = v < 0 ? "33, 102, 172" : "178, 24, 43";
          td.style.background = `rgba(${hue}, ${(0.08 + 0.62 * t).toFixed(2)})`;
          td.style.color = t > 0.6 ? "#fff" : "";
        }
        if (winner && winner[0] === i && winner[1] === j) td.classList.add("winner");
        tr.append(td);
      });
      table.append(tr);
    });
    return table;
  }

  function labelled(title, el) {
    const f = make("figure");
    f.append(el, make("figcaption", "", title));
    return f;
  }

  function sliding(a) {
    const n = a.numbers, out = [];
    const detailed = n.terms.filter((t) => t.patch), bare = n.terms.filter((t) => !t.patch);
    for (const t of detailed) {
      const row = make("div", "channel");
      row.dataset.channel = t.channel;
      row.append(make("span", "name", `c${t.channel}`),
        labelled("patch", grid(t.patch, "patch")), make("span", "op", "×"),
        labelled("kernel", grid(t.kernel, "kernel")), make("span", "op", "="),
        labelled("products", grid(t.products, "products")), make("span", "sum", `sum ${num(t.sum)}`));
      out.push(row);
    }
    if (bare.length) {
      const p = make("p", "partials", `${detailed.length ? "the other channels'" : "each channel's"} sums: `);
      p.append(bare.map((t) => `c${t.channel}: ${num(t.sum)}`).join(", "));
      out.push(p);
    }
    const parts = n.terms.length > 1 ? `the ${n.terms.length} channel sums` : "the products";
    const sum = make("p", "formula", `${parts} add to ${num(n.sum)}; + bias ${num(n.bias)} = ${num(n.pre_activation)}`);
    sum.dataset.sum = n.sum; sum.dataset.bias = n.bias;
    out.push(sum);
    if (a.kind === "local") out.push(make("p", "note", `a kernel of this position's own (kernel ${n.position_kernel}): weights are not shared`));
    return out;
  }

  function weighted(a) {
    const n = a.numbers, table = make("table", "contributions");
    const head = make("tr"), cols = a.kind === "rbf" ? ["input", "x", "prototype", "(x − p)²"] : ["input", "x", "w", "w × x"];
    for (const c of cols) head.append(make("th", "", c));
    table.append(head);
    for (const t of n.top) {
      const tr = make("tr");
      const cells = a.kind === "rbf" ? [t.x, t.prototype, t.term] : [t.x, t.w, t.product];
      tr.append(make("td", "", t.at.length === 3 ? `c${t.at[0]} y${t.at[1]} x${t.at[2]}` : `#${t.index}`), ...cells.map((v) => make("td", "", num(v))));
      table.append(tr);
    }
    const rest = make("tr", "rest");
    rest.append(make("td", "", `the other ${n.rest.count}`), make("td"), make("td"), make("td", "", num(n.rest.sum)));
    table.append(rest);
    const what = a.kind === "rbf" ? "squared distance to the class's prototype" : "weighted sum";
    const tail = a.kind === "rbf" ? `= ${num(n.sum)}` : `= ${num(n.sum)}; + bias ${num(n.bias)} = ${num(n.pre_activation)}`;
    return [make("p", "", `a ${what} over all ${n.inputs} inputs, the ${n.top.length} strongest listed:`), table,
      make("p", "formula", `sum ${tail}`)];
  }

  function pooled(a) {
    const n = a.numbers, w = n.winner ? [n.winner[0] - n.top_left[0], n.winner[1] - n.top_left[1]] : null;
    const out = [labelled("window", grid(n.window, "window", w))];
    if (a.kind === "maxpool") out.push(make("p", "formula", `the largest, at y${n.winner[0]} x${n.winner[1]}: ${num(a.recomputed)}`));
    else if (a.kind === "avgpool") out.push(make("p", "formula", `mean: ${num(n.sum)} / ${n.divisor} = ${num(a.recomputed)}`));
    else out.push(make("p", "formula", `sum ${num(n.sum)} × coefficient ${num(n.coefficient)} + bias ${num(n.bias)} = ${num(a.recomputed)}`));
    return out;
  }

  const line = (text) => [make("p", "formula", text)];
  const KINDS = {
    conv: sliding,
    local: sliding,
    dense: weighted,
    rbf: weighted,
    maxpool: pooled,
    avgpool: pooled,
    subsample: pooled,
    batchnorm: (a) => { const n = a.numbers; return line(`(x − mean) / √(var + eps) × γ + β = (${num(n.x)} − ${num(n.mean)}) / √(${num(n.var)} + ${n.eps}) × ${num(n.gamma)} + ${num(n.beta)} = ${num(a.recomputed)}`); },
    layernorm: (a) => { const n = a.numbers; return line(`over ${n.count} values: mean ${num(n.mean)}, var ${num(n.var)}; (${num(n.x)} − mean) / √(var + ${n.eps}) × ${num(n.gamma)} + ${num(n.beta)} = ${num(a.recomputed)}`); },
    layer_scale: (a) => line(`x × γ = ${num(a.numbers.x)} × ${num(a.numbers.gamma)} = ${num(a.recomputed)}`),
    activation: (a) => line(`${a.op}: ${a.numbers.formula}, x = ${num(a.numbers.x)} → ${num(a.recomputed ?? a.value)}`),
    softmax: (a) => { const n = a.numbers; return line(`e^(x − max) / Σ e^(x − max) = e^(${num(n.x)} − ${num(n.max)}) / ${num(n.sum_exp)} = ${num(a.recomputed)}`); },
    log_softmax: (a) => { const n = a.numbers; return line(`x − max − log Σ e^(x − max) = ${num(n.x)} − ${num(n.max)} − log ${num(n.sum_exp)} = ${num(a.recomputed)}`); },
    upsample: (a) => line(a.numbers.sources.map((s) => `${num(s.w)} × ${a.input}[c${s.at[0]} y${s.at[1]} x${s.at[2]}] (${num(s.x)})`).join(" + ") + ` = ${num(a.recomputed)}`),
    pixel_shuffle: (a) => line(`moved from ${a.input}[c${a.numbers.from.join(" ")}]: ${num(a.numbers.x)}`),
    pixel_unshuffle: (a) => line(`moved from ${a.input}[c${a.numbers.from.join(" ")}]: ${num(a.numbers.x)}`),
    copy: (a) => line(`the value of ${a.input}[${a.numbers.from.join(", ")}], moved: ${num(a.numbers.x)}`),
    add: (a) => line(`${a.numbers.values.map(num).join(" + ")} = ${num(a.recomputed)}`),
    mul: (a) => line(`${a.numbers.values.map(num).join(" × ")} = ${num(a.recomputed)}`),
    input: (a) => { const n = a.numbers; return line(`pixel ${n.pixel}: (${n.pixel} / 255 − ${n.mean}) / ${n.std} = ${num(a.recomputed)}, what the first layer reads`); },
    other: (a) => line(`${a.op}: ${num(a.value)}`),
  };

  // --- the window, outlined on the input layer's maps ------------------------------------
  function clearOutline() {
    for (const e of document.querySelectorAll(".explain-patch")) e.remove();
  }

  function box(parent, left, top, width, height, name, channel, cls) {
    const o = make("div", `explain-patch ${cls}`);
    Object.assign(o.style, { left: `${left}px`, top: `${top}px`, width: `${width}px`, height: `${height}px` });
    Object.assign(o.dataset, { layer: name, channel });
    parent.append(o);
    return o;
  }

  async function outline(a) {
    clearOutline();
    const p = a.patch;
    if (!p || !a.input) return;
    if (!isLayer(a.input)) { outlineInput(a.input, p); return; }
    let tile = page().tileFor(a.input, p.channels[0] ?? 0);
    if (!tile && page().open) tile = await page().open(a.input);
    if (!tile) return;
    const channels = p.rows ? p.channels : [];
    for (const c of channels) {
      const t = page().tileFor(a.input, c);
      if (!t) continue;
      const r0 = page().unitRect(a.input, c, p.rows[0], p.cols[0]);
      const r1 = page().unitRect(a.input, c, p.rows[1], p.cols[1]);
      box(t.parentElement, r0.left, r0.top, r1.left + r1.width - r0.left, r1.top + r1.height - r0.top, a.input, c, "window");
    }
    for (const m of p.marks) {  // single input units: a dense unit's strongest, a source
      const vector = m.length === 1, c = m[0];
      const t = page().tileFor(a.input, vector ? m[0] : c);
      if (!t) continue;
      const r = vector ? page().unitRect(a.input, m[0], null, null) : page().unitRect(a.input, c, m[1], m[2]);
      box(t.parentElement, r.left, r.top, r.width, r.height, a.input, c, "mark");
    }
    const first = document.querySelector(".explain-patch");
    if (first) first.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  function outlineInput(name, p) {
    const view = document.getElementById("input"), frame = view && view.parentElement;
    if (!frame || !p.rows) return;
    const sx = view.clientWidth / view.width, sy = view.clientHeight / view.height;
    box(frame, p.cols[0] * sx, p.rows[0] * sy, (p.cols[1] - p.cols[0] + 1) * sx, (p.rows[1] - p.rows[0] + 1) * sy,
      name, p.channels.join(","), "window");
  }

  // --- wiring -------------------------------------------------------------------------------
  document.addEventListener("netspec:unit", (e) => {
    const d = e.detail;
    explain(d.layer, { index: d.index });
  });
  document.addEventListener("netspec:answer", () => { if (current) explain(current.layer, current.unit); });
  document.addEventListener("click", (e) => {  // a pixel of the input, as the network sees it
    const view = document.getElementById("input");
    if (e.target !== view || !page() || !page().state.size) return;
    const r = view.getBoundingClientRect(), { h, w } = page().state.size;
    const x = Math.min(w - 1, Math.floor((e.clientX - r.left) / (r.width / w)));
    const y = Math.min(h - 1, Math.floor((e.clientY - r.top) / (r.height / h)));
    const name = inputName || "image";
    explain(name, { channel: 0, y, x });
  });
})();
