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

// The upload form: only the picked architecture's settings show. The others are disabled too,
// so that their required fields cannot block the form and they are not sent. Without this
// script every family's settings show, under a note saying which are used.
const picker = document.querySelector("select[data-config-fields]");
if (picker) {
  const groups = document.querySelectorAll("fieldset[data-architecture]");
  const textarea = document.getElementById("f-config");
  const showPicked = () => {
    for (const group of groups) {
      const picked = group.dataset.architecture === picker.value;
      group.hidden = !picked;
      group.disabled = !picked;
      if (picked && textarea) textarea.placeholder = group.dataset.example;
    }
  };
  document.getElementById("config-fields-note")?.setAttribute("hidden", "");
  picker.addEventListener("change", showPicked);
  showPicked();
}
