// The session room: the live connection's state, the phase timer, changes sent to the API,
// the client's contract drafts, corrections of the transcript and of the themes.
import "./forms.js";
import "./timer.js";
import "./contract.js";
import "./segments.js";
import "./themes.js";
import "./draft.js";

const room = document.getElementById("room");
const state = document.getElementById("live-state");

function show(kind) {
  if (!state) return;
  state.textContent = state.dataset[kind];
  state.classList.toggle("lost", kind === "lost");
  state.dataset.state = kind;
}

if (room) {
  room.addEventListener("htmx:sseOpen", () => show("open"));
  room.addEventListener("htmx:sseError", () => show("lost"));
  room.addEventListener("htmx:sseClose", () => show("lost"));
  // A person removed from the group: the stream says so, the page goes back to the start.
  room.addEventListener("htmx:sseMessage", (event) => {
    if (event.detail.type === "gone") window.location.assign("/");
  });
}
