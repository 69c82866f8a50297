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
      list.replaceChildren(
        ...drafts.candidates.map((candidate) => {
          const item = document.createElement("li");
          const use = document.createElement("button");
          use.type = "button";
          use.className = "use-draft secondary outline small";
          use.textContent = candidate.text;
          use.dataset.text = candidate.text;
          item.append(use);
          return item;
        }),
      );
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
