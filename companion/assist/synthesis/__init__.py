"""The client's draft synthesis: an outline at once, the model's part kept current.

- The outline needs no language model: the contract, the themes with every idea, and which
  themes and ideas are closest to the contract (embeddings). It is there within a second.
- The model's part (theme labels, questions to ponder, a draft action plan of 2-4 actions)
  cites ideas by reference and is checked. It is made while phase 4 runs (the runner) and
  stored sealed with the `basis` it was made from, so when the phase ends the draft is usually
  already there.

The modules, each with one job:

- `inputs`: what a draft is made from (contract, ideas by theme) and the basis naming it;
- `outline`: what is closest to the contract, for the outline given at once;
- `drafting`: prompting the model for its part and checking the answer, in full or as an update;
- `runs`: the draft runs under way in this process (one per session, progress, giving up);
- `service`: the stored draft, the view of it, and what the routes and the runner call;
- `runner`: the background thread that keeps ideas and drafts current;
- `schemas`: the view the API answers with, the model's answer, what is sealed;
- `export`: the synthesis as Markdown or PDF.
"""
