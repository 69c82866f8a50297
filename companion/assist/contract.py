"""Draft one-sentence contract candidates (phase 3) and check each with deterministic rules.

The model proposes; the rules of prompts/contract/rules.<lang>.toml decide. What fails is
regenerated once with the reasons; the client then edits and confirms one candidate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel, Field

from companion.llm.gateway import GroupRef, LLMGateway, Message, narrowed
from companion.method.contract import one_sentence_problem
from companion.method.phases import Language
from companion.prompts import data, prompt
from companion.text import content_counts, content_word, key_words, normalise, words

KEY_WORDS = 10  # the client's words a candidate may reuse (any one will do)
CANDIDATES = 3
# Asked for beyond the candidates still missing: the checks keep the first that pass, so one
# weak proposal no longer costs a candidate (bench/eval/run.py --contract).
SPARE = 2
MAX_PROPOSALS = 6
RETRY_TEMPERATURE = 0.8


@dataclass(frozen=True)
class Rules:
    max_words: int
    openers: list[re.Pattern[str]]
    first_person: frozenset[str]
    solution_markers: list[re.Pattern[str]]
    stopwords: frozenset[str]
    feedback: str
    answer_pattern: str
    misdirected: list[re.Pattern[str]]
    request_words: frozenset[str]
    tried: list[re.Pattern[str]]


@cache
def rules(language: Language) -> Rules:
    raw = data("contract", "rules", language)
    return Rules(
        max_words=int(raw["max_words"]),
        openers=[re.compile(p, re.IGNORECASE) for p in raw["openers"]],
        first_person=frozenset(raw["first_person"]),
        solution_markers=[re.compile(p, re.IGNORECASE) for p in raw["solution_markers"]],
        stopwords=frozenset(raw["stopwords"].split()),
        feedback=raw["feedback"],
        answer_pattern=raw["answer_pattern"],
        misdirected=[re.compile(p, re.IGNORECASE) for p in raw["misdirected"]],
        request_words=frozenset(_stem(w) for w in raw["request_words"].split()),
        tried=[re.compile(p, re.IGNORECASE) for p in raw["tried"]],
    )


def _stem(word: str) -> str:
    # Enough to match "délègue" with "déléguer" or "delegate" with "delegating".
    return content_word(word)[:5]


@dataclass(frozen=True)
class Said:
    """What phases 1-3 give the checks: the stems of every word said, and the solutions the
    consultants proposed (a disguised-advice question) or the client tried, by their words."""

    stems: frozenset[str] = frozenset()
    solutions: dict[str, str] = field(default_factory=dict)  # stem -> the word as said

    @property
    def prefixes(self) -> frozenset[str]:
        """First four letters: "soir" was said when "soirées" was."""
        return frozenset(s[:4] for s in self.stems)


def _content(text: str, language: Language) -> list[str]:
    stop = rules(language).stopwords
    return [w for w in map(content_word, words(text)) if len(w) >= 4 and w not in stop]


def said_in(
    texts: Sequence[str], advice: Sequence[str], client_texts: Sequence[str], language: Language
) -> Said:
    """The stems of phases 1-3 and their solutions: the words of the disguised-advice questions
    (their cue taken out: "Avez-vous pensé à une médiation ?" proposes "médiation") and the words
    after "j'ai essayé de" / "I tried" in what the client said; the words of the client's own
    situation elsewhere are not solutions."""
    rule = rules(language)
    tried: dict[str, str] = {}
    own: set[str] = set()  # the client's words outside what they tried
    for text in map(normalise, client_texts):
        rest_of = text
        for pattern in rule.tried:
            for match in pattern.finditer(text):
                rest = re.split(r"[.!?;,]", text[match.end() :], maxsplit=1)[0]
                rest_of = rest_of.replace(rest, " ")
                for word in _content(rest, language)[:3]:
                    tried.setdefault(_stem(word), word)
        own |= {_stem(w) for w in _content(rest_of, language)}
    solutions = dict(tried)
    for question in advice:
        for word in _content(question, language):
            if _stem(word) not in own:
                solutions.setdefault(_stem(word), word)
    stems = frozenset(_stem(w) for text in texts for w in words(normalise(text)))
    return Said(stems=stems, solutions=solutions)


def client_key_words(client_texts: Sequence[str], language: Language, said: Said) -> list[str]:
    """The client's words a candidate must use one of: their most used content words, those
    said twice or more first (a word misheard by the transcription is rarely heard twice), and
    none of a solution they tried."""
    found = key_words(client_texts, rules(language).stopwords, 3 * KEY_WORDS)
    found = [w for w in found if _stem(w) not in said.solutions]
    counts, _first = content_counts(client_texts, rules(language).stopwords)
    twice = [w for w in found if counts[w] >= 2]
    return (twice if len(twice) >= 3 else found)[:KEY_WORDS]


def problems(
    candidate: str, language: Language, keys: Sequence[str], said: Said | None = None
) -> list[str]:
    """What makes a candidate unfit as a contract; empty when it passes every check. With
    `said`: no solution of phases 1-3 built in, no content word that nobody said."""
    text = normalise(candidate)
    rule = rules(language)
    found: list[str] = []
    if one_sentence_problem(text):
        found.append("not exactly one sentence")
    tokens = words(text)
    if len(tokens) > rule.max_words:
        found.append(f"{len(tokens)} words, more than {rule.max_words}")
    if not any(p.search(text) for p in rule.openers):
        found.append(
            "not phrased as a request to the group (e.g. 'Comment puis-je…', 'How can I…')"
        )
    if not any(t in rule.first_person for t in tokens) and not re.search(
        r"\b(je|j'|i)\b", text, re.IGNORECASE
    ):
        found.append("not in the first person")
    if any(p.search(text) for p in rule.misdirected):
        found.append("asks how to help the group, not for the group's help")
    marker = next((m.group(0) for p in rule.solution_markers if (m := p.search(text))), None)
    if marker:
        found.append(f"a solution is built in ('{marker}')")
    stems = {_stem(t) for t in tokens}
    if keys and not any(_stem(k) in stems for k in keys):
        found.append("uses none of the client's key words (" + ", ".join(keys) + ")")
    if said is not None:
        proposed = [w for s, w in said.solutions.items() if s in stems]
        if proposed:
            found.append(
                "builds in a solution proposed or already tried (" + ", ".join(proposed) + ")"
            )
        unsaid = [
            w
            for w in dict.fromkeys(_content(text, language))
            if w[:4] not in said.prefixes and _stem(w) not in rule.request_words
        ]
        if unsaid:
            found.append("uses words nobody said in the session (" + ", ".join(unsaid) + ")")
    return found


class Drafts(BaseModel):
    """The model's answer."""

    candidates: list[str] = Field(min_length=1, max_length=MAX_PROPOSALS)


def answer_schema(language: Language, count: int) -> type[Drafts]:
    """Drafts, with a JSON schema narrowed to `count` candidates of the form the checks want
    (`answer_pattern`: an opener, one sentence, bounded length). A server that decodes under the
    schema (llama.cpp makes it a grammar) cannot then propose a candidate that fails on form;
    what a pattern cannot say (no solution built in, the client's key words) is still checked
    after. Validation stays Drafts': the checks decide."""
    pattern = rules(language).answer_pattern

    def edit(schema: dict[str, Any]) -> None:
        schema["properties"]["candidates"].update(
            items={"type": "string", "pattern": pattern}, minItems=count, maxItems=count
        )

    return narrowed(Drafts, edit)


class Candidate(BaseModel):
    text: str
    problems: list[str]


class ContractDrafts(BaseModel):
    candidates: list[Candidate] = Field(description="Candidates that pass every check.")
    rejected: list[Candidate] = Field(description="What the model proposed that failed.")
    key_words: list[str]
    prompt_version: str
    problem: str | None = Field(
        default=None,
        description="Why no candidate is offered: none of the model's proposals passed the "
        "checks (they are in `rejected`, with their reasons, to edit or to set aside).",
    )


def _streamed(chunks: int) -> None:
    """Progress of a streamed answer: nobody watches it, streaming is for the timeout."""


def draft(
    gateway: LLMGateway,
    group: GroupRef,
    *,
    language: Language,
    exposé: Sequence[str],
    clarification: Sequence[str],
    client_texts: Sequence[str],
    advice: Sequence[str] = (),
) -> ContractDrafts:
    """Up to CANDIDATES candidates that pass every check, from two model answers at most; when
    none passes, what the model proposed is answered all the same, with its reasons, for the
    client to edit (`advice`: the solutions the consultants' disguised-advice questions
    proposed, their cue taken out)."""
    template = prompt("contract", "draft", language)
    said = said_in(
        [*exposé, *clarification, *client_texts], advice, client_texts or exposé, language
    )
    keys = client_key_words(client_texts or exposé, language, said)
    accepted: list[Candidate] = []
    rejected: list[Candidate] = []
    feedback = ""
    for attempt in range(2):
        wanted = CANDIDATES - len(accepted)
        asked = min(wanted + SPARE, MAX_PROPOSALS)
        text = template.render(
            expose="\n".join(exposé) or "-",
            clarification="\n".join(clarification) or "-",
            count=str(asked),
            key_words=", ".join(keys) or "-",
            feedback=feedback,
        )
        schema = answer_schema(language, asked)
        # Streamed (progress ignored): the timeout then applies between chunks, so five
        # proposals on a busy CPU are not cut off as a whole. The second attempt is sampled
        # more freely: a small model otherwise writes its failed sentences again.
        answer = gateway.complete(
            group,
            "contract.draft",
            [Message("user", text)],
            schema,
            progress=_streamed,
            temperature=RETRY_TEMPERATURE if attempt else None,
        )
        failed: list[Candidate] = []
        for proposal in answer.candidates:
            candidate = Candidate(
                text=normalise(proposal), problems=problems(proposal, language, keys, said)
            )
            if candidate.text in {c.text for c in [*accepted, *rejected, *failed]}:
                continue  # said already: neither a new candidate nor a new failure
            if candidate.problems:
                failed.append(candidate)
            elif len(accepted) < CANDIDATES:
                accepted.append(candidate)
        rejected.extend(failed)
        if len(accepted) == CANDIDATES:
            break
        reasons = "\n".join(f"- « {c.text} » : {'; '.join(c.problems)}" for c in failed)
        feedback = f"\n{rules(language).feedback}\n{reasons}\n"
    return ContractDrafts(
        candidates=accepted,
        rejected=rejected,
        key_words=keys,
        prompt_version=template.version,
        problem=None if accepted else data("contract", "rules", language)["none_passed"],
    )
