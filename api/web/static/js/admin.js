// Administration: create a person and their first sign-in link, create a group, change a
// group's policy and audio setting. Everything goes to the JSON API (call() shows refusals).
import { call, showOk } from "./api.js";
import { showLink } from "./invite.js";
import { reloadSaying } from "./refresh.js";

async function createPerson(form) {
  const name = form.elements.name.value.trim();
  if (!name) return;
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const user = await call("POST", "/api/v1/users", { name, is_admin: form.elements.is_admin.checked });
    const invitation = await call("POST", `/api/v1/users/${encodeURIComponent(user.id)}/invitations`);
    const list = document.getElementById("people-list");
    if (list) {
      const li = document.createElement("li");
      li.textContent = user.name;
      list.append(li);
    }
    const select = document.getElementById("group-facilitator");
    if (select) select.append(new Option(user.name, user.id));
    showLink(document.getElementById("create-person-link"), invitation);
    form.elements.name.value = "";
    form.elements.is_admin.checked = false;
  } catch (_) {
    /* shown by call() */
  } finally {
    button.disabled = false;
  }
}

async function createGroup(form) {
  const body = {
    name: form.elements.name.value.trim(),
    language: form.elements.language.value,
    facilitator_ids: form.elements.facilitator.value ? [form.elements.facilitator.value] : [],
  };
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    await call("POST", "/api/v1/groups", body);
    reloadSaying(form.dataset.done);
  } catch (_) {
    button.disabled = false;
  }
}

async function savePolicy(form) {
  const body = { policy: form.elements.policy.value, keep_audio: form.elements.keep_audio.checked };
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    await call("PATCH", form.dataset.groupPolicy, body);
    showOk(form.dataset.done);
  } catch (_) {
    /* shown by call() */
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.id === "create-person") {
    event.preventDefault();
    createPerson(form);
  } else if (form.id === "create-group") {
    event.preventDefault();
    createGroup(form);
  } else if (form.dataset.groupPolicy) {
    event.preventDefault();
    savePolicy(form);
  }
});
