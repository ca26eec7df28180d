// Loss curves (Chart.js): training and validation loss per epoch. The version page draws the
// history its training stored; a training's page (training.js) grows one as epochs end.
export function lossChart(canvas, history = []) {
  return new window.Chart(canvas, {
    type: "line",
    data: {
      labels: history.map((h) => h.epoch),
      datasets: [
        { label: "training loss", data: history.map((h) => h.train_loss), borderColor: "#2563eb" },
        { label: "validation loss", data: history.map((h) => h.val_loss), borderColor: "#dc2626" },
      ],
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: { x: { title: { display: true, text: "epoch" } } },
    },
  });
}

const data = document.getElementById("loss-history");
const canvas = document.getElementById("loss-chart");
if (data && canvas && window.Chart) lossChart(canvas, JSON.parse(data.textContent));
