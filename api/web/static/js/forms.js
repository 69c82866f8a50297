// Forms and buttons that change something: sent as JSON to the API (never as page posts),
// with the CSRF token; the event stream then reloads what changed. Errors show the API's message.
import { call, showOk } from "./api.js";

function valueOf(field) {
  if (field.type === "radio" || field.type === "number") return Number(field.value);
  return field.value;
}

function bodyOf(form) {
  const body = {};
  for (const field of form.elements) {
    if (!field.name || field.disabled) continue;
    if (field.type === "radio" && !field.checked) continue;
    if (field.value === "" && !field.required) continue; // optional and left empty
    body[field.name] = valueOf(field);
  }
  return body;
}

document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form.api-form");
  if (!form) return;
  event.preventDefault();
  const button = form.querySelector("[type=submit]");
  if (button) button.setAttribute("aria-busy", "true");
  try {
    await call(form.dataset.method || "POST", form.dataset.path, bodyOf(form));
    if (form.dataset.reset) {
      form.reset();
      // Ready for the next one: back to the first field when the button had the focus.
      const first = form.querySelector("textarea, input:not([type=hidden])");
      if (first && form.contains(document.activeElement)) first.focus();
    }
    if (form.dataset.done) showOk(form.dataset.done);
    form.dispatchEvent(new CustomEvent("api:done", { bubbles: true }));
  } catch (_) {
    // the message is already shown
  } finally {
    if (button) button.removeAttribute("aria-busy");
  }
});

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.api-button");
  if (!button || button.getAttribute("aria-disabled") === "true") return;
  // aria-disabled, not disabled: a disabled button loses the keyboard's focus.
  button.setAttribute("aria-busy", "true");
  button.setAttribute("aria-disabled", "true");
  try {
    await call(button.dataset.method || "POST", button.dataset.path);
  } catch (_) {
    // shown
  } finally {
    button.removeAttribute("aria-busy");
    button.removeAttribute("aria-disabled");
  }
});
