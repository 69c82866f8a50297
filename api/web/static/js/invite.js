// One-time sign-in links: adding a person to a group (facilitator), creating a person
// (administrator), or a new link for someone. The API answers the link once; it is shown
// with its expiry and a copy button (copy.js), never stored by the page.
import { call } from "./api.js";
import { localiseTimes } from "./time.js";

export function showLink(slot, invitation) {
  const template = document.getElementById("link-box");
  if (!slot || !template) return null;
  const box = template.content.firstElementChild.cloneNode(true);
  box.querySelector(".link-for").textContent = box.dataset.for.replace("{name}", invitation.name);
  box.querySelector(".link-url").value = invitation.url;
  box.querySelector(".link-expiry").setAttribute("datetime", invitation.expires_at);
  slot.replaceChildren(box);
  localiseTimes(box);
  box.querySelector("button[data-copy]").focus();
  return box;
}

function appendMember(name, roleLabel) {
  const list = document.getElementById("member-list");
  if (!list) return;
  const li = document.createElement("li");
  const who = document.createElement("span");
  who.className = "member-name";
  who.textContent = name;
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.textContent = roleLabel;
  li.append(who, " ", badge);
  list.append(li);
}

async function addPerson(form) {
  const name = form.elements.name.value.trim();
  const role = form.elements.role;
  if (!name) return;
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const invitation = await call("POST", form.dataset.invitePath, { name, role: role.value });
    appendMember(invitation.name, role.options[role.selectedIndex].text);
    showLink(document.getElementById("add-person-link"), invitation);
    form.elements.name.value = "";
  } catch (_) {
    /* the API's message is shown by call() */
  } finally {
    button.disabled = false;
  }
}

async function newLink(button) {
  const userId = button.dataset.newLink;
  button.disabled = true;
  try {
    const invitation = await call("POST", `/api/v1/users/${encodeURIComponent(userId)}/invitations`);
    showLink(document.getElementById(`link-slot-${userId}`), invitation);
  } catch (_) {
    /* shown by call() */
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.id === "add-person") {
    event.preventDefault();
    addPerson(form);
  }
});

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-new-link]");
  if (button) newLink(button);
});
