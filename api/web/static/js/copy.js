// Copy buttons (`data-copy`) beside a read-only link: the clipboard where the browser allows
// it, otherwise the link is selected so the person copies it with their keyboard.
function fieldOf(button) {
  const box = button.closest(".link-box, .copy-box");
  return box ? box.querySelector("input[readonly], textarea[readonly]") : null;
}

function say(button, text) {
  const before = button.dataset.label || button.textContent;
  button.dataset.label = before;
  button.textContent = text;
  setTimeout(() => { button.textContent = before; }, 3000);
}

async function copy(button) {
  const field = fieldOf(button);
  if (!field) return;
  try {
    if (!navigator.clipboard || !window.isSecureContext) throw new Error("no clipboard");
    await navigator.clipboard.writeText(field.value);
    say(button, button.dataset.copied || "✓");
  } catch (_) {
    field.focus();
    field.select();
    say(button, button.dataset.select || "Ctrl+C");
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (button) copy(button);
});

// A click in the link selects it whole, ready to copy by hand.
document.addEventListener("focusin", (event) => {
  const field = event.target;
  if (field.matches && field.matches(".link-box input[readonly]")) field.select();
});
