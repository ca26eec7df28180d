// The model page's playground: builds the inputs from the form, the drawing or a .npy file,
// asks the gateway for a prediction (or an explanation of one) with the session's CSRF token,
// and shows the answer as a bar chart, the attributions as a heat map or as bars.

const section = document.getElementById("playground");
const spec = JSON.parse(document.getElementById("playground-spec").textContent);
const form = document.getElementById("playground-form");
const output = document.getElementById("prediction");
const problem = document.getElementById("playground-error");
const canvas = document.getElementById("draw");
let chart = null;

// ---- drawing -------------------------------------------------------------------------------
// The ink lives on a canvas of its own; the visible one shows it plus, for the keyboard, the
// pen's square. The ink is drawn large and reduced the way the training images were made.

function makeDrawing(canvas) {
  const cells = { w: Number(canvas.dataset.width), h: Number(canvas.dataset.height) };
  const ink = document.createElement("canvas");
  ink.width = canvas.width;
  ink.height = canvas.height;
  const inkCtx = ink.getContext("2d");
  const view = canvas.getContext("2d");
  const cell = { w: canvas.width / cells.w, h: canvas.height / cells.h };
  const pen = { x: Math.floor(cells.w / 2), y: Math.floor(cells.h / 2), shown: false };
  let last = null;

  function paint() {
    view.fillStyle = "#fff";
    view.fillRect(0, 0, canvas.width, canvas.height);
    view.drawImage(ink, 0, 0);
    if (pen.shown) {
      view.strokeStyle = "#2563eb";
      view.lineWidth = 2;
      view.strokeRect(pen.x * cell.w + 1, pen.y * cell.h + 1, cell.w - 2, cell.h - 2);
    }
  }

  function at(event) {
    const box = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * canvas.width) / box.width,
      y: ((event.clientY - box.top) * canvas.height) / box.height,
    };
  }

  function stroke(from, to) {
    inkCtx.strokeStyle = "#000";
    inkCtx.lineCap = "round";
    inkCtx.lineJoin = "round";
    // About a cell wide: the strokes of the training digits are one to two cells.
    inkCtx.lineWidth = Math.max(cell.w, cell.h) * 0.9;
    inkCtx.beginPath();
    inkCtx.moveTo(from.x, from.y);
    inkCtx.lineTo(to.x, to.y);
    inkCtx.stroke();
    paint();
  }

  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    last = at(event);
    stroke(last, last);
    event.preventDefault();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!last) return;
    const here = at(event);
    stroke(last, here);
    last = here;
  });
  for (const type of ["pointerup", "pointercancel"]) {
    canvas.addEventListener(type, () => { last = null; });
  }
  // A finger drawing must not scroll the page.
  canvas.style.touchAction = "none";

  canvas.addEventListener("focus", () => { pen.shown = true; paint(); });
  canvas.addEventListener("blur", () => { pen.shown = false; paint(); });
  canvas.addEventListener("keydown", (event) => {
    const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (event.key in moves) {
      const [dx, dy] = moves[event.key];
      pen.x = Math.min(cells.w - 1, Math.max(0, pen.x + dx));
      pen.y = Math.min(cells.h - 1, Math.max(0, pen.y + dy));
    } else if (event.key === " ") {
      inkCtx.fillStyle = "#000";
      inkCtx.fillRect(pen.x * cell.w, pen.y * cell.h, cell.w, cell.h);
    } else if (event.key === "Delete" || event.key === "Backspace") {
      clear();
    } else {
      return;
    }
    event.preventDefault();
    paint();
  });

  function clear() {
    inkCtx.clearRect(0, 0, ink.width, ink.height);
    paint();
  }

  // The drawing as the model's input: its ink's bounding box scaled to fill the grid (as the
  // training images were normalised), oversampled 4x, thresholded, and each cell the share of
  // inked subpixels times the value of full ink. For 8x8 and a top of 16 this is how
  // scikit-learn's digits were made: 32x32 bitmaps counted in 4x4 blocks.
  function values() {
    const image = inkCtx.getImageData(0, 0, ink.width, ink.height).data;
    let top = ink.height, left = ink.width, bottom = -1, right = -1;
    for (let y = 0; y < ink.height; y++) {
      for (let x = 0; x < ink.width; x++) {
        if (image[(y * ink.width + x) * 4 + 3] > 127) {
          top = Math.min(top, y); bottom = Math.max(bottom, y);
          left = Math.min(left, x); right = Math.max(right, x);
        }
      }
    }
    const grid = Array.from({ length: cells.h }, () => new Array(cells.w).fill(0));
    if (bottom < 0) return grid;
    const over = 4;
    const small = document.createElement("canvas");
    small.width = cells.w * over;
    small.height = cells.h * over;
    const smallCtx = small.getContext("2d");
    // MNIST-like 28x28 digits sit in a 20x20 box; the 8x8 digits fill their grid.
    const fill = cells.w >= 28 ? 20 / 28 : 1;
    const boxW = right - left + 1, boxH = bottom - top + 1;
    const scale = (Math.min(small.width, small.height) * fill) / Math.max(boxW, boxH);
    const w = boxW * scale, h = boxH * scale;
    smallCtx.drawImage(ink, left, top, boxW, boxH,
      (small.width - w) / 2, (small.height - h) / 2, w, h);
    const pixels = smallCtx.getImageData(0, 0, small.width, small.height).data;
    const top_value = Number(canvas.dataset.max);
    for (let y = 0; y < small.height; y++) {
      for (let x = 0; x < small.width; x++) {
        if (pixels[(y * small.width + x) * 4 + 3] > 127) {
          grid[Math.floor(y / over)][Math.floor(x / over)] += top_value / (over * over);
        }
      }
    }
    return grid;
  }

  paint();
  return { clear, values };
}

const drawing = canvas ? makeDrawing(canvas) : null;
document.getElementById("clear")?.addEventListener("click", () => drawing.clear());

// ---- a .npy file ---------------------------------------------------------------------------
// Sent as it is, except that one row without a batch axis gets one: np.save(x[0]) is as
// natural as np.save(x[:1]).

const fileInput = document.getElementById("f-npy");
const forget = document.getElementById("forget-npy");
const fileNote = document.getElementById("f-npy-note");
const fileHint = fileNote.textContent;
let npy = null;

function npyHeader(bytes) {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) return null;
  const wide = bytes[6] >= 2;
  const start = wide ? 12 : 10;
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  const length = wide ? view.getUint32(8, true) : view.getUint16(8, true);
  const text = new TextDecoder(bytes[6] >= 3 ? "utf-8" : "latin1")
    .decode(bytes.subarray(start, start + length));
  const found = text.match(/'shape':\s*\(([^)]*)\)/);
  if (!found) return null;
  const dims = found[1].split(",").map((d) => d.trim()).filter(Boolean).map(Number);
  return { text, dims, data: start + length };
}

// The header again with a leading axis of 1, padded (as numpy pads it) to a multiple of 64.
function withRowAxis(bytes, header) {
  const shape = `(${[1, ...header.dims].join(", ")})`;
  let text = header.text.replace(/'shape':\s*\([^)]*\)/, `'shape': ${shape}`).trimEnd();
  const pad = (64 - ((12 + text.length + 1) % 64)) % 64;
  text = text + " ".repeat(pad) + "\n";
  const encoded = new TextEncoder().encode(text);
  const out = new Uint8Array(12 + encoded.length + bytes.length - header.data);
  out.set(bytes.subarray(0, 6));
  out[6] = 2; out[7] = 0;
  new DataView(out.buffer).setUint32(8, encoded.length, true);
  out.set(encoded, 12);
  out.set(bytes.subarray(header.data), 12 + encoded.length);
  return out;
}

function forgetFile() {
  npy = null;
  fileInput.value = "";
  forget.hidden = true;
  fileNote.textContent = fileHint;
}

fileInput.addEventListener("change", async () => {
  const file = fileInput.files[0];
  if (!file) { forgetFile(); return; }
  let bytes = new Uint8Array(await file.arrayBuffer());
  const header = npyHeader(bytes);
  let rows = null;
  if (header && header.dims.length === spec.shape.length) {
    bytes = withRowAxis(bytes, header);
    rows = 1;
  } else if (header) {
    rows = header.dims[0];
  }
  npy = { bytes, name: file.name, rows };
  forget.hidden = false;
  // The gateway checks the array; this only says what will be sent.
  fileNote.textContent = header
    ? `${file.name}: ${rows} row${rows === 1 ? "" : "s"}, sent by Predict and Explain instead of the inputs above.`
    : `${file.name} does not look like a .npy array; the gateway will say why if it is sent.`;
});
forget.addEventListener("click", forgetFile);

// ---- asking and showing --------------------------------------------------------------------

let lastInputs = null;

function inputs() {
  if (drawing) return [[drawing.values()]];
  const textarea = form.querySelector("textarea[name=inputs]");
  if (textarea) return [JSON.parse(textarea.value)];
  return [Array.from(form.querySelectorAll(".vector input[type=number]"), (el) => Number(el.value))];
}

// The request's body and content type; null (with the problem shown) when the inputs are bad.
function request() {
  if (npy) {
    lastInputs = null;
    return { body: npy.bytes, type: "application/x-npy" };
  }
  try {
    lastInputs = inputs();
    return { body: JSON.stringify({ inputs: lastInputs }), type: "application/json" };
  } catch {
    fail("The inputs are not valid JSON.");
    return null;
  }
}

function fail(text) {
  output.textContent = "—";
  delete output.dataset.value;
  problem.textContent = text;
  problem.hidden = false;
}

async function ask(url, sent) {
  problem.hidden = true;
  output.textContent = "…";
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": sent.type, "X-CSRF-Token": section.dataset.csrf },
    body: sent.body,
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    fail(answer.detail || `The gateway answered ${response.status}.`);
    return null;
  }
  return answer;
}

function show(answer) {
  const predicted = answer.predictions[0];
  output.textContent = Array.isArray(predicted) ? predicted.join(", ") : String(predicted);
  output.dataset.value = output.textContent;
  const rows = document.getElementById("prediction-rows");
  rows.hidden = answer.predictions.length < 2;
  rows.textContent = `The first of ${answer.predictions.length} rows.`;
  if (spec.task !== "classification" || !window.Chart) return;
  const probabilities = answer.outputs[0];
  const labels = spec.labels.length ? spec.labels : probabilities.map((_, i) => String(i));
  if (!chart) {
    chart = new window.Chart(document.getElementById("probabilities"), {
      type: "bar",
      data: { labels, datasets: [{ label: "probability", data: probabilities, backgroundColor: "#2563eb" }] },
      options: { animation: false, maintainAspectRatio: false, scales: { y: { min: 0, max: 1 } } },
    });
  } else {
    chart.data.datasets[0].data = probabilities;
    chart.update();
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const sent = request();
  if (!sent) return;
  const answer = await ask(`/models/${section.dataset.model}/playground`, sent);
  if (answer) show(answer);
});

// ---- explanations --------------------------------------------------------------------------
// The first row's attributions: over a grid (an image, or a sequence of steps) as a heat map,
// red where the value raised the explained output and blue where it lowered it, stronger the
// larger its share of the largest; over a vector as one bar per feature.

const POSITIVE = [220, 38, 38];
const NEGATIVE = [37, 99, 235];
let bars = null;

function flatten(value) {
  return Array.isArray(value) ? value.flatMap(flatten) : [value];
}

// A grid [rows][columns] from one row's attributions, summing channels (first axis) away.
function asGrid(row) {
  if (!Array.isArray(row) || !Array.isArray(row[0])) return null;
  if (!Array.isArray(row[0][0])) return row;
  return row[0].map((line, y) => line.map((_, x) => row.reduce((sum, channel) => sum + channel[y][x], 0)));
}

function strongest(values, name) {
  const order = values.map((v, i) => [v, i]).sort((a, b) => Math.abs(b[0]) - Math.abs(a[0]));
  return order.slice(0, 3).map(([v, i]) => `${name(i)} (${v >= 0 ? "+" : ""}${v.toPrecision(2)})`).join(", ");
}

function heatMap(grid, ink) {
  const map = document.getElementById("attribution-map");
  const h = grid.length, w = grid[0].length;
  const cell = Math.max(1, Math.floor(280 / Math.max(h, w)));
  map.width = w * cell;
  map.height = h * cell;
  const ctx = map.getContext("2d");
  const peak = Math.max(...grid.flat().map(Math.abs)) || 1;
  const top = ink ? Math.max(...ink.flat(), 1e-9) : 1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      // The drawing underneath in grey, so the colours sit on the strokes they explain.
      const shade = ink ? Math.round(255 - 150 * Math.min(1, ink[y][x] / top)) : 255;
      ctx.fillStyle = `rgb(${shade} ${shade} ${shade})`;
      ctx.fillRect(x * cell, y * cell, cell, cell);
      const value = grid[y][x];
      const [r, g, b] = value >= 0 ? POSITIVE : NEGATIVE;
      ctx.fillStyle = `rgb(${r} ${g} ${b} / ${(0.85 * Math.abs(value)) / peak})`;
      ctx.fillRect(x * cell, y * cell, cell, cell);
    }
  }
  map.dataset.cells = String(h * w);
  map.dataset.peak = String(peak);
  map.hidden = false;
  const flat = grid.flat();
  return strongest(flat, (i) => `row ${Math.floor(i / w) + 1}, column ${(i % w) + 1}`);
}

function barChart(values) {
  const box = document.getElementById("attribution-bars-box");
  box.hidden = false;
  // A bar a line high, whatever the number of features.
  box.style.height = `${Math.max(8, values.length * 1.4 + 3)}rem`;
  const labels = values.map((_, i) => `x${i}`);
  const colors = values.map((v) => `rgb(${(v >= 0 ? POSITIVE : NEGATIVE).join(" ")})`);
  if (window.Chart) {
    if (bars) bars.destroy();
    bars = new window.Chart(document.getElementById("attribution-bars"), {
      type: "bar",
      data: { labels, datasets: [{ label: "attribution", data: values, backgroundColor: colors }] },
      options: { indexAxis: "y", animation: false, maintainAspectRatio: false },
    });
  }
  box.dataset.bars = String(values.length);
  return strongest(values, (i) => `x${i}`);
}

function showExplanation(answer) {
  const figure = document.getElementById("explanation");
  const row = answer.attributions[0];
  const grid = asGrid(row);
  document.getElementById("attribution-map").hidden = true;
  document.getElementById("attribution-bars-box").hidden = true;
  let top;
  if (grid) {
    const drawn = drawing && lastInputs ? lastInputs[0][0] : null;
    top = heatMap(grid, drawn);
  } else {
    top = barChart(flatten(row));
  }
  const method = answer.method.replace("_", " ");
  document.getElementById("explanation-caption").textContent =
    `Why ${answer.target[0]}: ${method}. Red raised its score, blue lowered it.`;
  document.getElementById("explanation-strongest").textContent = `Strongest: ${top}.`;
  figure.hidden = false;
  figure.dataset.shown = "true";
}

document.getElementById("explain").addEventListener("click", async () => {
  // An old explanation must not stand beside a new answer it does not explain.
  document.getElementById("explanation").hidden = true;
  const sent = request();
  if (!sent) return;
  const answer = await ask(`/models/${section.dataset.model}/playground/explain`, sent);
  if (!answer) return;
  show(answer);
  showExplanation(answer);
});
