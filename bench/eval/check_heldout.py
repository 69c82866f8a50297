"""Check the held-out labelled sessions (bench/eval/heldout_consultations.<lang>.json).

    python bench/eval/check_heldout.py

Each file is a list of exactly 6 whole sessions, written by hand in its language, in
domains outside corporate management and different from each other across both files.
A session carries the client's exposé (and what they tried), the clarification questions
of phase 2 labelled as a facilitator would (open_question, closed_question,
disguised_advice, judgment, interpretation), the one-sentence contract, the concrete
solutions a contract must not build in, the themes and the labelled ideas of the
consultation (phase 4), and two memory questions answered by ideas of the session.

Exits non-zero with a message on the first rule broken; prints a summary per session when
every rule holds.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
LANGUAGES = ("fr", "en")
SESSIONS_PER_FILE = 6
KEYS = {
    "title",
    "domain",
    "expose",
    "tried",
    "clarification",
    "contract",
    "solutions",
    "themes",
    "utterances",
    "memory",
}
LABELS = ("open_question", "closed_question", "disguised_advice", "judgment", "interpretation")
AT_LEAST = {
    "open_question": 3,
    "closed_question": 1,
    "disguised_advice": 2,
    "judgment": 1,
    "interpretation": 1,
}
SOURCES = ("question", "idea", "tried")
QUOTES = "«\"'“‘"
# The stock openers of disguised advice; most disguised advice must be phrased otherwise.
CLASSIC_ADVICE = re.compile(
    r"^(as-tu pensé|tu as pensé|avez-vous pensé|t'as pensé|pourquoi tu ne|pourquoi ne pas"
    r"|pourquoi est-ce que tu ne|have you thought|have you considered|have you tried"
    r"|why don't you|why not)\b",
    re.IGNORECASE,
)
FIRST_PERSON = {
    "fr": re.compile(r"(?<!\w)(je|j'|moi|mon|ma|mes)(?!\w)", re.IGNORECASE),
    "en": re.compile(r"(?<!\w)(I|I'm|I've|my|me)(?!\w)"),
}
WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*", re.UNICODE)
STOPWORDS = {
    # fr
    "alors",
    "aussi",
    "autre",
    "autres",
    "avais",
    "avait",
    "avec",
    "avez",
    "avions",
    "avoir",
    "cela",
    "celle",
    "celui",
    "cette",
    "ceux",
    "chez",
    "comme",
    "comment",
    "dans",
    "depuis",
    "donc",
    "elle",
    "elles",
    "encore",
    "entre",
    "est-ce",
    "était",
    "étaient",
    "être",
    "fait",
    "faire",
    "leur",
    "leurs",
    "mais",
    "même",
    "nous",
    "parce",
    "pour",
    "quand",
    "quel",
    "quelle",
    "quelles",
    "quels",
    "qu'est-ce",
    "qu'on",
    "qu'il",
    "qu'elle",
    "sans",
    "sont",
    "sous",
    "suis",
    "très",
    "tout",
    "toute",
    "tous",
    "toutes",
    "vous",
    "votre",
    "vraiment",
    "qu'avait",
    "qu'avions",
    "avait-on",
    "dit",
    "proposé",
    "groupe",
    "qu'est",
    "c'est",
    "était-ce",
    "qu'avaient",
    "ont",
    "quoi",
    "sur",
    "ton",
    "ta",
    "tes",
    "son",
    "ses",
    "les",
    "des",
    "une",
    "pas",
    "plus",
    "par",
    "que",
    "qui",
    "lui",
    "moi",
    "toi",
    # en
    "about",
    "after",
    "again",
    "also",
    "been",
    "being",
    "could",
    "does",
    "doing",
    "from",
    "have",
    "having",
    "into",
    "just",
    "more",
    "most",
    "much",
    "only",
    "other",
    "over",
    "said",
    "should",
    "some",
    "such",
    "than",
    "that",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "very",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "with",
    "would",
    "your",
    "yours",
    "group",
    "suggested",
    "suggest",
    "remind",
    "someone",
    "anyone",
    "people",
    "thing",
    "things",
    "back",
    "what's",
    "we'd",
    "didn't",
    "wasn't",
    "weren't",
    "did",
    "was",
    "the",
    "and",
    "for",
    "our",
    "how",
    "who",
}


class Invalid(Exception):
    """A rule of the labelled data is broken."""


def require(condition: bool, where: str, what: str) -> None:
    if not condition:
        raise Invalid(f"{where}: {what}")


def words(text: str) -> list[str]:
    return [w.lower().replace("’", "'") for w in WORD.findall(text)]


def content(text: str) -> set[str]:
    """Content words of a text: four letters or more, not a stop word, elision removed."""
    out = set()
    for word in words(text):
        if "'" in word and word.index("'") <= 2:
            word = word.split("'", 1)[1]
        if len(word) >= 4 and word not in STOPWORDS:
            out.add(word)
    return out


def has_word(word: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text, re.IGNORECASE) is not None


def clean_string(value: Any, where: str, what: str) -> str:
    require(isinstance(value, str), where, f"{what} is not a string")
    require(value.strip() == value != "", where, f"{what} empty or padded: {value!r}")
    return value


def check_expose(session: dict[str, Any], language: str, where: str) -> None:
    expose = clean_string(session["expose"], where, "expose")
    count = len(expose.split())
    require(80 <= count <= 160, where, f"expose has {count} words, want 80 to 160")
    require(FIRST_PERSON[language].search(expose) is not None, where, "expose not first person")
    tried = session["tried"]
    require(isinstance(tried, list) and tried, where, "tried must list at least one thing")
    for item in tried:
        clean_string(item, where, "tried item")
        require(item in expose, where, f"tried item not a substring of the expose: {item!r}")
        require(len(item.split()) >= 2, where, f"tried item too short: {item!r}")
    require(len(set(tried)) == len(tried), where, "duplicate tried item")


def check_clarification(session: dict[str, Any], where: str) -> tuple[Counter[str], int]:
    questions = session["clarification"]
    require(isinstance(questions, list), where, "clarification not a list")
    require(8 <= len(questions) <= 12, where, f"{len(questions)} questions, want 8 to 12")
    labels: Counter[str] = Counter()
    bare = 0
    seen = set()
    for n, question in enumerate(questions):
        at = f"{where} clarification #{n}"
        require(isinstance(question, dict), at, "not an object")
        require(set(question) == {"speaker", "text", "label"}, at, f"keys {sorted(question)}")
        clean_string(question["speaker"], at, "speaker")
        text = clean_string(question["text"], at, "text")
        require(text not in seen, at, "duplicate question")
        seen.add(text)
        require(question["label"] in LABELS, at, f"unknown label {question['label']!r}")
        require(len(text.split()) >= 3, at, f"question too short: {text!r}")
        labels[question["label"]] += 1
        if "?" not in text:
            bare += 1
    for label, least in AT_LEAST.items():
        require(labels[label] >= least, where, f"{labels[label]} {label}, want at least {least}")
    require(bare >= 2, where, f"{bare} questions without a question mark, want at least 2")
    require(bare < len(questions) / 2, where, f"{bare} questions without a question mark: too many")
    speakers = {q["speaker"] for q in questions}
    require(3 <= len(speakers) <= 5, where, f"{len(speakers)} questioners, want 3 to 5")
    return labels, bare


def check_utterances(
    session: dict[str, Any], where: str
) -> tuple[dict[str, str], list[tuple[str, str]], int, int]:
    """(idea text -> theme, ideas in order as (text, theme), turns with 2-3 ideas, openers)."""
    themes = session["themes"]
    require(isinstance(themes, dict), where, "themes not an object")
    require(3 <= len(themes) <= 6, where, f"{len(themes)} themes, want 3 to 6")
    require(list(themes) == [f"t{i}" for i in range(1, len(themes) + 1)], where, "theme ids")
    for key, label in themes.items():
        clean_string(label, where, f"theme {key} label")
        require(2 <= len(label.split()) <= 6, where, f"theme {key} label {label!r}: want 2-6 words")
    require(
        len({label.lower() for label in themes.values()}) == len(themes),
        where,
        "duplicate theme label",
    )
    utterances = session["utterances"]
    require(isinstance(utterances, list), where, "utterances not a list")
    require(12 <= len(utterances) <= 20, where, f"{len(utterances)} utterances, want 12 to 20")
    speakers = [u.get("speaker") for u in utterances]
    require(3 <= len(set(speakers)) <= 5, where, f"{len(set(speakers))} consultants, want 3 to 5")
    asked = {q["speaker"] for q in session["clarification"]}
    require(
        asked == set(speakers),
        where,
        f"clarification speakers {sorted(asked)} differ from consultation speakers "
        f"{sorted(set(speakers))}",
    )
    ordered: list[tuple[str, str]] = []
    multi = openers = 0
    for n, utterance in enumerate(utterances):
        at = f"{where} utterance #{n}"
        require(isinstance(utterance, dict), at, "not an object")
        require(set(utterance) == {"speaker", "text", "ideas"}, at, f"keys {sorted(utterance)}")
        clean_string(utterance["speaker"], at, "speaker")
        text = clean_string(utterance["text"], at, "text")
        ideas = utterance["ideas"]
        require(isinstance(ideas, list) and len(ideas) <= 3, at, "ideas: a list of 0 to 3")
        position = 0
        for pair in ideas:
            require(isinstance(pair, list) and len(pair) == 2, at, f"idea not a pair: {pair!r}")
            idea, theme = pair
            clean_string(idea, at, "idea")
            require(theme in themes, at, f"unknown theme {theme!r}")
            require(idea in text, at, f"idea not a substring of the text: {idea!r}")
            start = text.find(idea, position)
            require(start >= 0, at, f"idea overlaps the previous one or is out of order: {idea!r}")
            end = start + len(idea)
            require(start == 0 or not text[start - 1].isalnum(), at, f"cut mid-word: {idea!r}")
            require(end == len(text) or not text[end].isalnum(), at, f"cut mid-word: {idea!r}")
            require(idea[0].isalpha() or idea[0] in QUOTES, at, f"starts on punctuation: {idea!r}")
            require(len(idea.split()) >= 4, at, f"idea under 4 words: {idea!r}")
            position = end
            ordered.append((idea, theme))
        multi += len(ideas) >= 2
        openers += bool(ideas) and not text.startswith(ideas[0][0])
    require(20 <= len(ordered) <= 35, where, f"{len(ordered)} ideas, want 20 to 35")
    require(3 * multi >= len(utterances), where, f"only {multi} turns with 2-3 ideas")
    by_text = {}
    for idea, theme in ordered:
        require(idea not in by_text, where, f"the same idea twice: {idea!r}")
        by_text[idea] = theme
    used = Counter(theme for _idea, theme in ordered)
    require(all(used[t] >= 2 for t in themes), where, f"a theme with under 2 ideas: {dict(used)}")
    # Themes come back, interleaved: every theme appears in two separate runs at least.
    runs: Counter[str] = Counter()
    previous = None
    for _idea, theme in ordered:
        if theme != previous:
            runs[theme] += 1
        previous = theme
    for theme in themes:
        require(runs[theme] >= 2, where, f"theme {theme} comes in one block, not interleaved")
    # Ideas of one theme are rephrased, not repeated.
    for theme in themes:
        mine = [content(i) for i, t in ordered if t == theme]
        for a, b in combinations(mine, 2):
            if a and b:
                overlap = len(a & b) / len(a | b)
                require(overlap < 0.4, where, f"two ideas of {theme} share most words: {a & b}")
    return by_text, ordered, multi, openers


def check_solutions(session: dict[str, Any], where: str) -> Counter[str]:
    solutions = session["solutions"]
    require(isinstance(solutions, list) and solutions, where, "solutions empty")
    advice = [q["text"] for q in session["clarification"] if q["label"] == "disguised_advice"]
    said = [u["text"] for u in session["utterances"]]
    ideas = [i for u in session["utterances"] for i, _t in u["ideas"]]
    everywhere = [session["expose"]] + [q["text"] for q in session["clarification"]] + said
    sources: Counter[str] = Counter()
    for n, solution in enumerate(solutions):
        at = f"{where} solution #{n}"
        require(isinstance(solution, dict), at, "not an object")
        require(set(solution) == {"words", "from"}, at, f"keys {sorted(solution)}")
        require(solution["from"] in SOURCES, at, f"unknown source {solution['from']!r}")
        found = solution["words"]
        require(isinstance(found, list) and 1 <= len(found) <= 3, at, "words: a list of 1 to 3")
        for word in found:
            clean_string(word, at, "word")
            require(word == word.lower(), at, f"word not lowercase: {word!r}")
            require(" " not in word, at, f"one word at a time: {word!r}")
            require(any(has_word(word, t) for t in everywhere), at, f"{word!r} said nowhere")
        origin = {
            "question": advice,
            "idea": ideas,
            "tried": session["tried"],
        }[solution["from"]]
        require(
            any(any(has_word(w, t) for w in found) for t in origin),
            at,
            f"none of {found} appears in a {solution['from']} of the session",
        )
        sources[solution["from"]] += 1
    require(sources["idea"] >= 3, where, f"{sources['idea']} solutions from ideas, want 3")
    for text in advice:
        require(
            any(
                s["from"] == "question" and any(has_word(w, text) for w in s["words"])
                for s in solutions
            ),
            where,
            f"disguised advice with no solution listed: {text!r}",
        )
    for text in session["tried"]:
        require(
            any(
                s["from"] == "tried" and any(has_word(w, text) for w in s["words"])
                for s in solutions
            ),
            where,
            f"tried item with no solution listed: {text!r}",
        )
    return sources


def check_contract(session: dict[str, Any], language: str, where: str) -> None:
    contract = clean_string(session["contract"], where, "contract")
    require(contract.endswith("?") and contract.count("?") == 1, where, "contract: one question")
    require(re.search(r"[.!;](\s|$)", contract) is None, where, "contract: one sentence only")
    require(6 <= len(contract.split()) <= 40, where, "contract: 6 to 40 words")
    require(FIRST_PERSON[language].search(contract) is not None, where, "contract not first person")
    for solution in session["solutions"]:
        for word in solution["words"]:
            require(
                not has_word(word, contract),
                where,
                f"contract builds in a solution ({solution['from']}): {word!r}",
            )


def check_memory(session: dict[str, Any], by_text: dict[str, str], where: str) -> None:
    memory = session["memory"]
    require(isinstance(memory, list) and len(memory) == 2, where, "memory: exactly 2 questions")
    for n, item in enumerate(memory):
        at = f"{where} memory #{n}"
        require(isinstance(item, dict), at, "not an object")
        require(set(item) == {"question", "answers"}, at, f"keys {sorted(item)}")
        question = clean_string(item["question"], at, "question")
        require(question.endswith("?"), at, "question does not end with '?'")
        answers = item["answers"]
        require(isinstance(answers, list) and 2 <= len(answers) <= 5, at, "2 to 5 answers")
        require(len(set(answers)) == len(answers), at, "duplicate answer")
        for answer in answers:
            require(answer in by_text, at, f"answer is not an idea of the session: {answer!r}")
        themes = {by_text[a] for a in answers}
        require(len(themes) <= 2, at, f"answers span {len(themes)} themes, want 1 or 2")
        said = set().union(*(content(a) for a in answers))
        own = content(question) - said
        require(
            len(own) >= 2, at, f"question words nearly all taken from the answers: {question!r}"
        )
        tokens = words(question)
        joined = [" ".join(words(idea)) for idea in by_text]
        for k in range(len(tokens) - 3):
            gram = " ".join(tokens[k : k + 4])
            require(
                not any(f" {gram} " in f" {idea} " for idea in joined),
                at,
                f"question copies four words in a row of an idea: {gram!r}",
            )


def check_session(session: dict[str, Any], language: str, where: str) -> dict[str, Any]:
    require(isinstance(session, dict), where, "not an object")
    require(set(session) == KEYS, where, f"keys {sorted(session)}, want {sorted(KEYS)}")
    clean_string(session["title"], where, "title")
    domain = clean_string(session["domain"], where, "domain")
    require(1 <= len(domain.split()) <= 10, where, "domain: a few words")
    check_expose(session, language, where)
    labels, bare = check_clarification(session, where)
    by_text, ordered, multi, openers = check_utterances(session, where)
    sources = check_solutions(session, where)
    check_contract(session, language, where)
    check_memory(session, by_text, where)
    return {
        "labels": labels,
        "bare": bare,
        "questions": len(session["clarification"]),
        "themes": len(session["themes"]),
        "utterances": len(session["utterances"]),
        "multi": multi,
        "ideas": len(ordered),
        "openers": openers,
        "silent": sum(1 for u in session["utterances"] if not u["ideas"]),
        "memory": len(session["memory"]),
        "sources": sources,
        "advice": [q["text"] for q in session["clarification"] if q["label"] == "disguised_advice"],
    }


def existing_titles() -> set[str]:
    titles = set()
    for name in ("consultations", "heldout", "cases", "dev"):
        for language in LANGUAGES:
            path = HERE / f"{name}.{language}.json"
            if path.exists():
                titles |= {s.get("title") for s in json.loads(path.read_text(encoding="utf-8"))}
    return titles


def check_language(language: str, known: set[str]) -> list[dict[str, Any]]:
    path = HERE / f"heldout_consultations.{language}.json"
    require(path.exists(), language, f"{path.name} missing")
    try:
        sessions = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise Invalid(f"{language}: {path.name} is not JSON: {error}") from None
    require(isinstance(sessions, list), language, "not a list of sessions")
    require(
        len(sessions) == SESSIONS_PER_FILE,
        language,
        f"{len(sessions)} sessions, want exactly {SESSIONS_PER_FILE}",
    )
    print(f"{language}: {len(sessions)} sessions")
    questions = bare = silent = openers = classic = advice = 0
    for n, session in enumerate(sessions):
        where = f"{language} #{n} {session.get('title')!r}" if isinstance(session, dict) else n
        summary = check_session(session, language, str(where))
        require(session["title"] not in known, str(where), "title already used elsewhere")
        questions += summary["questions"]
        bare += summary["bare"]
        silent += summary["silent"]
        openers += summary["openers"]
        advice += len(summary["advice"])
        classic += sum(1 for t in summary["advice"] if CLASSIC_ADVICE.match(t))
        labels = ", ".join(f"{summary['labels'][name]} {name}" for name in LABELS)
        print(
            f"  {session['title']!r} ({session['domain']}): {summary['questions']} questions "
            f"[{labels}; {summary['bare']} without '?'], {summary['themes']} themes, "
            f"{summary['utterances']} utterances ({summary['multi']} with 2-3 ideas, "
            f"{summary['silent']} with none), {summary['ideas']} ideas, "
            f"{summary['memory']} memory questions"
        )
    titles = [s["title"] for s in sessions]
    require(len(set(titles)) == len(titles), language, "duplicate titles")
    require(silent >= 1, language, "no utterance with 0 ideas (pure agreement)")
    require(openers >= 3, language, f"{openers} turns with an opener before the first idea, want 3")
    require(
        0.25 <= bare / questions <= 0.45,
        language,
        f"{bare} of {questions} questions without '?', want about a third",
    )
    require(
        3 * classic <= advice,
        language,
        f"{classic} of {advice} disguised advice start with a stock opener, want at most a third",
    )
    return sessions


def main() -> int:
    try:
        known = existing_titles()
        everything = [s for language in LANGUAGES for s in check_language(language, known)]
        domains = [s["domain"].strip().lower() for s in everything]
        twice = [d for d, c in Counter(domains).items() if c > 1]
        require(not twice, "all", f"domains used twice: {twice}")
        titles = [s["title"] for s in everything]
        require(len(set(titles)) == len(titles), "all", "a title used in both files")
    except Invalid as problem:
        print(f"FAILED {problem}")
        return 1
    except (KeyError, TypeError, AttributeError) as problem:
        print(f"FAILED malformed data: {problem!r}")
        return 1
    turns = [u for s in everything for u in s["utterances"]]
    print(
        f"all: {len(everything)} sessions, "
        f"{sum(len(s['clarification']) for s in everything)} questions, {len(turns)} utterances, "
        f"{sum(len(u['ideas']) for u in turns)} ideas, "
        f"{sum(len(s['memory']) for s in everything)} memory questions"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
