// The running phase's clock, against its timebox; past the timebox it shows the overrun.
function tick() {
  for (const el of document.querySelectorAll(".timer[data-started]")) {
    const started = Date.parse(el.dataset.started);
    if (Number.isNaN(started)) continue;
    const seconds = Math.max(0, Math.floor((Date.now() - started) / 1000));
    const mm = Math.floor(seconds / 60);
    const ss = String(seconds % 60).padStart(2, "0");
    el.textContent = `${mm}:${ss}`;
    el.classList.toggle("overrun", seconds > Number(el.dataset.timebox) * 60);
  }
}
setInterval(tick, 1000);
