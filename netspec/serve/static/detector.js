// netspec serve: a detector's boxes on the page. For a network that finds boxes (GET
// /api/detector answers; for a classifier it is a 404 and the page stays as it is), a panel
// beside the layers shows the input as the network sees it with the boxes of every answer
// of POST /api/run (its "detection": each box of at least the page's floor, best first, as
// `netspec detect --json` gives them; the threshold slider filters them without a request),
// and what the head looks at: a single-shot head's grid, each cell shaded by its best
// class-specific confidence, or an SSD head's default boxes, the best-scoring ones or every
// one of a map. For a two-stage detector (its answers carry "proposals") two views come
// before the boxes: its RPN's best anchors as placed, and its proposals (the RoI set), each
// box shaded by its score as `netspec show` draws them in proposals.png. "Generated scene"
// loads scene N (GET /api/scene?seed=N) into the page as a test digit is loaded, so every
// layer follows, and shows its true boxes dashed.
//
// It follows app.js through what app.js offers other scripts (see the top of app.js): the
// "netspec:model" and "netspec:answer" events and window.netspecPage (its state, and load,
// which shows an image on the page as a test digit is shown).
"use strict";

(() => {
  const VIEW = 256;  // screen pixels of the view's longer side (a whole multiple of the input)
  const STAGE_GAPS = 32;  // screen pixels between a two-stage detector's three views and their borders
  const det = {
    info: null,       // GET /api/detector
    size: null,       // {c, h, w} of the input
    scale: 1,         // screen pixels per input pixel
    answer: null,     // the last POST /api/run answer with a "detection"
    truth: null,      // the loaded scene's true boxes, while it is the page's input
    scene: null,      // the bytes app.js holds for the loaded scene (its state.exact)
    answers: 0,       // answers drawn: read by the tests
  };
  const page = () => window.netspecPage;
  const $ = (id) => document.getElementById(id);
  const make = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const rgb = (k, alpha = 1) => {
    const c = det.info.colours[k % det.info.colours.length];
    return `rgba(${c[0]}, ${c[1]}, ${c[2]}, ${alpha})`;
  };

  // --- the panel, built once the model and the detector are known ------------------------
  function build(info, model) {
    det.info = info;
    const [c, h, w] = model.input_shape;
    det.size = { c, h, w };
    // a two-stage detector's three views side by side in the column: each a third of it
    const room = info.proposals ? Math.floor(($("maps").clientWidth - STAGE_GAPS) / 3) : VIEW;
    det.scale = Math.max(1, Math.floor(Math.min(VIEW, room) / Math.max(h, w)));
    const section = make("section");
    section.id = "detector";
    section.setAttribute("aria-label", "the detector's boxes");
    const title = make("h2", "", "Detections ");
    title.append(make("span", "", ""));
    title.lastChild.id = "det-count";
    const frame = make("div", "det-frame");
    for (const [id, cw, ch] of [["det-image", w, h], ["det-heat", w * det.scale, h * det.scale],
      ["det-boxes", w * det.scale, h * det.scale]]) {
      const canvas = make("canvas");
      canvas.id = id; canvas.width = cw; canvas.height = ch;
      canvas.style.width = `${w * det.scale}px`; canvas.style.height = `${h * det.scale}px`;
      frame.append(canvas);
    }
    frame.firstChild.setAttribute("aria-label", "the input as the network sees it, with its boxes");
    const shown = info.proposals ? stages(info.proposals, frame) : frame;
    const side = make("div", "det-side");
    side.append(controls(info), make("p", "det-about", about(info)));
    const list = make("ol");
    list.id = "det-list";
    side.append(list);
    const status = make("p", "det-status");
    status.id = "det-status";
    side.append(status);
    const body = make("div", "det-body");
    body.append(shown, side);
    section.append(title, body);
    const maps = $("maps");
    maps.insertBefore(section, maps.firstChild);
    if (det.answer) render(det.answer);
  }

  // A two-stage detector's views side by side: the RPN's best anchors (where an RPN makes
  // the regions), the proposals, then the frame of the boxes.
  function stages(proposals, frame) {
    const row = make("div", "det-stages");
    if (proposals.best) {
      row.append(stage("det-rpn", `RPN: the ${proposals.best} best of ` +
        `${proposals.anchors.toLocaleString("en")} anchors, as placed`));
    }
    row.append(stage("det-rois", `proposals of ${proposals.layer}`));
    const last = make("figure", "det-stage");
    last.append(frame, make("figcaption", "", "detections"));
    row.append(last);
    return row;
  }

  function stage(id, caption) {
    const figure = make("figure", "det-stage");
    const frame = make("div", "det-frame");
    const canvas = make("canvas");
    canvas.id = id; canvas.width = det.size.w * det.scale; canvas.height = det.size.h * det.scale;
    canvas.setAttribute("aria-label", caption);
    frame.append(canvas);
    const text = make("figcaption", "", caption);
    text.id = `${id}-caption`;
    figure.append(frame, text);
    return figure;
  }

  function controls(info) {
    const box = make("div", "det-controls");
    const scene = make("button", "", "Generated scene");
    scene.id = "det-scene"; scene.type = "button";
    const seed = make("input");
    seed.id = "det-seed"; seed.type = "number"; seed.min = "0"; seed.step = "1"; seed.value = "0";
    seed.setAttribute("aria-label", "the scene's seed");
    if (!info.scenes) {
      scene.disabled = true; seed.disabled = true;
      scene.title = "no MNIST digits here to draw scenes from: serve with --data MNIST_DIR";
    } else {
      const s = info.scenes;
      scene.title = `netspec scenes --seed N --split test --size ${s.size} --digits ${s.digits.join("..")} ` +
        `--scale ${s.scale.join("..")}${s.randomize.length ? ` --randomize ${s.randomize.join(",")}` : ""}`;
    }
    scene.addEventListener("click", () => loadScene(Number(seed.value)));
    const threshold = make("input");
    threshold.id = "det-threshold"; threshold.type = "range";
    threshold.min = String(info.floor); threshold.max = "1"; threshold.step = "0.01";
    threshold.value = String(info.threshold);
    const shown = make("output", "", info.threshold.toFixed(2));
    shown.id = "det-threshold-value";
    threshold.addEventListener("input", () => { shown.textContent = Number(threshold.value).toFixed(2); redraw(); });
    const truth = checkbox("det-truth", "true boxes (dashed)", true);
    truth.hidden = true;
    box.append(row(scene, labelFor("det-seed", "seed "), seed),
      row(labelFor("det-threshold", "threshold "), threshold, shown), truth);
    if (info.grid) {
      const n = info.grid.size;
      box.append(checkbox("det-grid", `grid ${n}x${n}: each cell's best confidence`, true));
    }
    if (info.anchors) box.append(row(labelFor("det-anchors", "default boxes "), anchorChoice(info.anchors)));
    return box;
  }

  function labelFor(id, text) {
    const label = make("label", "", text);
    label.htmlFor = id;
    return label;
  }

  function row(...parts) {
    const r = make("div", "det-row");
    r.append(...parts);
    return r;
  }

  function checkbox(id, text, checked) {
    const label = make("label", "det-row");
    const input = make("input");
    input.type = "checkbox"; input.id = id; input.checked = checked;
    input.addEventListener("change", redraw);
    label.append(input, ` ${text}`);
    return label;
  }

  function anchorChoice(anchors) {
    const select = make("select");
    select.id = "det-anchors";
    select.append(new Option("the best-scoring ones", "best"), new Option("none", "none"));
    anchors.maps.forEach((m, k) => {
      select.append(new Option(`all of map ${k}: ${m.height}x${m.width}, scale ${m.scale}`, `map${k}`));
    });
    select.addEventListener("change", redraw);
    return select;
  }

  function about(info) {
    if (info.grid) return `${info.decoder}: ${info.grid.text}`;
    if (info.anchors) {
      const maps = info.anchors.maps.map((m) => `${m.height}x${m.width} (${m.sizes.length} per position)`);
      return `${info.decoder}: ${info.anchors.rows.toLocaleString("en")} default boxes on maps ` +
        `${maps.join(", ")}; the layer "${info.head}" holds their scores`;
    }
    return `decoded by ${info.decoder}`;
  }

  // --- drawing an answer ------------------------------------------------------------------
  function render(answer) {
    det.answer = answer;
    if (!det.info || !$("detector")) return;
    const state = page() && page().state;
    if (det.truth && state && state.exact !== det.scene) {
      det.truth = null;  // the page shows something else now: a drawing or an upload
      $("det-truth").parentElement.hidden = true;
    }
    drawInput(answer.input);
    redraw();
    det.answers += 1;
    $("detector").dataset.answers = det.answers;
  }

  function redraw() {
    const found = det.answer && det.answer.detection;
    if (!found) return;
    drawHeat(found);
    drawBoxes(found);
    if (found.proposals) drawStages(found.proposals);
  }

  // A box's colour for its score: from blue (0) to yellow (1), proposals.png's shades.
  const shade = (score) => {
    const t = Math.min(1, Math.max(0, score));
    return `rgb(${Math.round(40 + 215 * t)}, ${Math.round(80 + 140 * t)}, ${Math.round(200 - 200 * t)})`;
  };

  function drawStages(proposals) {
    const views = [["det-rpn", proposals.anchors], ["det-rois", proposals.boxes]];
    for (const [id, boxes] of views) {
      const canvas = $(id);
      if (!canvas || !boxes) continue;
      const ctx = canvas.getContext("2d"), s = det.scale;
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage($("det-image"), 0, 0, canvas.width, canvas.height);
      ctx.lineWidth = 2;
      for (const b of [...boxes].reverse()) {  // the best drawn last, on top
        const [x0, y0, x1, y1] = b.xyxy.map((v) => v * s);
        ctx.strokeStyle = shade(b.score);
        ctx.strokeRect(x0 + 1, y0 + 1, x1 - x0 - 2, y1 - y0 - 2);
      }
      canvas.dataset.boxes = String(boxes.length);
    }
    const scores = proposals.boxes.map((b) => b.score);
    $("det-rois-caption").textContent = `proposals of ${proposals.layer}: ${scores.length} RoIs` +
      (scores.length ? `, scores ${Math.min(...scores).toFixed(2)} to ${Math.max(...scores).toFixed(2)}` : "");
  }

  function drawInput(encoded) {
    const { c, h, w } = det.size, raw = atob(encoded.codes), bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    const codes = new Uint16Array(bytes.buffer), view = $("det-image"), ctx = view.getContext("2d");
    const img = ctx.createImageData(w, h);
    for (let i = 0; i < h * w; i++) {
      for (let ch = 0; ch < 3; ch++) img.data[i * 4 + ch] = codes[(c === 3 ? ch : 0) * h * w + i] >> 8;
      img.data[i * 4 + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }

  function shownBoxes(found) {
    const t = Number($("det-threshold").value);
    return found.boxes.filter((b) => b.score >= t);
  }

  function drawBoxes(found) {
    const canvas = $("det-boxes"), ctx = canvas.getContext("2d"), s = det.scale;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.font = "bold 11px system-ui, sans-serif"; ctx.textBaseline = "top";
    const boxes = shownBoxes(found);
    if (det.truth && $("det-truth").checked) {
      ctx.setLineDash([4, 3]); ctx.lineWidth = 1.5; ctx.strokeStyle = "rgba(255, 255, 255, 0.9)";
      for (const t of det.truth) {
        const [x0, y0, x1, y1] = t.xyxy.map((v) => v * s);
        ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
      }
      ctx.setLineDash([]);
    }
    for (const b of [...boxes].reverse()) {  // the best drawn last, on top
      const [x0, y0, x1, y1] = b.xyxy.map((v) => v * s);
      ctx.lineWidth = 2; ctx.strokeStyle = rgb(b.class);
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
      const text = `${b.label} ${b.score.toFixed(2)}`, tw = ctx.measureText(text).width + 4;
      const ty = y0 >= 13 ? y0 - 13 : y0;
      ctx.fillStyle = rgb(b.class); ctx.fillRect(x0, ty, tw, 13);
      ctx.fillStyle = "#000"; ctx.fillText(text, x0 + 2, ty + 1);
    }
    list(boxes);
  }

  function list(boxes) {
    const ol = $("det-list");
    ol.replaceChildren();
    for (const b of boxes) {
      const li = make("li", "det-item");
      const swatch = make("span", "det-swatch");
      swatch.style.background = rgb(b.class);
      const [x0, y0, x1, y1] = b.xyxy;
      li.append(swatch, `${b.label} ${b.score.toFixed(3)} at (${x0}, ${y0})-(${x1}, ${y1})`);
      Object.assign(li.dataset, { label: b.label, score: b.score, xyxy: JSON.stringify(b.xyxy) });
      ol.append(li);
    }
    const t = Number($("det-threshold").value).toFixed(2);
    $("det-count").textContent = `(${boxes.length} of score ${t} or more` +
      (det.truth ? `; ${det.truth.length} in the scene)` : ")");
  }

  function drawHeat(found) {
    const canvas = $("det-heat"), ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    let drawn = "none";
    if (found.cells && $("det-grid").checked) { grid(ctx, found.cells); drawn = "grid"; }
    const choice = $("det-anchors") ? $("det-anchors").value : "none";
    if (found.anchors && choice === "best") { best(ctx, found.anchors.best); drawn = "anchors"; }
    if (found.anchors && choice.startsWith("map")) {
      every(ctx, found.anchors.scores, Number(choice.slice(3))); drawn = choice;
    }
    $("detector").dataset.heat = drawn;
  }

  // A single-shot head's grid: each cell shaded by its best class-specific confidence (what
  // the threshold compares), its value in hundredths where the cell has room.
  function grid(ctx, cells) {
    const n = det.info.grid.size, cw = ctx.canvas.width / n, ch = ctx.canvas.height / n;
    ctx.font = "10px system-ui, sans-serif"; ctx.textBaseline = "top";
    cells.scores.forEach((score, i) => {
      const v = Math.min(1, Math.max(0, score)), x = (i % n) * cw, y = Math.floor(i / n) * ch;
      ctx.fillStyle = `rgba(255, 149, 0, ${0.08 + 0.6 * v})`;
      ctx.fillRect(x, y, cw, ch);
      if (cw >= 22 && v >= 0.05) {
        ctx.fillStyle = "#fff";
        ctx.fillText(`${Math.round(v * 100)}`, x + 2, y + 2);
      }
    });
    ctx.strokeStyle = "rgba(255, 255, 255, 0.45)"; ctx.lineWidth = 1;
    for (let k = 0; k <= n; k++) {
      ctx.beginPath(); ctx.moveTo(k * cw, 0); ctx.lineTo(k * cw, ctx.canvas.height); ctx.stroke();
      ctx.beginPath(); ctx.moveTo(0, k * ch); ctx.lineTo(ctx.canvas.width, k * ch); ctx.stroke();
    }
  }

  // An SSD head's best-scoring default boxes, dashed in their class's colour, a dot at the
  // centre of their map position.
  function best(ctx, anchors) {
    const s = det.scale;
    ctx.setLineDash([3, 3]); ctx.lineWidth = 1.5;
    for (const a of anchors) {
      const [x0, y0, x1, y1] = a.xyxy.map((v) => v * s);
      ctx.strokeStyle = rgb(a.class, 0.35 + 0.65 * Math.min(1, a.score));
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
      ctx.fillStyle = rgb(a.class, 0.9);
      ctx.fillRect((x0 + x1) / 2 - 2, (y0 + y1) / 2 - 2, 4, 4);
    }
    ctx.setLineDash([]);
  }

  // Every default box of map k, each as bright as its best class score.
  function every(ctx, scores, k) {
    const maps = det.info.anchors.maps, m = maps[k], s = det.scale, { h, w } = det.size;
    let r = 0;
    for (let j = 0; j < k; j++) r += maps[j].height * maps[j].width * maps[j].sizes.length;
    ctx.lineWidth = 1;
    for (let i = 0; i < m.height; i++) {
      for (let j = 0; j < m.width; j++) {
        const cx = ((j + 0.5) * w / m.width) * s, cy = ((i + 0.5) * h / m.height) * s;
        for (const [bw, bh] of m.sizes) {
          const v = Math.min(1, Math.max(0, scores[r++]));
          ctx.strokeStyle = `rgba(120, 200, 255, ${0.12 + 0.88 * v})`;
          ctx.strokeRect(cx - (bw * s) / 2, cy - (bh * s) / 2, bw * s, bh * s);
        }
        ctx.fillStyle = "rgba(120, 200, 255, 0.8)";
        ctx.fillRect(cx - 1, cy - 1, 2, 2);
      }
    }
  }

  // --- a generated scene --------------------------------------------------------------------
  async function loadScene(seed) {
    const status = $("det-status");
    status.textContent = "";
    try {
      const response = await fetch(`/api/scene?seed=${encodeURIComponent(seed)}`);
      const scene = await response.json();
      if (!response.ok) throw new Error(scene.error || `${response.status}`);
      det.truth = scene.truth;
      $("det-truth").parentElement.hidden = false;
      page().load(scene);
      det.scene = page().state.exact;
      const source = $("source");
      if (source) source.textContent = `generated scene, seed ${scene.seed}`;
      $("detector").dataset.seed = scene.seed;
      $("det-seed").value = String(scene.seed + 1);  // the next click, the next scene
    } catch (e) { status.textContent = `error: ${e.message}`; }
  }

  // --- following the page ------------------------------------------------------------------
  document.addEventListener("netspec:answer", (e) => { if (e.detail && e.detail.detection) render(e.detail); });
  const model = new Promise((resolve) => {
    const known = page() && page().state && page().state.model;
    if (known) resolve(known);
    else document.addEventListener("netspec:model", (e) => resolve(e.detail), { once: true });
  });
  const detector = fetch("/api/detector").then((r) => (r.ok ? r.json() : null)).catch(() => null);
  Promise.all([detector, model]).then(([info, m]) => { if (info) build(info, m); });
})();
