"""The model's part of a draft: the prompt, the answer's schema for this run, and its checks.

- The model writes theme labels, questions to ponder and a draft action plan of 2-4 actions,
  citing ideas by reference; a citation of anything not in the list is dropped, a statement left
  citing nothing is a problem, and problems are sent back once.
- The prompt is append-only (instructions, contract, then ideas in the order they came, the
  task last), so the model server's prefix cache makes each new run pay for new ideas only.
- Once a full run has seen most of the ideas, the few that come after it (the last turns
  before phase 4 ends) are added by an update: the model writes only what they add (labels
  for new themes, at most one action citing them), a fifth of a whole draft's tokens. The
  whole draft is made again when an idea it covers is gone, when nothing is new (the
  grouping was corrected), or when too much is new.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from companion.assist.ideas import service as ideas
from companion.assist.ideas.schemas import IdeaView
from companion.assist.synthesis import plan
from companion.assist.synthesis.inputs import Inputs
from companion.assist.synthesis.schemas import (
    MAX_ACTIONS,
    DraftAction,
    ModelAction,
    ModelDraft,
    ModelUpdate,
    Question,
    StoredDraft,
)
from companion.llm.errors import ModelOutputInvalid
from companion.llm.gateway import GroupRef, LLMGateway, Message, Progress, narrowed
from companion.method.phases import Language
from companion.prompts import data, prompt

MOST_CITED = 6  # beyond this a statement is marked `broad`: its citations say little
# What the prompt asks and the answer's schema allows: every cited reference is ~4 tokens to
# generate, and a small model pads lists with the first ideas (I1-I5) whatever it draws on.
CITE_AT_MOST = 3
# The prompt asks for 12 words a text; the schema bounds each at BRIEF_CHARS (generating is
# the slow part of a draft on a small local model).
BRIEF_CHARS = 140
TEXT_FIELDS = (
    ("ModelQuestion", "text"),
    *(("ModelAction", f) for f in ("objective", "first_step", "resources", "indicator")),
)
LABEL_MAX_WORDS = 8
# A theme of one idea keeps its key words: most themes hold one idea, and their labels were
# most of what the model wrote (each ~15 tokens, at ~8 tokens a second on 2 cores).
LABEL_FROM = 2
PURPOSE = "synthesis.draft"
# A draft is updated (compose_update) rather than made again when at most UPDATE_AT_MOST ideas
# are new, at most UPDATE_SHARE of all lack a full run, and the last full run saw UPDATE_FROM
# ideas or more (early in the phase a whole new draft is worth its time).
UPDATE_AT_MOST = 6
UPDATE_SHARE = 0.25
UPDATE_FROM = 8
# Once phase 4 has ended the client is waiting for the draft: an update (~100 tokens, ~12 s on
# 2 cores) rather than a whole draft (250-450 tokens, 25-45 s, and a retry when it fails its
# checks) as long as the last full run saw UPDATE_FROM ideas and 40 % of them, however many
# came after it (bench/eval/run.py --steady: with a turn every 10 s, 8-14 ideas came after the
# last full run, which a whole draft made 23-78 s late).
UPDATE_AT_MOST_ENDED = 40
UPDATE_LABELS = 2  # themes an update labels at most (_update_labels)
UPDATE_SHARE_ENDED = 0.6


def answer_schema(
    unlabelled: Sequence[int],
    refs: Sequence[str],
    model: type[ModelDraft] = ModelDraft,
    actions_at_most: int | None = None,
) -> type[ModelDraft]:
    """ModelDraft, with a JSON schema narrowed to this run: labels only for the `unlabelled`
    themes, citations only of known refs, one to CITE_AT_MOST each. A server that decodes under
    the schema (llama.cpp turns it into a grammar) then cannot spend tokens on what the checks
    would drop: a small model otherwise relabels every theme and cites every idea, which made
    the answer twice as long. Validation stays ModelDraft's: the checks below decide."""

    def edit(schema: dict[str, Any]) -> None:
        defs = schema["$defs"]
        schema["properties"]["labels"]["maxItems"] = len(unlabelled)
        if unlabelled:
            defs["ModelLabel"]["properties"]["theme"]["enum"] = list(unlabelled)
        for name, field in TEXT_FIELDS:
            defs[name]["properties"][field]["maxLength"] = BRIEF_CHARS
        for name in ("ModelQuestion", "ModelAction"):
            defs[name]["properties"]["ideas"].update(
                items={"type": "string", "enum": list(refs)}, minItems=1, maxItems=CITE_AT_MOST
            )
        if actions_at_most is not None:
            schema["properties"]["actions"]["maxItems"] = actions_at_most
        if model is ModelUpdate:  # the update writes no question: not even an empty list
            del schema["properties"]["questions"]
            schema["required"] = [r for r in schema.get("required", []) if r != "questions"]

    return narrowed(model, edit)


# --- the checks ------------------------------------------------------------------------------


def _broad(refs: Sequence[str], known: dict[str, str]) -> bool:
    """Citing (nearly) every idea says nothing about where a statement comes from. Small models
    do it; sending it back doubled the time without changing it (bench/eval), so it is shown."""
    return len(refs) > MOST_CITED and len(known) > MOST_CITED


def _same(text: str) -> str:
    """What makes two statements the same: a small model repeats its own, words for words."""
    return " ".join(text.casefold().split()).rstrip(" .?!")


def _distinct(
    usable: list[tuple[ModelAction, list[str], Any]],
) -> tuple[list[tuple[ModelAction, list[str], Any]], list[tuple[int, int]]]:
    """The actions, each one alike an earlier one left out (two actions that say the same are
    no plan of two); with the left-out ones as (its index, the index of the one it repeats)."""
    kept: list[int] = []
    repeats: list[tuple[int, int]] = []
    for n, (_action, _refs, vector) in enumerate(usable):
        if vector is not None and kept:
            likeness, like = max((float(vector @ usable[k][2]), k) for k in kept)
            if likeness >= plan.ALIKE:
                repeats.append((n, like))
                continue
        kept.append(n)
    return [usable[n] for n in kept], repeats


def check(
    answer: ModelDraft,
    found: Inputs,
    today: date,
    actions_needed: int = 2,
    support: plan.Support | None = None,
) -> tuple[StoredDraft, list[str]]:
    """Keep what cites known ideas; say what is wrong with the rest. With `support`, each
    action is held to the ideas it cites (plan.py): citations it is not made of, resources and
    indicators nothing said supports, and repeated actions are dropped, not sent back (a retry
    doubles the time; these are fixed here)."""
    by_ref = {i.ref: i.id for i in found.all_ideas}
    themes = {t.number: t.id for t in found.ideas.themes}
    problems: list[str] = []

    def cited(refs: Sequence[str], what: str) -> list[str] | None:
        known = list(dict.fromkeys(r.strip().strip("[]") for r in refs))
        known = [r for r in known if r in by_ref]
        if not known:
            problems.append(f"{what} cites no idea of the list")
            return None
        return known

    labels = {}
    for item in answer.labels:
        words = item.label.split()
        if item.theme in themes and 0 < len(words) <= LABEL_MAX_WORDS:
            labels[themes[item.theme]] = " ".join(words)
    questions: list[Question] = []
    for n, q in enumerate(answer.questions, start=1):
        if _same(q.text) in {_same(k.text) for k in questions}:
            continue  # said twice: once is enough
        refs = cited(q.ideas, f"question {n}")
        if refs is not None:
            questions.append(
                Question(
                    text=q.text,
                    refs=refs,
                    ideas=[by_ref[r] for r in refs],
                    broad=_broad(refs, by_ref),
                )
            )
    usable: list[tuple[ModelAction, list[str], Any]] = []  # with its refs and vector
    for n, a in enumerate(answer.actions, start=1):
        refs = cited(a.ideas, f"action {n}")
        if refs is None:
            continue
        vector = None
        if support is not None:
            vector = support.vector(a)
            refs = support.made_of(vector, refs)
            if not refs:
                continue  # made of none of what it cites
        usable.append((a, refs, vector))
    kept, repeats = _distinct(usable)
    if len(kept) < actions_needed:  # else a repeat left out is no loss
        problems += [
            f"action {n + 1} says what action {like + 1} says: each action must do something else"
            for n, like in repeats
        ]
    actions: list[DraftAction] = []
    weeks: list[int] = []
    for a, refs, _vector in kept:
        resources: str | None = a.resources
        indicator = a.indicator
        if support is not None:
            resources = support.supported(a.resources, refs) or None
            indicator = support.supported(a.indicator, refs)
        weeks.append(a.weeks)
        actions.append(
            DraftAction(
                objective=a.objective,
                first_step=a.first_step,
                resources=resources,
                indicator=indicator,
                due_date=today,
                refs=refs,
                ideas=[by_ref[r] for r in refs],
                broad=_broad(refs, by_ref),
            )
        )
    for action, delay in zip(
        actions, plan.spread(weeks, [len(a.refs) for a in actions]), strict=True
    ):
        action.due_date = today + timedelta(weeks=delay)
    if len(actions) < actions_needed:
        problems.append(f"{len(actions)} usable actions, at least {actions_needed} are needed")
    return StoredDraft(labels=labels, questions=questions, actions=actions), problems


# --- the prompt ------------------------------------------------------------------------------


def _idea_lines(found: Inputs) -> str:
    number = {i.id: t.number for t in found.ideas.themes for i in t.ideas}
    word = "thème" if found.language == Language.fr else "theme"
    return "\n".join(f"[{i.ref}] ({word} {number[i.id]}) {i.text}" for i in found.all_ideas)


def _head(found: Inputs) -> str:
    return prompt("synthesis", "draft", found.language).render(
        contract=found.contract or "-", ideas=_idea_lines(found)
    )


def _to_label(found: Inputs, unlabelled: Sequence[int]) -> str:
    """The themes to label, each with its ideas' references: a small model told only "themes
    3, 4, 5" labelled theme k after idea Ik."""
    if not unlabelled:
        return "-"
    theme, idea = ("thème", "idées") if found.language == Language.fr else ("theme", "ideas")
    refs = {t.number: ", ".join(i.ref for i in t.ideas) for t in found.ideas.themes}
    return "; ".join(f"{theme} {n} ({idea} {refs[n]})" for n in unlabelled)


def theme_basis(found: Inputs) -> dict[str, str]:
    """Each theme's ideas, as a fingerprint (theme id -> basis)."""
    return {t.id: ideas.basis_of_ids([i.id for i in t.ideas]) for t in found.ideas.themes}


def _asked(found: Inputs, numbers: Sequence[int]) -> dict[str, str]:
    """The themes of these numbers with their basis: what a run asked the model to label
    (StoredDraft.label_tried)."""
    now = theme_basis(found)
    return {t.id: now[t.id] for t in found.ideas.themes if t.number in numbers}


def _unlabelled(found: Inputs, tried: Mapping[str, str]) -> list[int]:
    """Themes neither the model nor the facilitator labelled: generating is the slow part, and
    a theme that grew keeps its label (not current) until a run has time for it; a theme of one
    idea keeps its key words (LABEL_FROM). A theme whose
    label the model already wrote for these very ideas, and which failed the check (it named
    another theme), is not asked again: it keeps its key words until its ideas change."""
    now = theme_basis(found)
    return [
        t.number
        for t in found.ideas.themes
        if t.label_source not in ideas.KEPT_LABELS
        and tried.get(t.id) != now[t.id]
        and len(t.ideas) >= LABEL_FROM
    ]


# --- a whole draft, or an update -------------------------------------------------------------


def compose(
    gateway: LLMGateway,
    group: GroupRef,
    found: Inputs,
    today: date,
    progress: Progress | None = None,
    support: plan.Support | None = None,
    tried: Mapping[str, str] | None = None,
) -> StoredDraft:
    """The model's part, checked; sent back once with the problems. Raises ModelOutputInvalid
    when the second answer still has no usable actions. `tried`: the themes whose label was
    asked before, with their basis then (StoredDraft.label_tried)."""
    tried = tried or {}
    lang = found.language
    unlabelled = _unlabelled(found, tried)
    asked = _asked(found, unlabelled)
    task = prompt("synthesis", "task", lang).render(themes=_to_label(found, unlabelled))
    schema = answer_schema(unlabelled, [i.ref for i in found.all_ideas])
    messages = [Message("user", f"{_head(found)}\n{task}")]
    best: StoredDraft | None = None
    for attempt in range(2):
        try:
            answer = gateway.complete(group, PURPOSE, messages, schema, progress=progress)
        except ModelOutputInvalid:
            if best is None:
                raise
            break  # the second answer is unusable: the first one's usable part may do
        draft, problems = check(answer, found, today, support=support)
        if best is None or len(draft.actions) > len(best.actions):
            best = draft
        if not problems:
            return draft.model_copy(update={"label_tried": asked})
        if attempt == 0:
            retry = prompt("synthesis", "retry", lang).render(
                problems="\n".join(f"- {p}" for p in problems)
            )
            messages += [Message("assistant", answer.model_dump_json()), Message("user", retry)]
    # Fewer actions than asked (the others cited nothing they are made of) beat no draft.
    if best is not None and best.actions:
        return best.model_copy(update={"label_tried": asked})
    raise ModelOutputInvalid(
        "The model's draft synthesis failed its checks twice (its actions did not cite the "
        "consultants' ideas). Nothing was lost: the themes are there; retry.",
        "invalid_synthesis",
    )


def update_of(
    previous: StoredDraft | None, found: Inputs, *, ended: bool = False
) -> list[IdeaView] | None:
    """The ideas an update would add to `previous`, or None when the draft is to be made in
    full: no usable previous draft, another contract, an idea of it gone (a turn corrected),
    nothing new, too much new since its last full run (more allowed once phase 4 has `ended`),
    or too few ideas in that run."""
    if (
        previous is None
        or len(previous.full_from) < UPDATE_FROM
        or previous.contract_id != found.contract_id
    ):
        return None
    current = {i.id for i in found.all_ideas}
    covered = set(previous.made_from)
    if not covered <= current:
        return None
    new = [i for i in found.all_ideas if i.id not in covered]
    unseen = len(current - set(previous.full_from))
    most, share = (
        (UPDATE_AT_MOST_ENDED, UPDATE_SHARE_ENDED) if ended else (UPDATE_AT_MOST, UPDATE_SHARE)
    )
    if not new or len(new) > most or unseen > share * len(current):
        return None
    return new


def _update_labels(found: Inputs, unlabelled: Sequence[int], new: Sequence[IdeaView]) -> list[int]:
    """The themes an update labels: those holding a new idea, the largest first, at most
    UPDATE_LABELS (each label is 10-15 tokens to write, the update's slow part in French; the
    others keep their key words until a whole draft)."""
    fresh = {i.id for i in new}
    size = {t.number: len(t.ideas) for t in found.ideas.themes}
    holding = {t.number for t in found.ideas.themes if any(i.id in fresh for i in t.ideas)}
    chosen = sorted((n for n in unlabelled if n in holding), key=lambda n: (-size[n], n))
    return sorted(chosen[:UPDATE_LABELS])


def compose_update(
    gateway: LLMGateway,
    group: GroupRef,
    *,
    found: Inputs,
    previous: StoredDraft,
    new: Sequence[IdeaView],
    today: date,
    progress: Progress | None = None,
    support: plan.Support | None = None,
) -> StoredDraft:
    """`previous` with what the `new` ideas add: labels for new themes and at most one action
    citing them (a fifth of a whole draft's tokens, so the draft with every idea is there soon
    after phase 4 ends). The prompt starts like a full run's, so the server's prefix cache
    serves all but the new ideas and this short task. An action citing none of the new ideas,
    or repeating one of the draft's, is dropped; no retry (what the draft holds stands)."""
    refs = {i.id: i.ref for i in found.all_ideas}
    unlabelled = _update_labels(found, _unlabelled(found, previous.label_tried), new)
    # A plan that already has MAX_ACTIONS keeps them: an action written now would be cut, and
    # it is most of the update's tokens.
    room = 1 if len(previous.actions) < MAX_ACTIONS else 0
    task = prompt("synthesis", "update", found.language).render(
        new=", ".join(refs[i.id] for i in new),
        themes=_to_label(found, unlabelled),
        actions=data("synthesis", "update", found.language)["room" if room else "full"],
    )
    schema = answer_schema(unlabelled, [refs[i.id] for i in new], ModelUpdate, room)
    answer = gateway.complete(
        group, PURPOSE, [Message("user", f"{_head(found)}\n{task}")], schema, progress=progress
    )
    added, _problems = check(answer, found, today, actions_needed=0, support=support)
    themes = {t.id for t in found.ideas.themes}
    planned = {_same(a.objective) for a in previous.actions}
    if support is not None:  # an action alike one of the draft's is not new
        before = [support.vector(a) for a in previous.actions]
        added.actions = [
            a for a in added.actions if not any(plan.alike(support.vector(a), b) for b in before)
        ]
    return StoredDraft(
        label_tried=_asked(found, unlabelled),
        labels={**{k: v for k, v in previous.labels.items() if k in themes}, **added.labels},
        questions=previous.questions,
        actions=[
            *previous.actions,
            *(a for a in added.actions if _same(a.objective) not in planned),
        ][:MAX_ACTIONS],
    )
