// A training's page: follows its events stream (every past event first, then each epoch as
// it ends) to move the progress bar, the ETA and the loss curves, until the end event.
import { lossChart } from "./charts.js";

const root = document.getElementById("training");
const canvas = document.getElementById("live-loss-chart");
if (root && canvas && window.Chart) {
  const chart = lossChart(canvas);
  const text = (id, value) => { document.getElementById(id).textContent = value; };
  const progress = document.getElementById("training-progress");
  const showProgress = (fraction) => {
    progress.value = fraction;
    text("training-percent", `${Math.round(fraction * 100)} %`);
  };
  const duration = (seconds) => {
    if (seconds < 1) return "less than a second";
    if (seconds < 90) return `about ${Math.round(seconds)} s`;
    return `about ${Math.round(seconds / 60)} min`;
  };
  const events = new EventSource(root.dataset.events);
  events.addEventListener("epoch", (message) => {
    const epoch = JSON.parse(message.data);
    showProgress(epoch.progress);
    text("training-epoch", `${epoch.epoch} of ${epoch.epochs}`);
    text("training-eta", epoch.epoch < epoch.epochs ? duration(epoch.eta_s) : "finishing");
    text("training-status", "running");
    chart.data.labels.push(epoch.epoch);
    chart.data.datasets[0].data.push(epoch.train_loss);
    chart.data.datasets[1].data.push(epoch.val_loss);
    chart.update();
    canvas.dataset.points = String(chart.data.labels.length);
    text("loss-points", `${chart.data.labels.length} epochs drawn.`);
  });
  events.addEventListener("end", (message) => {
    // The stream ends here; closing keeps EventSource from reconnecting.
    events.close();
    const end = JSON.parse(message.data);
    const status = document.getElementById("training-status");
    status.textContent = end.status;
    status.className = `status status-${end.status}`;
    text("training-eta", "—");
    if (end.status === "succeeded") showProgress(1);
    if (end.version) {
      const link = document.createElement("a");
      link.href = `/models/${encodeURIComponent(root.dataset.model)}/versions/${end.version}`;
      link.textContent = `v${end.version}`;
      document.getElementById("training-version").replaceChildren(link);
    }
    document.getElementById("cancel-form")?.remove();
  });
}
