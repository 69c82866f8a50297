// Phase 4, for the facilitator: move an idea to another theme by drag and drop, or with the
// keyboard through the idea's "move to" list; the event stream then reloads the themes.
// Native HTML drag and drop: a library's drag ghost sets inline styles, which the pages'
// Content-Security-Policy (style-src 'self') refuses.
import { call } from "./api.js";

function move(base, ideaId, themeId) {
  return call("PUT", `${base}/ideas/${ideaId}/theme`, { theme_id: themeId });
}

function baseOf(el) {
  const themes = el.closest(".movable-themes");
  return themes ? themes.dataset.path : null;
}

document.addEventListener("dragstart", (event) => {
  const idea = event.target.closest && event.target.closest("li.idea.movable");
  if (!idea) return;
  event.dataTransfer.setData("text/x-idea", idea.dataset.idea);
  event.dataTransfer.effectAllowed = "move";
  idea.classList.add("dragging");
});

document.addEventListener("dragend", (event) => {
  const idea = event.target.closest && event.target.closest("li.idea");
  if (idea) idea.classList.remove("dragging");
});

document.addEventListener("dragover", (event) => {
  const theme = event.target.closest && event.target.closest(".movable-themes .theme");
  if (!theme) return;
  event.preventDefault(); // a drop is allowed here
  event.dataTransfer.dropEffect = "move";
});

document.addEventListener("drop", (event) => {
  const theme = event.target.closest && event.target.closest(".movable-themes .theme");
  if (!theme) return;
  event.preventDefault();
  const ideaId = event.dataTransfer.getData("text/x-idea");
  const from = document.querySelector(`li.idea[data-idea="${CSS.escape(ideaId)}"]`);
  if (!ideaId || !from || from.closest(".theme") === theme) return;
  theme.querySelector("ul.ideas").append(from); // shown at once; the stream confirms
  move(baseOf(theme), ideaId, theme.dataset.theme).catch(() => {});
});

// The "move to" list: a choice made with the mouse, a finger or the list's popup moves the idea
// at once; the arrow keys on the closed list only browse (each would otherwise move it), and
// Enter moves it to the theme shown. Leaving the list without Enter moves nothing.
const BROWSE = new Set(["ArrowUp", "ArrowDown", "Home", "End", "PageUp", "PageDown"]);

function moveTo(select) {
  delete select.dataset.browsing;
  if (!select.value) return;
  move(baseOf(select), select.dataset.idea, select.value === "new" ? null : select.value).catch(
    () => {},
  );
}

document.addEventListener("keydown", (event) => {
  const select = event.target.closest && event.target.closest("select.idea-move");
  if (!select) return;
  if (BROWSE.has(event.key) && !event.altKey) select.dataset.browsing = "true";
  else if (event.key === "Enter" && select.dataset.browsing) {
    event.preventDefault();
    moveTo(select);
  } else delete select.dataset.browsing; // the popup opens (Alt+arrow, Space…): its choice counts
});

document.addEventListener("focusout", (event) => {
  const select = event.target.closest && event.target.closest("select.idea-move");
  if (select && select.dataset.browsing) {
    delete select.dataset.browsing;
    select.value = "";
  }
});

document.addEventListener("change", (event) => {
  const select = event.target.closest("select.idea-move");
  if (select && !select.dataset.browsing) moveTo(select);
});
