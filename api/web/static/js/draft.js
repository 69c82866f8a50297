// Phase 5, for the client: while the model writes the draft synthesis, how far it has got,
// from the API's synthesis stream; the panel itself reloads when the draft is stored.
let stream = null;

function follow(root) {
  const progress = root.querySelector("#draft-progress[data-stream]");
  if (!progress || stream) return;
  stream = new EventSource(progress.dataset.stream);
  const stop = () => {
    if (stream) stream.close(); // the server ends the stream: no reconnection wanted
    stream = null;
  };
  stream.addEventListener("progress", (event) => {
    const { written } = JSON.parse(event.data);
    const shown = document.getElementById("draft-progress");
    if (shown) shown.textContent = shown.dataset.label.replace("{n}", String(written));
  });
  for (const name of ["draft", "error", "done"]) stream.addEventListener(name, stop);
  stream.onerror = stop;
}

document.addEventListener("htmx:afterSwap", (event) => follow(event.target));
