// Calls to the service's JSON API from a page: the session cookie goes by itself, the CSRF
// token from the page's meta tag; a refusal shows the service's own message.
const lang = document.documentElement.lang || "fr";
const unreachable = {
  fr: "Le service ne répond pas : vérifiez la connexion, puis réessayez.",
  en: "The service does not answer: check the connection, then try again.",
};

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

function detailOf(text) {
  try {
    const body = JSON.parse(text);
    if (typeof body.detail === "string") return body.detail;
  } catch (_) { /* not JSON: an HTML fragment or plain text */ }
  const div = document.createElement("div");
  div.innerHTML = text || "";
  return div.textContent.trim();
}

export function showError(text, status) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const p = document.createElement("p");
  p.setAttribute("role", "alert");
  p.textContent = status === 0 ? unreachable[lang] || unreachable.en : detailOf(text);
  box.replaceChildren(p);
  setTimeout(() => p.remove(), 12000);
}

export function showOk(text) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const p = document.createElement("p");
  p.className = "ok";
  p.textContent = text;
  box.replaceChildren(p);
  setTimeout(() => p.remove(), 5000);
}

// A POST keeps its Idempotency-Key until an answer comes: sent again after a lost connection
// (the same path and body), it gets the first answer instead of creating a second time.
const pending = new Map();

export function idempotencyKey(what) {
  if (!pending.has(what)) pending.set(what, crypto.randomUUID());
  return pending.get(what);
}

export function answered(what) {
  pending.delete(what);
}

export async function call(method, path, body) {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const headers = { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() };
  const what = `${path}\n${payload || ""}`;
  if (method === "POST") headers["Idempotency-Key"] = idempotencyKey(what);
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  } catch (_) {
    showError(null, 0);
    throw new Error("unreachable");
  }
  answered(what);
  const text = await response.text();
  if (!response.ok) {
    showError(text, response.status);
    throw new Error(detailOf(text));
  }
  return text ? JSON.parse(text) : null;
}
