// A participant corrects a transcript segment in place (Enter saves, Escape cancels).
import { call } from "./api.js";

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.seg-edit");
  if (!button) return;
  const item = button.closest("li");
  const text = item.querySelector(".seg-text");
  const field = document.createElement("input");
  field.value = text.textContent;
  field.setAttribute("aria-label", button.textContent);
  text.replaceWith(field);
  button.hidden = true;
  field.focus();
  field.addEventListener("keydown", async (key) => {
    if (key.key === "Escape") {
      field.replaceWith(text);
      button.hidden = false;
    }
    if (key.key !== "Enter") return;
    key.preventDefault();
    try {
      await call("PATCH", button.dataset.path, { text: field.value });
      text.textContent = field.value;
      field.replaceWith(text);
      button.hidden = false;
    } catch (_) {
      // shown; the field stays for another try
    }
  });
});
