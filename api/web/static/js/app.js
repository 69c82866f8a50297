// Every page: the CSRF token on every request htmx makes, the service's messages shown when a
// request fails, and times shown in the person's locale and time zone.
import { showError, csrfToken } from "./api.js";
import { localiseTimes } from "./time.js";

document.addEventListener("htmx:configRequest", (event) => {
  event.detail.headers["X-CSRF-Token"] = csrfToken();
});

document.addEventListener("htmx:responseError", (event) => {
  showError(event.detail.xhr.responseText, event.detail.xhr.status);
});

document.addEventListener("htmx:sendError", () => showError(null, 0));

document.addEventListener("htmx:afterSwap", (event) => localiseTimes(event.target));
document.addEventListener("DOMContentLoaded", () => localiseTimes(document));
