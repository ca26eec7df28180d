// The version page's loss curves, from the history the training stored (Chart.js).
const data = document.getElementById("loss-history");
const canvas = document.getElementById("loss-chart");
if (data && canvas && window.Chart) {
  const history = JSON.parse(data.textContent);
  new window.Chart(canvas, {
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
