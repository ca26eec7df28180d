// The model page's playground: builds the inputs from the form (or the drawing), asks the
// gateway for a prediction with the session's CSRF token, and shows the answer as a bar chart.

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

// ---- asking and showing --------------------------------------------------------------------

function inputs() {
  if (drawing) return [[drawing.values()]];
  const textarea = form.querySelector("textarea[name=inputs]");
  if (textarea) return [JSON.parse(textarea.value)];
  return [Array.from(form.querySelectorAll("input[type=number]"), (el) => Number(el.value))];
}

function show(answer) {
  const predicted = answer.predictions[0];
  output.textContent = Array.isArray(predicted) ? predicted.join(", ") : String(predicted);
  output.dataset.value = output.textContent;
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
  problem.hidden = true;
  let body;
  try {
    body = JSON.stringify({ inputs: inputs() });
  } catch {
    problem.textContent = "The inputs are not valid JSON.";
    problem.hidden = false;
    return;
  }
  output.textContent = "…";
  const response = await fetch(`/models/${section.dataset.model}/playground`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": section.dataset.csrf },
    body,
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    output.textContent = "—";
    problem.textContent = answer.detail || `The gateway answered ${response.status}.`;
    problem.hidden = false;
    return;
  }
  show(answer);
});
