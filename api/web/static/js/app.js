// Every page: the CSRF token on every request htmx makes, the service's messages shown when a
// request fails, and times shown in the person's locale and time zone.
import { showError, csrfToken, idempotencyKey, answered } from "./api.js";
import { localiseTimes } from "./time.js";

// A form's POST keeps its Idempotency-Key until it is answered (see api.js): a resend after a
// lost connection does not create twice.
const sent = new WeakMap();

document.addEventListener("htmx:configRequest", (event) => {
  event.detail.headers["X-CSRF-Token"] = csrfToken();
  if (event.detail.verb === "post") {
    const what = `${event.detail.path}\n${JSON.stringify(event.detail.parameters || {})}`;
    sent.set(event.detail.elt, what);
    event.detail.headers["Idempotency-Key"] = idempotencyKey(what);
  }
});

document.addEventListener("htmx:afterRequest", (event) => {
  const what = sent.get(event.detail.elt);
  if (what && event.detail.xhr && event.detail.xhr.status !== 0) answered(what);
});

document.addEventListener("htmx:responseError", (event) => {
  showError(event.detail.xhr.responseText, event.detail.xhr.status);
});

document.addEventListener("htmx:sendError", () => showError(null, 0));

// A panel reloads when the event stream says so: what the person had open stays open, and the
// keyboard's focus comes back to the same control (by id), with what was being typed or chosen
// there, instead of falling to the page.
const kept = new WeakMap();
const FIELDS = new Set(["INPUT", "TEXTAREA", "SELECT"]);

document.addEventListener("htmx:beforeSwap", (event) => {
  const target = event.detail.target;
  const active = document.activeElement;
  const inside = active && active.id && target.contains(active);
  kept.set(target, {
    open: [...target.querySelectorAll("details[open][id]")].map((d) => d.id),
    focus: inside ? active.id : null,
    field: inside && FIELDS.has(active.tagName) ? { value: active.value, data: { ...active.dataset } } : null,
  });
});

document.addEventListener("htmx:afterSwap", (event) => {
  const target = event.detail.target;
  localiseTimes(target);
  const was = kept.get(target);
  kept.delete(target);
  if (!was) return;
  for (const id of was.open) {
    const details = document.getElementById(id);
    if (details && details.tagName === "DETAILS") details.open = true;
  }
  const again = was.focus && document.getElementById(was.focus);
  if (!again) return;
  if (was.field && again.tagName !== "SELECT") again.value = was.field.value;
  else if (was.field && [...again.options].some((o) => o.value === was.field.value)) {
    again.value = was.field.value;
  }
  if (was.field) Object.assign(again.dataset, was.field.data);
  if (document.activeElement !== again) again.focus({ preventScroll: true });
});
document.addEventListener("DOMContentLoaded", () => localiseTimes(document));
