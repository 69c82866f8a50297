// A question to the group's memory: the answer, and each citation linking to where it was said.
import { call } from "./api.js";
import { localiseTimes } from "./time.js";

function citation(form, c) {
  const kinds = JSON.parse(form.dataset.kinds || "{}");
  const phases = JSON.parse(form.dataset.phases || "{}");
  const li = document.createElement("li");
  const link = document.createElement("a");
  link.href = `/groups/${form.dataset.group}/sessions/${c.session_id}#phase-${c.phase}`;
  link.textContent = `[${c.number}] ${kinds[c.kind] || c.kind} · ${phases[c.phase] || c.phase}`;
  const when = document.createElement("time");
  when.setAttribute("datetime", c.session_date);
  const snippet = document.createElement("p");
  snippet.textContent = c.snippet;
  li.append(link, " ", when, snippet);
  return li;
}

async function ask(form) {
  const question = form.elements.question.value.trim();
  const button = form.querySelector("button[type=submit]");
  if (!question || button.getAttribute("aria-disabled") === "true") return;
  const out = document.getElementById("ask-answer");
  button.setAttribute("aria-disabled", "true"); // not disabled: the focus stays on it
  form.setAttribute("aria-busy", "true");
  try {
    const answer = await call("POST", `/api/v1/groups/${form.dataset.group}/memory/ask`, { question });
    const text = document.createElement("p");
    text.className = "answer";
    text.textContent = answer.answer;
    const parts = [text];
    if (answer.citations.length) {
      const list = document.createElement("ol");
      list.className = "citations";
      for (const c of answer.citations) list.append(citation(form, c));
      parts.push(list);
    } else {
      const none = document.createElement("p");
      none.className = "muted";
      none.textContent = form.dataset.none;
      parts.push(none);
    }
    if (answer.pending) {
      const pending = document.createElement("p");
      pending.className = "muted";
      pending.textContent = form.dataset.pending.replace("{n}", answer.pending);
      parts.push(pending);
    }
    out.replaceChildren(...parts);
    localiseTimes(out);
  } catch (_) {
    /* the API's message is shown by call() */
  } finally {
    button.removeAttribute("aria-disabled");
    form.removeAttribute("aria-busy");
  }
}

document.addEventListener("submit", (event) => {
  if (event.target.id === "ask-form") {
    event.preventDefault();
    ask(event.target);
  }
});
