// netspec serve: the units of the page's maps (app.js draws the page; this file is loaded
// before it). How a layer's output is laid out as tiles, the unit under the pointer or the
// keyboard, its mark in its tile, its receptive field on the input (as `netspec show`
// gives it) and the info box that says all of it.
"use strict";

const TILE = 84;       // about how many screen pixels a feature map's longer side gets
const SIGNAL = 240;    // screen pixels of a signal's (1 x L) tile
const CELL = 9;        // screen pixels of a vector's cell
const ROW = 30;        // a vector's cells per row

// --- layout: a layer's output as tiles of maps -------------------------------------------
// (C, H, W): C tiles of H x W; (C, L): C tiles of 1 x L; anything else: one tile of its
// values in rows of ROW cells. sx, sy: screen pixels per unit across and down.
function layoutOf(shape) {
  const count = shape.reduce((a, b) => a * b, 1);
  if (shape.length === 3) {
    const [maps, h, w] = shape, side = Math.max(h, w);
    const s = side <= TILE ? clamp(Math.floor(TILE / side), 1, 12) : TILE / side;
    return { kind: "maps", maps, h, w, sx: s, sy: s, count };
  }
  if (shape.length === 2) {
    return { kind: "signal", maps: shape[0], h: 1, w: shape[1], sx: Math.min(12, SIGNAL / shape[1]), sy: 8, count };
  }
  const w = Math.min(count, ROW);
  return { kind: "vector", maps: 1, h: Math.ceil(count / w), w, sx: CELL, sy: CELL, count };
}

// Unit (y, x) of map c, or null past a vector's last unit: {c, y, x, flat}.
function unitOf(lay, c, y, x) {
  const flat = lay.kind === "vector" ? y * lay.w + x : (c * lay.h + y) * lay.w + x;
  return flat < lay.count ? { c, y, x, flat } : null;
}

// What netspec:unit says of a unit (see the top of app.js).
function unitDetail(name, lay, u) {
  if (lay.kind === "vector") return { layer: name, channel: u.flat, y: null, x: null, index: u.flat };
  return { layer: name, channel: u.c, y: lay.kind === "signal" ? null : u.y, x: u.x, index: u.flat };
}

// --- a unit: hovered, moved to with the keyboard, or chosen -------------------------------
function pointed(layer, event, choose) {
  const canvas = event.target;
  if (!(canvas instanceof HTMLCanvasElement) || !canvas.classList.contains("map")) return;
  const lay = state.layouts[layer.name], r = canvas.getBoundingClientRect();
  const x = clamp(Math.floor((event.clientX - r.left) / (r.width / lay.w)), 0, lay.w - 1);
  const y = clamp(Math.floor((event.clientY - r.top) / (r.height / lay.h)), 0, lay.h - 1);
  const unit = unitOf(lay, Number(canvas.dataset.channel), y, x);
  if (!unit) return;
  if (choose) { roving(layer.name, unit.c, false); select(layer, unit); } else show(layer, unit);
}

function show(layer, unit) {
  state.cursor[layer.name] = unit;
  state.shown = { layer: layer.name, unit };
  mark($("hover-mark"), layer.name, unit);
  info(layer, unit);
}

function select(layer, unit) {
  show(layer, unit);
  state.pinned = { layer: layer.name, unit };
  mark($("pin-mark"), layer.name, unit);
  $("unit").dataset.pinned = "true";
  const detail = unitDetail(layer.name, state.layouts[layer.name], unit);
  document.dispatchEvent(new CustomEvent("netspec:unit", { detail }));
}

function unpin() {
  state.pinned = null;
  $("pin-mark").hidden = true;
  delete $("unit").dataset.pinned;
}

// The arrow keys move the unit across a map (past its side, to the next or previous map),
// PageUp/PageDown and Home/End go to another map, Enter (or space) chooses, Escape lets go.
function keyed(layer, event) {
  const canvas = event.target, lay = state.layouts[layer.name];
  if (!(canvas instanceof HTMLCanvasElement)) return;
  const c0 = Number(canvas.dataset.channel), cur = state.cursor[layer.name];
  const at = cur && cur.c === c0 ? cur : unitOf(lay, c0, 0, 0);
  const moves = { ArrowLeft: [0, -1, 0], ArrowRight: [0, 1, 0], ArrowUp: [-1, 0, 0], ArrowDown: [1, 0, 0],
    PageUp: [0, 0, -1], PageDown: [0, 0, 1], Home: [0, 0, -lay.maps], End: [0, 0, lay.maps] };
  if (event.key === "Enter" || event.key === " ") { event.preventDefault(); select(layer, at); return; }
  if (event.key === "Escape") { unpin(); return; }
  if (!(event.key in moves)) return;
  event.preventDefault();
  const [dy, dx, dc] = moves[event.key];
  const unit = lay.kind === "vector" ? moveCell(lay, at, dy * lay.w + dx) : moveMap(lay, at, dy, dx, dc);
  show(layer, unit);
  roving(layer.name, unit.c, true);
}

function moveCell(lay, at, by) {
  const flat = clamp(at.flat + by, 0, lay.count - 1);
  return unitOf(lay, 0, Math.floor(flat / lay.w), flat % lay.w);
}

function moveMap(lay, at, dy, dx, dc) {
  let c = clamp(at.c + dc, 0, lay.maps - 1), x = at.x + dx;
  if (x < 0) [c, x] = at.c > 0 ? [at.c - 1, lay.w - 1] : [c, 0];
  if (x >= lay.w) [c, x] = at.c < lay.maps - 1 ? [at.c + 1, 0] : [c, lay.w - 1];
  return unitOf(lay, c, clamp(at.y + dy, 0, lay.h - 1), x);
}

// One map of a layer is in the tab order at a time: the one the keyboard is on.
function roving(name, c, focus) {
  const canvases = state.parts[name].canvases;
  canvases.forEach((canvas, i) => { canvas.tabIndex = i === c ? 0 : -1; });
  if (focus && document.activeElement !== canvases[c]) canvases[c].focus();
}

function focused(layer, event) {
  const canvas = event.target, lay = state.layouts[layer.name];
  if (!(canvas instanceof HTMLCanvasElement) || !canvas.matches(":focus-visible")) return;
  const c = Number(canvas.dataset.channel), cur = state.cursor[layer.name];
  if (!cur || cur.c !== c) show(layer, unitOf(lay, c, 0, 0));
  else if (!state.shown || state.shown.layer !== layer.name || state.shown.unit !== cur) show(layer, cur);
}

function hoverStrip(layer, cells, event) {
  const r = cells.getBoundingClientRect(), i = Math.floor((event.clientX - r.left) / (r.width / cells.width));
  if (!cells.codes || i < 0 || i >= cells.width) return;
  const v = fmt(value(state.last.means[layer.name], cells.codes[i])), lay = state.layouts[layer.name];
  const [what, got] = lay.kind === "vector" ? [`unit ${i}`, `value ${v}`]
    : [`map ${i}`, `mean of its ${lay.h * lay.w} units ${v}`];
  unhighlight();
  text($("unit"), [[`${layer.name} (${layer.op}), ${what}`, "b"], [got, "span"],
    ["open the layer (click) for its maps", "span"], [specText(layer), "div"]]);
}

// The info box: the unit's value, its receptive field (as `netspec show` prints it) and
// its layer's spec line; the unit's box on the input; its row of the table.
function info(layer, unit) {
  const lay = state.layouts[layer.name], encoded = state.last && state.last.layers[layer.name];
  const codes = state.last && state.last.decoded[layer.name];
  const v = codes ? value(encoded, codes[unit.flat]) : NaN;
  const box = rfBox(layer, lay, unit);
  highlight(box, layer, unit);
  const where = lay.kind === "vector" ? `unit ${unit.flat}`
    : lay.kind === "signal" ? `map ${unit.c}, position ${unit.x}` : `map ${unit.c}, row ${unit.y}, column ${unit.x}`;
  const field = box.whole ? "receptive field: the whole input"
    : `receptive field ${rfText(layer)}: rows ${box.top}..${box.bottom}, columns ${box.left}..${box.right} ` +
      `(${box.bottom - box.top + 1}x${box.right - box.left + 1})`;
  const target = $("unit");
  text(target, [[`${layer.name} (${layer.op}), ${where}`, "b"], [`value ${fmt(v)}`, "span"],
    [field, "span"], [specText(layer), "div"]]);
  target.dataset.layer = layer.name; target.dataset.value = v;
  target.dataset.unit = JSON.stringify(unitDetail(layer.name, lay, unit));
  for (const row of document.querySelectorAll("#layer-table tbody tr")) {
    row.classList.toggle("active", row.dataset.layer === layer.name);
  }
}

function text(target, lines) {
  target.replaceChildren();
  for (const [words, tag] of lines) {
    target.append(el(tag, tag === "div" ? "spec" : "", words), el("br"));
  }
}

// One axis of a unit's field as `netspec show` gives it (netspec/show/receptive.py): the
// input pixels, first..last inclusive, whose centres (i + 0.5) lie within `size` of the
// unit's centre `start + index * jump`, clipped to the input.
function span(start, jump, size, index, extent) {
  const centre = start + index * jump;
  const first = Math.ceil(centre - size / 2 - 0.5), last = Math.ceil(centre + size / 2 - 0.5) - 1;
  return [Math.max(first, 0), Math.min(last, extent - 1)];
}

// The unit's receptive field: the box in input pixels (centre start + i * jump, size wide,
// not clipped: the frame clips it) and its rows and columns, inclusive and clipped.
function rfBox(layer, lay, unit) {
  const { h, w } = state.size;
  const whole = { whole: true, y0: 0, x0: 0, height: h, width: w, top: 0, bottom: h - 1, left: 0, right: w - 1 };
  if (!layer.rf || lay.kind === "vector") return whole;
  const { size, jump, start } = layer.rf;
  const a = size.length === 2 ? 1 : 0;  // a signal's field is along W
  const [left, right] = span(start[a], jump[a], size[a], unit.x, w);
  const box = { whole: false, x0: start[a] + unit.x * jump[a] - size[a] / 2, width: size[a], left, right };
  if (size.length !== 2) return { ...box, y0: 0, height: h, top: 0, bottom: h - 1 };
  const [top, bottom] = span(start[0], jump[0], size[0], unit.y, h);
  return { ...box, y0: start[0] + unit.y * jump[0] - size[0] / 2, height: size[0], top, bottom };
}

function highlight(box, layer, unit) {
  const view = $("input");
  const boxes = [[$("rf-box"), view.clientWidth / state.size.w]];
  if (state.pad) boxes.push([$("rf-box-draw"), draw.clientWidth / state.size.w]);
  for (const [target, s] of boxes) {
    target.hidden = false;
    target.style.left = `${box.x0 * s}px`; target.style.top = `${box.y0 * s}px`;
    target.style.width = `${box.width * s}px`; target.style.height = `${box.height * s}px`;
    Object.assign(target.dataset, {
      layer: layer.name, unit: `${unit.c},${unit.y},${unit.x}`, whole: box.whole,
      y0: box.y0, x0: box.x0, height: box.height, width: box.width, scale: s,
    });
  }
}

function unhighlight() {
  state.shown = null;
  $("rf-box").hidden = true;
  $("hover-mark").hidden = true;
  if (state.pad) $("rf-box-draw").hidden = true;
}

// A unit's rectangle in CSS pixels within its tile.
function unitRect(name, channel, y, x) {
  const lay = state.layouts[name];
  if (!lay) return null;
  const [row, column] = lay.kind === "vector" ? [Math.floor(channel / lay.w), channel % lay.w] : [y || 0, x];
  return { left: column * lay.sx, top: row * lay.sy, width: lay.sx, height: lay.sy };
}

function tileFor(name, channel) {
  const part = state.parts[name], lay = state.layouts[name];
  if (!part || !part.canvases || !state.open.has(name)) return null;
  return part.canvases[lay.kind === "vector" ? 0 : channel] || null;
}

// Mark a unit in its tile: the mark moves into the tile, at least 5 pixels wide.
function mark(target, name, unit) {
  const lay = state.layouts[name], d = unitDetail(name, lay, unit), tile = tileFor(name, d.channel);
  if (!tile) { target.hidden = true; return; }
  const r = unitRect(name, d.channel, unit.y, unit.x), grow = (s) => Math.max(0, (5 - s) / 2);
  tile.parentElement.append(target);
  Object.assign(target.style, { left: `${r.left - grow(r.width)}px`, top: `${r.top - grow(r.height)}px`,
    width: `${Math.max(r.width, 5)}px`, height: `${Math.max(r.height, 5)}px` });
  Object.assign(target.dataset, { layer: name, channel: d.channel, index: d.index });
  target.hidden = false;
}
