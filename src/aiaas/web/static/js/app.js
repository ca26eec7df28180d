// Small behaviours every page may use; each looks for its own elements and does nothing
// where there are none.

// A button with data-copy="<input id>" copies that input's value (the new API key).
for (const button of document.querySelectorAll("button[data-copy]")) {
  button.addEventListener("click", async () => {
    const input = document.getElementById(button.dataset.copy);
    input.select();
    try {
      await navigator.clipboard.writeText(input.value);
      button.textContent = "Copied";
    } catch {
      // Without clipboard access (plain HTTP on another host) the text stays selected.
      button.textContent = "Selected: press Ctrl+C";
    }
  });
}

// The upload form: picking an architecture fills in its example config, unless the text
// was edited away from the previous example.
const select = document.querySelector("select[data-config-target]");
const catalogue = document.getElementById("architectures");
if (select && catalogue) {
  const examples = JSON.parse(catalogue.textContent);
  const textarea = document.getElementById(select.dataset.configTarget);
  let shown = select.selectedIndex;
  select.addEventListener("change", () => {
    const untouched = textarea.value.trim() === "" ||
      textarea.value.trim() === examples[shown].trim();
    if (untouched) textarea.value = examples[select.selectedIndex];
    shown = select.selectedIndex;
  });
}
