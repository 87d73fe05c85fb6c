// netspec serve: the page. Plain JavaScript, no build step, nothing fetched from outside.
// The drawing canvas is the source of truth: every change sends it (at the network's input
// size) to POST /api/run, one request in flight at a time, and every open layer is redrawn
// from the answer. A unit under the pointer (or moved to with the arrow keys) shows its
// value, its receptive field on the input (a box from the layer's size/jump/start) and the
// spec line that made its layer, and is marked in its map.
//
// A network of more than OVERVIEW units or layers opens as an overview: one strip per layer,
// a cell per map coloured by the map's mean (the answer's "means"); a layer's maps (its
// detail) are asked for, and drawn, only while it is open (click or Enter on its name or
// strip). A smaller network opens with every layer's maps.
//
// What other scripts on the page (explain.js, detector.js) may rely on:
// - Every feature map is a <canvas class="map"> one pixel per unit (scaled up by CSS) in a
//   wrapper <div class="tile"> (CSS position: relative), with data-layer="<layer name>" and
//   data-channel="<c>". A (C, H, W) layer has C tiles of H x W (a (C, 1, 1) layer C tiles of
//   one unit); a (C, L) signal C tiles of 1 x L; a vector (N) one tile, data-channel="0",
//   its units in rows of up to ROW cells.
// - A unit clicked, or chosen with Enter: document gets CustomEvent("netspec:unit", {detail:
//   {layer, channel, y, x, index}}); index is the unit's flat index in the layer's output,
//   channel, y, x its map, row and column; a signal's y is null; a vector's channel is its
//   index, and its y and x are null.
// - After every model load "netspec:model" (detail: GET /api/model's JSON); after every
//   answer is drawn "netspec:answer" (detail: POST /api/run's JSON, plus .decoded: layer name
//   -> Uint16Array of the codes, for the layers whose maps were asked for).
// - window.netspecPage = {state, tileFor(layer, channel), unitRect(layer, channel, y, x),
//   open(layer), load(image)}: tileFor gives the map's canvas (a vector's one tile for any
//   channel; null while the layer is closed); unitRect a unit's rectangle {left, top, width,
//   height} in CSS pixels within its tile; open(layer) opens a layer and resolves to
//   tileFor(layer, 0) once its maps are drawn; load(image) makes an image of the input's size
//   ({pixels: base64 of its H*W*C bytes}, as GET /api/digit/N gives) the page's input.
// units.js (loaded first) lays the maps out and handles their units.
"use strict";

const LEVELS = 65535;  // the server's 16-bit codes: 0 is a layer's minimum, 65535 its maximum
const VIEW = 224;      // screen pixels of the "as the network sees it" canvas's longer side
const BESIDE_PAD = 140;  // ... when the drawing pad above already shows the input large
const STRIP = 6;       // screen pixels of a map's cell in a layer's overview strip
const TOP_K = 10;      // class bars of a network with more classes: the most probable ones
const OVERVIEW = { units: 250000, layers: 40 };

const state = {
  model: null,      // GET /api/model
  size: null,       // {h, w, c} of the input
  pad: true,        // a drawing pad on the page: only for a 1-channel image input
  word: "image",    // the dataset's word for one sample: "digit", "garment", "image"
  exact: null,      // pixels of a loaded test digit or upload, sent as they are until drawn on
  busy: false,      // a request in flight
  pending: false,   // the canvas changed while it was in flight
  last: null,       // the last POST /api/run answer
  overview: false,  // a large network: strips, and the maps of open layers only
  open: new Set(),  // the layers whose maps are shown
  layouts: {},      // layer name -> how its maps are laid out: {kind, maps, h, w, sx, sy, count}
  parts: {},        // layer name -> its elements
  cursor: {},       // layer name -> the unit the keyboard is on, {c, y, x, flat}
  shown: null,      // the unit the info box shows: {layer, unit}
  pinned: null,     // a clicked (or Enter-chosen) unit stays shown until another is chosen
};
// Each update's milliseconds from reading the canvas to every layer drawn, and the part of
// it spent waiting for the server (request, inference, answer): read by the tests and by
// benchmarks/bench_serve.py.
window.netspec = { timings: [], waits: [], updates: 0 };

const $ = (id) => document.getElementById(id);

function el(tag, className = "", text = "") {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text) e.textContent = text;
  return e;
}

const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);

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
  const view = $("input"), scale = Math.max(1, Math.floor((state.pad ? BESIDE_PAD : VIEW) / Math.max(h, w)));
  view.width = w; view.height = h;
  view.style.width = `${w * scale}px`;
  let units = 0;
  for (const layer of model.layers) {
    state.layouts[layer.name] = layoutOf(layer.shape);
    units += state.layouts[layer.name].count;
  }
  state.overview = units > OVERVIEW.units || model.layers.length > OVERVIEW.layers;
  $("maps-note").textContent = state.overview
    ? `${model.layers.length} layers, ${units.toLocaleString("en")} units: one strip per layer, ` +
      "a cell per map coloured by its mean. Open a layer (click, or Enter on its name) for its maps."
    : "";
  const rows = document.querySelector("#layer-table tbody");
  for (const layer of model.layers) {
    $("layers").append(buildLayer(layer, state.layouts[layer.name]));
    rows.append(tableRow(layer));
    setOpen(layer.name, !state.overview);
  }
  buildBars(model.classes);
  $("random").disabled = !model.digits;
}

// A layer's box: its name (the button that opens and closes it), what it is, its strip
// (shown while closed) and its detail (the spec line, the legend and the maps).
function buildLayer(layer, lay) {
  const box = el("div", "layer");
  box.id = `layer-${layer.name}`; box.dataset.layer = layer.name;
  const head = el("div", "head"), toggle = el("button", "toggle");
  toggle.type = "button"; toggle.title = specText(layer);
  toggle.setAttribute("aria-controls", `detail-${layer.name}`);
  toggle.append(el("b"));
  toggle.firstChild.append(...dotted(layer.name));
  const about = el("span", "about", `${layer.op} ${layer.shape.join("x")}, receptive field ${rfText(layer)}`);
  const strip = el("span", "summary"), key = el("span", "legend"), cells = el("canvas", "strip");
  cells.width = lay.kind === "vector" ? lay.count : lay.maps; cells.height = 1;
  cells.style.width = `min(100%, ${Math.max(cells.width * STRIP, 48)}px)`;
  cells.dataset.layer = layer.name;
  strip.append(key, cells);
  head.append(toggle, about, strip);
  const detail = el("div", "detail"), tiles = el("div", "tiles");
  detail.id = `detail-${layer.name}`;
  const legendEl = el("div", "legend");
  legendEl.dataset.layer = layer.name;
  detail.append(el("div", "spec", specText(layer)), legendEl, tiles);
  box.append(head, detail);
  state.parts[layer.name] = { layer, box, toggle, strip, key, cells, detail, legend: legendEl, tiles, canvases: null };
  toggle.addEventListener("click", () => setOpen(layer.name, !state.open.has(layer.name)));
  cells.addEventListener("click", () => setOpen(layer.name, true));
  cells.addEventListener("pointermove", (e) => { if (!state.pinned) hoverStrip(layer, cells, e); });
  tiles.addEventListener("pointermove", (e) => { if (!state.pinned) pointed(layer, e, false); });
  tiles.addEventListener("click", (e) => pointed(layer, e, true));
  tiles.addEventListener("pointerleave", () => { if (!state.pinned) unhighlight(); });
  tiles.addEventListener("keydown", (e) => keyed(layer, e));
  tiles.addEventListener("focusin", (e) => focused(layer, e));
  return box;
}

function tableRow(layer) {
  const row = el("tr");
  row.dataset.layer = layer.name;
  const cells = [layer.name, layer.op, layer.shape.join("x"), rfText(layer),
    layer.params ? layer.params.toLocaleString("en") : "-", layer.macs.toLocaleString("en"),
    layer.spec ? `${layer.spec.line}` : ""];
  for (const text of cells) row.append(el("td", "", text));
  row.firstChild.replaceChildren(...dotted(layer.name));
  row.title = specText(layer);
  row.addEventListener("click", () => {
    setOpen(layer.name, true);
    state.parts[layer.name].box.scrollIntoView({ behavior: "smooth", block: "start" });
  });
  return row;
}

// A dotted layer name that may wrap after its dots: "bneck1.<wbr>conv1".
function dotted(name) {
  return name.split(/(?<=\.)/).flatMap((part, i) => (i ? [el("wbr"), part] : [part]));
}

// Open or close a layer: its tiles are made the first time it opens; a large network asks
// the server for the maps of its open layers only.
function setOpen(name, open) {
  const part = state.parts[name], lay = state.layouts[name];
  if (open) state.open.add(name); else state.open.delete(name);
  part.toggle.setAttribute("aria-expanded", `${open}`);
  part.box.classList.toggle("open", open);
  part.detail.hidden = !open; part.strip.hidden = open;
  if (!open) { paintStrip(name); return; }
  if (!part.canvases) makeTiles(part, lay);
  const codes = state.last && state.last.decoded[name];
  if (codes) paintLayer(name, codes);
  else if (state.overview) update();  // its maps were not asked for yet
}

function makeTiles(part, lay) {
  part.canvases = [];
  for (let c = 0; c < lay.maps; c++) {
    const tile = el("div", "tile"), canvas = el("canvas", "map");
    canvas.dataset.layer = part.layer.name; canvas.dataset.channel = c;
    canvas.width = lay.w; canvas.height = lay.h;
    canvas.style.width = `${lay.w * lay.sx}px`; canvas.style.height = `${lay.h * lay.sy}px`;
    canvas.tabIndex = c === 0 ? 0 : -1;
    canvas.setAttribute("aria-label", `${part.layer.name}, map ${c}: arrow keys move, Enter chooses`);
    tile.append(canvas);
    part.tiles.append(tile);
    part.canvases.push(canvas);
  }
}

function buildBars(classes) {
  const bars = $("bars");
  bars.replaceChildren();
  if (!classes) { bars.textContent = "(no classes: the last layer's maps are on the page)"; return; }
  const many = classes.length > TOP_K, longest = Math.max(...classes.map((n) => n.length));
  $("bars-note").textContent = many ? `(the top ${TOP_K} of ${classes.length.toLocaleString("en")} classes)` : "";
  bars.style.setProperty("--name", `${clamp(longest * 0.6, 2, 8)}rem`);
  for (let i = 0; i < (many ? TOP_K : classes.length); i++) {
    const row = el("div", "bar");
    row.dataset.class = classes[i];
    row.append(el("span", "name", classes[i]), el("span", "fill"), el("span", "p"));
    bars.append(row);
  }
}

// --- drawing the answer -------------------------------------------------------------------
function paintLayer(name, codes) {
  const part = state.parts[name], lay = state.layouts[name], per = lay.h * lay.w;
  const img = new ImageData(lay.w, lay.h), px = img.data;  // every map's pixels, in turn
  for (let c = 0; c < lay.maps; c++) {
    for (let i = 0; i < per; i++) {
      const at = c * per + i;
      if (at >= lay.count) break;
      const k = (codes[at] >> 8) * 3;
      px[i * 4] = LUT[k]; px[i * 4 + 1] = LUT[k + 1]; px[i * 4 + 2] = LUT[k + 2]; px[i * 4 + 3] = 255;
    }
    part.canvases[c].getContext("2d").putImageData(img, 0, 0);
  }
  legend(part.legend, state.last.layers[name]);
}

// A closed layer's strip: each map's mean, on the scale of the means (its own legend).
function paintStrip(name) {
  const part = state.parts[name];
  if (!state.last || !state.last.means || !state.last.means[name]) return;
  const encoded = state.last.means[name], codes = decode(encoded);
  const ctx = part.cells.getContext("2d"), img = ctx.createImageData(part.cells.width, 1);
  for (let i = 0; i < Math.min(codes.length, part.cells.width); i++) {
    const k = (codes[i] >> 8) * 3;
    img.data.set([LUT[k], LUT[k + 1], LUT[k + 2], 255], i * 4);
  }
  ctx.putImageData(img, 0, 0);
  part.cells.codes = codes;
  legend(part.key, encoded);
}

function legend(target, encoded) {
  target.replaceChildren();
  const bar = el("canvas");
  bar.width = 256; bar.height = 1;
  const ctx = bar.getContext("2d"), img = ctx.createImageData(256, 1);
  for (let i = 0; i < 256; i++) img.data.set([LUT[i * 3], LUT[i * 3 + 1], LUT[i * 3 + 2], 255], i * 4);
  ctx.putImageData(img, 0, 0);
  target.dataset.min = encoded.min; target.dataset.max = encoded.max;
  target.append(el("span", "lo", fmt(encoded.min)), bar, el("span", "hi", fmt(encoded.max)));
  if (encoded.nonfinite) target.append(el("span", "", `(${encoded.nonfinite} not finite)`));
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
  state.last = answer;
  for (const layer of state.model.layers) {
    const encoded = answer.layers[layer.name];
    if (encoded) answer.decoded[layer.name] = decode(encoded);
    if (!state.open.has(layer.name)) paintStrip(layer.name);
    else if (encoded) paintLayer(layer.name, answer.decoded[layer.name]);
  }
  bars(answer.probabilities);
  if (state.shown) info(state.parts[state.shown.layer].layer, state.shown.unit);
  document.dispatchEvent(new CustomEvent("netspec:answer", { detail: answer }));
}

function bars(probabilities) {
  const classes = state.model.classes, out = $("prediction");
  if (!classes || !probabilities) { out.textContent = ""; delete out.dataset.class; return; }
  const order = probabilities.map((_, i) => i);
  if (classes.length > TOP_K) order.sort((a, b) => probabilities[b] - probabilities[a]);
  let best = 0;
  probabilities.forEach((p, i) => { if (p > probabilities[best]) best = i; });
  out.textContent = `prediction: ${classes[best]} (${(100 * probabilities[best]).toFixed(1)}%)`;
  out.dataset.class = classes[best];
  document.querySelectorAll("#bars .bar").forEach((row, k) => {
    const i = order[k];
    row.dataset.class = classes[i]; row.dataset.index = i; row.dataset.p = probabilities[i];
    row.querySelector(".name").textContent = classes[i];
    row.title = classes[i];
    row.querySelector(".fill").style.width = `${(probabilities[i] * 60).toFixed(1)}%`;
    row.querySelector(".p").textContent = `${(100 * probabilities[i]).toFixed(1)}%`;
    row.classList.toggle("top", i === best);
  });
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
function showImage(image) {
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
  const asked = { height: h, width: w, channels: c, pixels: b64(pixels()) };
  if (state.overview) asked.layers = [...state.open];
  api("/api/run", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(asked) })
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

async function loadDigit(which, figure) {
  try {
    const digit = await api(`/api/digit/${which}`);
    const label = digit.label === null ? "" : `, label ${state.model.classes ? state.model.classes[digit.label] : digit.label}`;
    $("source").textContent = `test ${state.word} #${digit.index}${label}`;
    $("source").dataset.index = digit.index;
    document.querySelectorAll("#gallery figure").forEach((f) => f.classList.toggle("loaded", f === figure));
    showImage(digit);
  } catch (e) { $("status").textContent = `error: ${e.message}`; }
}

async function loadGallery() {
  const gallery = await api("/api/gallery");
  $("gallery-section").hidden = false;
  $("gallery-count").textContent = `(${gallery.errors} of ${gallery.tested.toLocaleString("en")}` +
    (gallery.digits.length < gallery.errors ? `, the first ${gallery.digits.length} shown)` : ")");
  const names = state.model.classes || [];
  for (const digit of gallery.digits) {
    const figure = el("figure");
    figure.dataset.index = digit.index;
    const thumb = el("canvas");
    thumb.width = digit.width; thumb.height = digit.height;
    const ctx = thumb.getContext("2d"), img = ctx.createImageData(digit.width, digit.height);
    const bytes = Uint8Array.from(atob(digit.pixels), (ch) => ch.charCodeAt(0));
    for (let i = 0; i < digit.width * digit.height; i++) {
      for (let ch = 0; ch < 3; ch++) img.data[i * 4 + ch] = bytes[i * digit.channels + (digit.channels === 3 ? ch : 0)];
      img.data[i * 4 + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    const caption = el("figcaption", "", `${names[digit.label] ?? digit.label}→${names[digit.predicted] ?? digit.predicted}`);
    figure.title = `test ${state.word} #${digit.index}: label ${names[digit.label]}, predicted ${names[digit.predicted]}`;
    figure.append(thumb, caption);
    figure.addEventListener("click", () => loadDigit(digit.index, figure));
    $("gallery").append(figure);
  }
}

function open(name) {
  setOpen(name, true);
  if (state.last && state.last.decoded[name]) return Promise.resolve(tileFor(name, 0));
  return new Promise((resolve) => {
    const drawn = (e) => {
      if (!e.detail.decoded[name]) return;
      document.removeEventListener("netspec:answer", drawn);
      resolve(tileFor(name, 0));
    };
    document.addEventListener("netspec:answer", drawn);
  });
}

window.netspecPage = { state, tileFor, unitRect, open, load: showImage };

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
    showImage(image);
  } catch (err) { $("status").textContent = `error: ${err.message}`; }
  e.target.value = "";
});

api("/api/model").then((model) => {
  build(model);
  document.dispatchEvent(new CustomEvent("netspec:model", { detail: model }));
  clear();
  update();
  if (model.digits) loadGallery().catch((e) => { $("status").textContent = `gallery: ${e.message}`; });
}).catch((e) => { $("status").textContent = `error: ${e.message}`; });
