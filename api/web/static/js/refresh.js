// Forms that change something through the API with htmx (`data-reload="<what was done>"`):
// once the API accepts, the page reloads to show the change, and says what was done.
// Modules that call the API themselves use reloadSaying().
import { showOk } from "./api.js";

const FLASH = "companion-flash";

export function reloadSaying(text) {
  try {
    sessionStorage.setItem(FLASH, text || "");
  } catch (_) { /* private mode: reload without the message */ }
  window.location.reload();
}

document.addEventListener("htmx:afterRequest", (event) => {
  const form = event.detail.elt.closest("[data-reload]");
  if (form && event.detail.successful) reloadSaying(form.dataset.reload);
});

document.addEventListener("DOMContentLoaded", () => {
  let said = null;
  try {
    said = sessionStorage.getItem(FLASH);
    sessionStorage.removeItem(FLASH);
  } catch (_) { /* nothing kept */ }
  if (said) showOk(said);
});
