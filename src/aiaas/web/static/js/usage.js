// The usage page's charts (Chart.js): one per figure, a stacked bar per day with a part per
// model, drawn from the same numbers as the table under them.
const source = document.getElementById("usage-data");
const COLOURS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];

if (source && window.Chart) {
  const usage = JSON.parse(source.textContent);
  for (const canvas of document.querySelectorAll("canvas[data-figure]")) {
    const figure = canvas.dataset.figure;
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: usage.days,
        datasets: usage.models.map((model, i) => ({
          label: model.model,
          data: model[figure],
          backgroundColor: COLOURS[i % COLOURS.length],
        })),
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: {
          x: { stacked: true },
          // Counts are whole: no 0.5 predictions on the axis.
          y: { stacked: true, beginAtZero: true, ticks: figure === "compute_s" ? {} : { precision: 0 } },
        },
      },
    });
    // Tests and people alike can tell a drawn chart from an empty canvas.
    canvas.dataset.drawn = "true";
  }
}
