// netspec serve: the page. Plain JavaScript, no build step, nothing fetched from outside.
// The drawing canvas is the source of truth: every change sends it (at the network's input
// size) to POST /api/run, one request in flight at a time, and every layer is redrawn
// from the answer. A unit under the pointer shows its value, its receptive field on the
// input (a box from the layer's size/jump/start) and the spec line that made its layer.
"use strict";

const LEVELS = 65535;  // the server's 16-bit codes: 0 is a layer's minimum, 65535 its maximum
const TILE = 84;       // about how many screen pixels a feature map's side gets
const VIEW = 224;      // screen pixels of the "as the network sees it" canvas's longer side
const GAP = 3;         // screen pixels between tiles

const state = {
  model: null,      // GET /api/model
  size: null,       // {h, w, c} of the input
  pad: true,        // a drawing pad on the page: only for a 1-channel image input
  word: "image",    // the dataset's word for one sample: "digit", "garment", "image"
  exact: null,      // pixels of a loaded test digit or upload, sent as they are until drawn on
  busy: false,      // a request in flight
  pending: false,   // the canvas changed while it was in flight
  last: null,       // the last POST /api/run answer
  layouts: {},      // layer name -> how its canvas is laid out (for hovering)
  pinned: null,     // a clicked unit stays shown until another click
};
// Each update's milliseconds from reading the canvas to every layer drawn, and the part of
// it spent waiting for the server (request, inference, answer): read by the tests and by
// benchmarks/bench_serve.py.
window.netspec = { timings: [], waits: [], updates: 0 };

const $ = (id) => document.getElementById(id);

// --- colours: viridis through five of its stops, as a 256-entry table -------------------
const STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const LUT = new Uint8ClampedArray(256 * 3);
for (let i = 0; i < 256; i++) {
  const t = (i / 255) * (STOPS.length - 1), k = Math.min(Math.floor(t), STOPS.length - 2), f = t - k;
  for (let ch = 0; ch < 3; ch++) LUT[i * 3 + ch] = STOPS[k][ch] + f * (STOPS[k + 1][ch] - STOPS[k][ch]);
}

function decode(encoded) {
  const raw = atob(encoded.codes), bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return new Uint16Array(bytes.buffer);
}

function value(encoded, code) {
  return encoded.min + (code / LEVELS) * (encoded.max - encoded.min);
}

function fmt(x) {
  if (x === 0) return "0";
  const a = Math.abs(x);
  return a >= 1e4 || a < 1e-3 ? x.toExponential(2) : x.toPrecision(4).replace(/\.?0+$/, "");
}

// --- layout: a layer's output as tiles of maps -------------------------------------------
// (C, H, W): C tiles of H x W; (C, L): C tiles of 1 x L; (N): one tile wrapped into rows.
function layoutOf(shape) {
  let maps, h, w;
  if (shape.length === 3) [maps, h, w] = shape;
  else if (shape.length === 2) [maps, h, w] = [shape[0], 1, shape[1]];
  else {  // a vector: rows of up to 30 cells, each a readable size
    const n = shape.reduce((a, b) => a * b, 1);
    w = Math.min(n, 30);
    [maps, h] = [1, Math.ceil(n / w)];
  }
  const scale = shape.length === 1 ? 9 : Math.max(1, Math.floor(TILE / Math.max(h, w, 8)));
  const cols = Math.max(1, Math.min(maps, Math.floor(560 / (w * scale + GAP)) || 1));
  const rows = Math.ceil(maps / cols);
  return {
    spatial: shape.length !== 1, maps, h, w, scale, cols, rows,
    width: cols * (w * scale + GAP) - GAP, height: rows * (h * scale + GAP) - GAP,
    count: shape.reduce((a, b) => a * b, 1),
  };
}

// The unit under canvas pixel (px, py), or null between tiles: {c, y, x, flat}.
function unitAt(lay, px, py) {
  const tx = Math.floor(px / (lay.w * lay.scale + GAP)), ty = Math.floor(py / (lay.h * lay.scale + GAP));
  const x = Math.floor((px - tx * (lay.w * lay.scale + GAP)) / lay.scale);
  const y = Math.floor((py - ty * (lay.h * lay.scale + GAP)) / lay.scale);
  const c = ty * lay.cols + tx;
  if (tx >= lay.cols || c >= lay.maps || x >= lay.w || y >= lay.h || x < 0 || y < 0) return null;
  const flat = (c * lay.h + y) * lay.w + x;
  return flat < lay.count ? { c, y, x, flat } : null;
}

// Draw a layer's codes on its canvas: each map through the colour table, scaled up.
function paint(canvas, lay, codes) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = false;
  const tile = new OffscreenCanvas(lay.w, lay.h), tctx = tile.getContext("2d");
  const img = tctx.createImageData(lay.w, lay.h), px = img.data;
  const per = lay.h * lay.w;
  for (let c = 0; c < lay.maps; c++) {
    px.fill(0);
    for (let i = 0; i < per; i++) {
      const at = c * per + i;
      if (at >= lay.count) break;
      const k = (codes[at] >> 8) * 3;
      px[i * 4] = LUT[k]; px[i * 4 + 1] = LUT[k + 1]; px[i * 4 + 2] = LUT[k + 2]; px[i * 4 + 3] = 255;
    }
    tctx.putImageData(img, 0, 0);
    const tx = c % lay.cols, ty = Math.floor(c / lay.cols);
    ctx.drawImage(tile, tx * (lay.w * lay.scale + GAP), ty * (lay.h * lay.scale + GAP),
      lay.w * lay.scale, lay.h * lay.scale);
  }
}

function legend(el, encoded) {
  el.replaceChildren();
  const bar = document.createElement("canvas");
  bar.width = 256; bar.height = 1;
  const ctx = bar.getContext("2d"), img = ctx.createImageData(256, 1);
  for (let i = 0; i < 256; i++) {
    img.data.set([LUT[i * 3], LUT[i * 3 + 1], LUT[i * 3 + 2], 255], i * 4);
  }
  ctx.putImageData(img, 0, 0);
  const lo = document.createElement("span"), hi = document.createElement("span");
  lo.textContent = fmt(encoded.min); hi.textContent = fmt(encoded.max);
  el.dataset.min = encoded.min; el.dataset.max = encoded.max;
  el.append(lo, bar, hi);
  if (encoded.nonfinite) {
    const bad = document.createElement("span");
    bad.textContent = `(${encoded.nonfinite} not finite)`;
    el.append(bad);
  }
}

// --- the page's parts, built once from GET /api/model ------------------------------------
function rfText(layer) {
  if (!layer.rf) return "all";
  const s = layer.rf.size, j = layer.rf.jump;
  const size = s.every((v) => v === s[0]) ? `${s[0]}` : s.join("x");
  const jump = j.every((v) => v === j[0]) ? `${j[0]}` : j.join("x");
  return `${size} /${jump}`;
}

function specText(layer) {
  return layer.spec ? `${layer.spec.file}:${layer.spec.line}: ${layer.spec.text}` : "(no spec line)";
}

function build(model) {
  state.model = model;
  const [c, h, w] = model.input_shape;
  state.size = { c, h, w };
  $("title").textContent = model.title;
  words(model.sample || "image", c === 1);
  const view = $("input"), scale = Math.max(1, Math.floor(VIEW / Math.max(h, w)));
  view.width = w; view.height = h;
  view.style.width = `${w * scale}px`; view.style.height = `${h * scale}px`;
  view.dataset.scale = scale;
  const layers = $("layers"), rows = document.querySelector("#layer-table tbody");
  for (const layer of model.layers) {
    const lay = layoutOf(layer.shape);
    state.layouts[layer.name] = lay;
    const box = document.createElement("div");
    box.className = "layer"; box.id = `layer-${layer.name}`;
    const title = document.createElement("h3");
    const name = document.createElement("b");
    name.textContent = layer.name;
    title.append(name, ` ${layer.op} ${layer.shape.join("x")}, receptive field ${rfText(layer)}`);
    const spec = document.createElement("div");
    spec.className = "spec"; spec.textContent = specText(layer);
    const canvas = document.createElement("canvas");
    canvas.className = "maps"; canvas.dataset.layer = layer.name;
    canvas.width = lay.width; canvas.height = lay.height;
    const key = document.createElement("div");
    key.className = "legend"; key.dataset.layer = layer.name;
    box.append(title, spec, key, canvas);
    layers.append(box);
    canvas.addEventListener("pointermove", (e) => { if (!state.pinned) hover(layer, canvas, e); });
    canvas.addEventListener("click", (e) => { state.pinned = null; state.pinned = hover(layer, canvas, e); });
    canvas.addEventListener("pointerleave", () => { if (!state.pinned) unhighlight(); });
    const row = document.createElement("tr");
    row.dataset.layer = layer.name;
    const cells = [layer.name, layer.op, layer.shape.join("x"), rfText(layer),
      layer.params ? layer.params.toLocaleString("en") : "-", layer.macs.toLocaleString("en"),
      layer.spec ? `${layer.spec.line}` : ""];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      row.append(td);
    }
    row.title = specText(layer);
    row.addEventListener("click", () => box.scrollIntoView({ behavior: "smooth", block: "center" }));
    rows.append(row);
  }
  buildBars(model.classes);
  $("random").disabled = !model.digits;
}

function buildBars(classes) {
  const bars = $("bars");
  bars.replaceChildren();
  if (!classes) { bars.textContent = "(no classes: the last layer's maps are above)"; return; }
  for (const name of classes) {
    const row = document.createElement("div");
    row.className = "bar"; row.dataset.class = name;
    const label = document.createElement("span");
    label.className = "name"; label.textContent = name;
    const fill = document.createElement("span");
    fill.className = "fill";
    const p = document.createElement("span");
    p.className = "p";
    row.append(label, fill, p);
    bars.append(row);
  }
}

// --- hovering: a unit's value, receptive field and spec line -------------------------------
function hover(layer, canvas, event) {
  const lay = state.layouts[layer.name], r = canvas.getBoundingClientRect();
  const px = (event.clientX - r.left) * (canvas.width / r.width);
  const py = (event.clientY - r.top) * (canvas.height / r.height);
  const unit = unitAt(lay, px, py);
  if (!unit || !state.last || !state.last.layers[layer.name]) { return null; }
  const encoded = state.last.layers[layer.name];
  const v = value(encoded, state.last.decoded[layer.name][unit.flat]);
  const box = rfBox(layer, lay, unit);
  highlight(box, layer, unit);
  const where = lay.spatial ? `map ${unit.c}, row ${unit.y}, column ${unit.x}` : `unit ${unit.flat}`;
  const info = $("unit");
  info.replaceChildren();
  const lines = [
    [`${layer.name} (${layer.op}), ${where}`, "b"],
    [`value ${fmt(v)}`, "span"],
    [box.whole ? "receptive field: the whole input"
      : `receptive field: ${box.height}x${box.width} input pixels, rows ${box.y0}..${box.y0 + box.height}, ` +
        `columns ${box.x0}..${box.x0 + box.width}`, "span"],
    [specText(layer), "div"],
  ];
  for (const [text, tag] of lines) {
    const el = document.createElement(tag);
    el.textContent = text;
    if (tag === "div") el.className = "spec";
    info.append(el, document.createElement("br"));
  }
  info.dataset.layer = layer.name; info.dataset.value = v;
  for (const row of document.querySelectorAll("#layer-table tbody tr")) {
    row.classList.toggle("active", row.dataset.layer === layer.name);
  }
  return { layer: layer.name, unit };
}

// The unit's receptive field in input pixels: centre start + i * jump, size wide per axis.
function rfBox(layer, lay, unit) {
  const { h, w } = state.size;
  if (!layer.rf || !lay.spatial) return { whole: true, y0: 0, x0: 0, height: h, width: w };
  const size = layer.rf.size, jump = layer.rf.jump, start = layer.rf.start;
  const axes = size.length === 2 ? [0, 1] : [null, 0];  // a 1-D layer moves along W only
  const along = (axis, i, full) => (axis === null
    ? [0, full] : [start[axis] + i * jump[axis] - size[axis] / 2, size[axis]]);
  const [y0, height] = along(axes[0], unit.y, h), [x0, width] = along(axes[1], unit.x, w);
  return { whole: false, y0, x0, height, width };
}

function highlight(box, layer, unit) {
  const view = $("input"), scale = Number(view.dataset.scale);
  const boxes = [[$("rf-box"), scale]];
  if (state.pad) boxes.push([$("rf-box-draw"), draw.clientWidth / state.size.w]);
  for (const [el, s] of boxes) {
    el.hidden = false;
    el.style.left = `${box.x0 * s}px`; el.style.top = `${box.y0 * s}px`;
    el.style.width = `${box.width * s}px`; el.style.height = `${box.height * s}px`;
    Object.assign(el.dataset, {
      layer: layer.name, unit: `${unit.c},${unit.y},${unit.x}`, whole: box.whole,
      y0: box.y0, x0: box.x0, height: box.height, width: box.width, scale: s,
    });
  }
}

function unhighlight() {
  $("rf-box").hidden = true;
  if (state.pad) $("rf-box-draw").hidden = true;
}

// The dataset's word where the page names a sample; without a pad (a colour or a
// many-channel input, which nobody draws with a white pen) the drawing canvas leaves the
// page: it still holds an upload or a test image, off the page, as the source of truth.
function words(word, pad) {
  state.word = word; state.pad = pad;
  $("random").textContent = `Random test ${word}`;
  $("gallery-title").textContent = `Misclassified test ${word}s`;
  if (pad) return;
  $("left-title").textContent = "Input";
  $("draw-frame").remove();
  $("clear").remove();
  $("source").textContent = "a black image";
}

// --- drawing ------------------------------------------------------------------------------
const draw = $("draw"), pen = draw.getContext("2d");
let drawing = false, lastPoint = null;

function point(e) {
  const r = draw.getBoundingClientRect();
  return [(e.clientX - r.left) * (draw.width / r.width), (e.clientY - r.top) * (draw.height / r.height)];
}

function stroke(to) {
  pen.strokeStyle = "#fff"; pen.fillStyle = "#fff";
  pen.lineWidth = (draw.width / state.size.w) * 2.2;
  pen.lineCap = "round"; pen.lineJoin = "round";
  pen.beginPath();
  pen.moveTo(...(lastPoint || to));
  pen.lineTo(...to);
  pen.stroke();
  lastPoint = to;
}

draw.addEventListener("pointerdown", (e) => {
  if (!state.model) return;
  drawing = true; lastPoint = null; state.exact = null;
  draw.setPointerCapture(e.pointerId);
  $("source").textContent = "your drawing"; delete $("source").dataset.index;
  stroke(point(e));
  update();
});
draw.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  for (const ev of e.getCoalescedEvents ? e.getCoalescedEvents() : [e]) stroke(point(ev));
  update();
});
for (const name of ["pointerup", "pointercancel"]) {
  draw.addEventListener(name, () => { drawing = false; lastPoint = null; update(); });
}

function clear() {
  pen.fillStyle = "#000";
  pen.fillRect(0, 0, draw.width, draw.height);
}

// The drawing at the input's size, H*W*C bytes: what POST /api/run takes.
function pixels() {
  if (state.exact) return state.exact;
  const { h, w, c } = state.size;
  const small = new OffscreenCanvas(w, h), ctx = small.getContext("2d");
  ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = "high";
  ctx.drawImage(draw, 0, 0, w, h);
  const rgba = ctx.getImageData(0, 0, w, h).data, out = new Uint8Array(h * w * c);
  for (let i = 0; i < h * w; i++) for (let ch = 0; ch < c; ch++) out[i * c + ch] = rgba[i * 4 + ch];
  return out;
}

// Show an image of the input's size (from a test digit or an upload) on the drawing canvas.
function show(image) {
  const { h, w, c } = state.size, bytes = Uint8Array.from(atob(image.pixels), (ch) => ch.charCodeAt(0));
  const small = new OffscreenCanvas(w, h), ctx = small.getContext("2d"), img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let ch = 0; ch < 3; ch++) img.data[i * 4 + ch] = bytes[i * c + (c === 3 ? ch : 0)];
    img.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  clear();
  pen.imageSmoothingEnabled = false;
  pen.drawImage(small, 0, 0, draw.width, draw.height);
  state.exact = bytes;
  update();
}

function b64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

// --- talking to the server ------------------------------------------------------------------
async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `${response.status}`);
  return body;
}

function update() {
  if (state.busy) { state.pending = true; return; }
  state.busy = true; state.pending = false;
  const { h, w, c } = state.size, started = performance.now();
  const body = JSON.stringify({ height: h, width: w, channels: c, pixels: b64(pixels()) });
  api("/api/run", { method: "POST", headers: { "Content-Type": "application/json" }, body })
    .then((answer) => {
      const answered = performance.now();
      render(answer);
      window.netspec.waits.push(answered - started);
      window.netspec.timings.push(performance.now() - started);
      window.netspec.updates += 1;
      $("status").textContent = "";
    })
    .catch((e) => { $("status").textContent = `error: ${e.message}`; })
    .finally(() => { state.busy = false; if (state.pending) update(); });
}

function render(answer) {
  answer.decoded = {};
  const input = decode(answer.input), { h, w, c } = state.size;
  const view = $("input"), ctx = view.getContext("2d"), img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {  // grey (or colour) over the input's own range
    for (let ch = 0; ch < 3; ch++) img.data[i * 4 + ch] = input[(c === 3 ? ch : 0) * h * w + i] >> 8;
    img.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  legend($("input-legend"), answer.input);
  for (const layer of state.model.layers) {
    const encoded = answer.layers[layer.name];
    if (!encoded) continue;
    const codes = decode(encoded);
    answer.decoded[layer.name] = codes;
    paint(document.querySelector(`canvas.maps[data-layer="${CSS.escape(layer.name)}"]`),
      state.layouts[layer.name], codes);
    legend(document.querySelector(`.legend[data-layer="${CSS.escape(layer.name)}"]`), encoded);
  }
  state.last = answer;
  bars(answer.probabilities);
}

function bars(probabilities) {
  const classes = state.model.classes, out = $("prediction");
  if (!classes || !probabilities) { out.textContent = ""; delete out.dataset.class; return; }
  let best = 0;
  probabilities.forEach((p, i) => { if (p > probabilities[best]) best = i; });
  out.textContent = `prediction: ${classes[best]} (${(100 * probabilities[best]).toFixed(1)}%)`;
  out.dataset.class = classes[best];
  document.querySelectorAll("#bars .bar").forEach((row, i) => {
    row.querySelector(".fill").style.width = `${Math.round(probabilities[i] * 180)}px`;
    row.querySelector(".p").textContent = `${(100 * probabilities[i]).toFixed(1)}%`;
    row.dataset.p = probabilities[i];
    row.classList.toggle("top", i === best);
  });
}

async function loadDigit(which, figure) {
  try {
    const digit = await api(`/api/digit/${which}`);
    const label = digit.label === null ? "" : `, label ${state.model.classes ? state.model.classes[digit.label] : digit.label}`;
    $("source").textContent = `test ${state.word} #${digit.index}${label}`;
    $("source").dataset.index = digit.index;
    document.querySelectorAll("#gallery figure").forEach((f) => f.classList.toggle("loaded", f === figure));
    show(digit);
  } catch (e) { $("status").textContent = `error: ${e.message}`; }
}

async function loadGallery() {
  const gallery = await api("/api/gallery");
  $("gallery-section").hidden = false;
  $("gallery-count").textContent = `(${gallery.errors} of ${gallery.tested.toLocaleString("en")}` +
    (gallery.digits.length < gallery.errors ? `, the first ${gallery.digits.length} shown)` : ")");
  const names = state.model.classes || [];
  for (const digit of gallery.digits) {
    const figure = document.createElement("figure");
    figure.dataset.index = digit.index;
    const thumb = document.createElement("canvas");
    thumb.width = digit.width; thumb.height = digit.height;
    const ctx = thumb.getContext("2d"), img = ctx.createImageData(digit.width, digit.height);
    const bytes = Uint8Array.from(atob(digit.pixels), (ch) => ch.charCodeAt(0));
    for (let i = 0; i < digit.width * digit.height; i++) {
      for (let ch = 0; ch < 3; ch++) img.data[i * 4 + ch] = bytes[i * digit.channels + (digit.channels === 3 ? ch : 0)];
      img.data[i * 4 + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    const caption = document.createElement("figcaption");
    caption.textContent = `${names[digit.label] ?? digit.label}→${names[digit.predicted] ?? digit.predicted}`;
    figure.title = `test ${state.word} #${digit.index}: label ${names[digit.label]}, predicted ${names[digit.predicted]}`;
    figure.append(thumb, caption);
    figure.addEventListener("click", () => loadDigit(digit.index, figure));
    $("gallery").append(figure);
  }
}

$("clear").addEventListener("click", () => {
  clear(); state.exact = null; $("source").textContent = "a blank canvas"; update();
});
$("random").addEventListener("click", () => loadDigit("random", null));
$("upload").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  try {
    const image = await api("/api/upload", { method: "POST", body: file });
    $("source").textContent = `${file.name}${image.inverted ? " (inverted: dark ink on light paper)" : ""}`;
    show(image);
  } catch (err) { $("status").textContent = `error: ${err.message}`; }
  e.target.value = "";
});

api("/api/model").then((model) => {
  build(model);
  clear();
  update();
  if (model.digits) loadGallery().catch((e) => { $("status").textContent = `gallery: ${e.message}`; });
}).catch((e) => { $("status").textContent = `error: ${e.message}`; });
