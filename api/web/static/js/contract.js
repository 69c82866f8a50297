// Phase 3, for the client: drafts of the one-sentence contract, one of which goes into the
// editable field before the client confirms it.
import { call } from "./api.js";

document.addEventListener("click", async (event) => {
  const draft = event.target.closest("#draft-contract");
  if (draft) {
    if (draft.getAttribute("aria-disabled") === "true") return; // already drafting
    const tool = draft.closest("#contract-tool");
    const list = tool.querySelector("#contract-drafts");
    const label = draft.textContent;
    draft.setAttribute("aria-busy", "true");
    draft.setAttribute("aria-disabled", "true"); // not disabled: the focus stays on it
    draft.textContent = draft.dataset.busy;
    try {
      const drafts = await call("POST", `${tool.dataset.path}/contract/drafts`);
      // None passed the checks: what the model proposed is shown with its reasons, to rework.
      const shown = drafts.candidates.length ? drafts.candidates : drafts.rejected;
      const items = shown.map((candidate) => {
        const item = document.createElement("li");
        const use = document.createElement("button");
        use.type = "button";
        use.className = "use-draft secondary outline small";
        use.textContent = candidate.text;
        use.dataset.text = candidate.text;
        item.append(use);
        if (candidate.problems.length) {
          const why = document.createElement("small");
          why.className = "muted";
          why.textContent = ` ${candidate.problems.join("; ")}`;
          item.append(why);
        }
        return item;
      });
      if (drafts.problem) {
        const note = document.createElement("li");
        note.className = "muted";
        note.textContent = drafts.problem;
        items.unshift(note);
      }
      list.replaceChildren(...items);
    } catch (_) {
      // shown
    } finally {
      draft.removeAttribute("aria-busy");
      draft.removeAttribute("aria-disabled");
      draft.textContent = label;
    }
    return;
  }
  const use = event.target.closest("button.use-draft");
  if (use) {
    const field = document.getElementById("contract-text");
    field.value = use.dataset.text;
    field.focus();
  }
});
