"""The client's synthesis document: Markdown and PDF, built from views (no app needed)."""

from __future__ import annotations

import re
from datetime import date

import pytest

from companion.assist.ideas.schemas import IdeaView, LabelSource, SourceKind, ThemeView
from companion.assist.synthesis import export
from companion.assist.synthesis.schemas import (
    DraftAction,
    DraftStatus,
    Question,
    RelevantIdea,
    SynthesisView,
)
from companion.method.phases import Language
from companion.sessions.schemas import Person

CONTRACT = "Comment déléguer le suivi de l’équipe sans tout contrôler ?"
OBJECTIVE = "Confier la revue hebdomadaire à Chloé | sans la relire"


def idea(n: int, text: str, *, duplicate_of: str | None = None, author: str | None = "Zoé Lefèvre"):
    return IdeaView(
        id=f"idea-{n}",
        ref=f"I{n}",
        text=text,
        author=None if author is None else Person(user_id=f"u{n}", name=author),
        speaker=None,
        source_kind=SourceKind.note,
        source_id=f"note-{n}",
        start=0,
        end=len(text),
        start_s=None,
        end_s=None,
        duplicate_of=duplicate_of,
    )


def theme(number: int, label: str, ideas: list[IdeaView]) -> ThemeView:
    return ThemeView(
        id=f"theme-{number}",
        number=number,
        label=label,
        label_source=LabelSource.model,
        label_current=True,
        ideas=ideas,
    )


def view(**changes) -> SynthesisView:
    themes = [
        theme(
            1,
            "Déléguer | faire confiance",
            [
                idea(1, "# Lui confier l’équipe « en douceur »… — pas à pas, c’est une œuvre"),
                idea(2, "Fixer un point d’étape chaque vendredi", author=None),
            ],
        ),
        theme(
            2,
            "Le regard des autres",
            [
                idea(3, "Dire à la direction ce qui change"),
                idea(4, "Prévenir la direction du changement", duplicate_of="idea-3"),
            ],
        ),
    ]
    values = {
        "session_id": "s1",
        "contract": CONTRACT,
        "themes": themes,
        "relevance": [],
        "most_relevant": [
            RelevantIdea(
                ideas=["idea-1"],
                refs=["I1"],
                text="Lui confier l’équipe « en douceur »",
                theme_number=1,
                score=0.81,
            )
        ],
        "questions": [
            Question(
                ideas=["idea-1", "idea-3"],
                refs=["I1", "I3"],
                text="Qu’est-ce qui vous empêche de lâcher prise ?",
            )
        ],
        "actions": [
            DraftAction(
                ideas=["idea-2"],
                refs=["I2"],
                objective=OBJECTIVE,
                first_step="En parler à Chloé lundi",
                resources="Une heure par semaine",
                indicator="Trois revues faites sans moi",
                due_date=date(2026, 3, 1),
            )
        ],
        "status": DraftStatus.ready,
        "current": True,
        "error": None,
        "prompt_version": "1",
        "model_seconds": 2.5,
        "updated_at": None,
    }
    values.update(changes)
    return SynthesisView(**values)


def empty_view(status: DraftStatus = DraftStatus.ready, current: bool = True) -> SynthesisView:
    return view(
        contract=None,
        themes=[],
        most_relevant=[],
        questions=[],
        actions=[],
        status=status,
        current=current,
    )


# --- PDF text, read back without a PDF library ---------------------------------------------


def _objects(data: bytes) -> dict[int, bytes]:
    return {int(m[1]): m[2] for m in re.finditer(rb"(\d+) 0 obj(.*?)endobj", data, re.S)}


def _stream(body: bytes) -> bytes:
    found = re.search(rb"stream\r?\n(.*?)\r?\nendstream", body, re.S)
    assert found is not None, "uncompressed stream expected"
    return found[1]


def _literal(raw: bytes) -> bytes:
    """A PDF literal string's bytes, escapes resolved."""
    out, i = bytearray(), 0
    simple = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("f"): 12}
    while i < len(raw):
        c = raw[i]
        if c == ord("\\") and i + 1 < len(raw):
            nxt = raw[i + 1]
            octal = re.match(rb"[0-7]{1,3}", raw[i + 1 : i + 4])
            if octal:
                out.append(int(octal[0], 8) & 0xFF)
                i += 1 + len(octal[0])
                continue
            out.append(simple.get(nxt, nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def _to_unicode(cmap: bytes) -> dict[int, str]:
    table: dict[int, str] = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", cmap, re.S):
        for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            table[int(src, 16)] = bytes.fromhex(dst.decode()).decode("utf-16-be")
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", cmap, re.S):
        for lo, hi, dst in re.findall(
            rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block
        ):
            start = int(dst, 16)
            for k, code in enumerate(range(int(lo, 16), int(hi, 16) + 1)):
                table[code] = chr(start + k)
    return table


def pdf_fragments(data: bytes) -> list[str]:
    """Each shown string of an uncompressed fpdf2 PDF, in order, decoded to text."""
    objects = _objects(data)
    decoders = {}
    for name, number in re.findall(rb"/(F\d+) (\d+) 0 R", data):
        font = objects[int(number)]
        to_unicode = re.search(rb"/ToUnicode (\d+) 0 R", font)
        if to_unicode is None:  # a core font, windows-1252
            decoders[name] = lambda raw: raw.decode("windows-1252")
        else:
            table = _to_unicode(_stream(objects[int(to_unicode[1])]))
            decoders[name] = lambda raw, table=table: "".join(
                table.get(int.from_bytes(raw[i : i + 2], "big"), "\ufffd")
                for i in range(0, len(raw), 2)
            )
    fragments: list[str] = []
    token = re.compile(rb"/(F\d+)\s+[\d.]+\s+Tf|\(((?:\\.|[^\\)])*)\)\s*Tj", re.S)
    for body in objects.values():
        if b"stream" not in body or b" Tf" not in body:
            continue
        font = None
        for match in token.finditer(_stream(body)):
            if match[1] is not None:
                font = match[1]
            else:
                assert font is not None
                fragments.append(decoders[font](_literal(match[2])))
    return fragments


def pdf_text(data: bytes) -> str:
    return " ".join(" ".join(pdf_fragments(data)).split())


# --- Markdown --------------------------------------------------------------------------------


def test_markdown_has_the_contract_every_ref_and_the_near_duplicate():
    text = export.markdown(view(), Language.fr)
    assert text.startswith("# Synthèse")
    assert "Comment déléguer le suivi de l’équipe sans tout contrôler ?" in text
    for ref in ("I1", "I2", "I3", "I4"):
        assert f"**{ref}**" in text
    assert "Prévenir la direction du changement — *Zoé Lefèvre* (quasi-doublon de I3)" in text
    assert "Fixer un point d’étape chaque vendredi\n" in text  # no author, not a duplicate
    assert "### Thème 1 : Déléguer \\| faire confiance" in text
    assert "1. Qu’est-ce qui vous empêche de lâcher prise ? *(d’après I1, I3)*" in text
    assert "- **I1** Lui confier l’équipe « en douceur » *(thème 1)*" in text
    assert "1er mars 2026" in text


def test_markdown_near_duplicate_of_an_idea_not_shown():
    gone = view(themes=[theme(1, "Seul", [idea(5, "Encore", duplicate_of="idea-99")])])
    text = export.markdown(gone, Language.en)
    assert "(near-duplicate of an earlier idea)" in text
    assert "idea-99" not in text


def test_markdown_escapes_what_would_break_the_layout():
    text = export.markdown(view(), Language.fr)
    lines = text.splitlines()
    # A leading # in an idea is not a heading; the heading levels are only ours.
    assert "- **I1** \\# Lui confier l’équipe" in text
    assert [line for line in lines if line.startswith("#")] == [
        "# Synthèse de votre séance de codéveloppement",
        "## Votre contrat",
        "## Les plus proches de votre contrat",
        "## Thèmes",
        "### Thème 1 : Déléguer \\| faire confiance",
        "### Thème 2 : Le regard des autres",
        "## Questions à méditer",
        "## Plan d’action (brouillon)",
    ]
    # The action's | stays inside its cell: 6 columns, 7 unescaped pipes on every table row.
    rows = [line for line in lines if line.startswith("|")]
    assert len(rows) == 3
    for row in rows:
        assert len(re.findall(r"(?<!\\)\|", row)) == 7
    assert "Confier la revue hebdomadaire à Chloé \\| sans la relire" in rows[2]


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("# titre", "\\# titre"),
        ("1. pas une liste", "1\\. pas une liste"),
        ("12) non plus", "12\\) non plus"),
        ("- ni ceci", "\\- ni ceci"),
        ("+ ni cela", "\\+ ni cela"),
        ("a | b", "a \\| b"),
        ("*gras* _it_ `code`", "\\*gras\\* \\_it\\_ \\`code\\`"),
        ("<script>x</script> & [lien](http://x)", None),
        ("ligne\n# deux\r\ntrois", "ligne \\# deux trois"),
        ("prix : 3\u202f€ – 1-2", "prix : 3\u202f€ – 1-2"),
    ],
)
def test_md_escapes_people_text(raw: str, escaped: str | None):
    out = export.md(raw)
    if escaped is not None:
        assert out == escaped
    assert "\n" not in out
    assert re.search(r"(?<!\\)[<>\[\]&|#*_`]", out) is None


def test_markdown_wording_follows_the_language():
    fr = export.markdown(view(), Language.fr)
    en = export.markdown(view(), Language.en)
    assert "## Questions à méditer" in fr
    assert "## Questions to ponder" in en
    assert "## Most relevant to your contract" in en
    assert "## Les plus proches de votre contrat" in fr
    assert "| Objective | First step | Resources |" in en
    assert "| Objectif | Premier pas | Ressources |" in fr
    assert "March 1, 2026" in en
    assert "1er mars 2026" in fr
    assert "(near-duplicate of I3)" in en
    assert "Questions to ponder" not in fr
    assert "Questions à méditer" not in en
    # People's words are not translated.
    assert CONTRACT in en


@pytest.mark.parametrize(
    ("status", "current", "has_draft", "line"),
    [
        (DraftStatus.ready, True, True, None),
        (DraftStatus.ready, False, True, "Draft made before the last ideas arrived"),
        (DraftStatus.pending, False, False, "The draft is not made yet"),
        (DraftStatus.failed, False, False, "The draft could not be made"),
        (DraftStatus.failed, False, True, "The last update of the draft failed"),
        (DraftStatus.no_model, False, False, "No language model is configured"),
    ],
)
def test_markdown_says_when_the_draft_is_not_current(status, current, has_draft, line):
    changes = {"status": status, "current": current}
    if not has_draft:
        changes |= {"questions": [], "actions": []}
    text = export.markdown(view(**changes), Language.en)
    notes = [t for t in text.splitlines() if t.startswith(">")]
    if line is None:
        assert notes == []
    else:
        assert len(notes) == 1
        assert line in notes[0]


def test_markdown_without_a_draft_has_no_empty_draft_sections():
    text = export.markdown(view(status=DraftStatus.no_model, questions=[], actions=[]), Language.en)
    assert "Questions to ponder" not in text
    assert "Draft action plan" not in text
    assert "**I4**" in text


@pytest.mark.parametrize("language", list(Language))
def test_markdown_of_an_empty_synthesis(language: Language):
    text = export.markdown(empty_view(), language)
    words = export.wording(language)
    for sentence in (
        words.no_contract,
        words.most_relevant_none,
        words.themes_none,
        words.questions_none,
        words.actions_none,
    ):
        assert f"*{sentence}*" in text
    assert "|" not in text


# --- PDF -------------------------------------------------------------------------------------


def test_the_unicode_font_is_installed():
    files = export.font_files()
    assert files is not None, "font-source-sans-pro (a dependency) should be installed"
    assert set(files) == {"", "B", "I"}


def test_pdf_renders_french_typography():
    data = export.pdf(view(), Language.fr, compress=False)
    assert data.startswith(b"%PDF-")
    assert b"SourceSansPro" in data
    text = pdf_text(data)
    assert "Synthèse de votre séance de codéveloppement" in text
    assert CONTRACT in text
    assert "# Lui confier l’équipe « en douceur »… — pas à pas, c’est une œuvre" in text
    assert "Confier la revue hebdomadaire à Chloé | sans la relire" in text
    assert "Échéance : 1er mars 2026" in text
    assert "Échéance\u202f: " in pdf_fragments(data)  # French typography kept
    assert "quasi-doublon de I3" in text
    assert "Questions à méditer" in text
    for ref in ("I1", "I2", "I3", "I4"):
        assert ref in text
    assert "\ufffd" not in text


def test_pdf_compressed_by_default_and_in_english():
    data = export.pdf(view(current=False), Language.en)
    assert data.startswith(b"%PDF-")
    assert b"/FlateDecode" in data
    text = pdf_text(export.pdf(view(current=False), Language.en, compress=False))
    assert "Draft action plan" in text
    assert "Draft made before the last ideas arrived" in text
    assert "Due date: March 1, 2026" in text
    assert "Plan d’action" not in text


def test_pdf_fallback_core_font_keeps_french_and_replaces_the_rest():
    odd = view(
        themes=[theme(1, "Flèches", [idea(1, "Avant → après, Łódź ≥ 3, bravo 🙂 fin")])],
        contract="L’œuvre « commune » … — enfin",
    )
    data = export.render(odd, Language.fr, None, compress=False)
    assert data.startswith(b"%PDF-")
    assert b"/Helvetica" in data
    assert b"SourceSansPro" not in data
    text = pdf_text(data)
    assert "L’œuvre « commune » … — enfin" in text
    assert "Avant -> après, Lódz >= 3, bravo ? fin" in text
    assert "Échéance : 1er mars 2026" in text  # the narrow no-break space is not a "?"


def test_pdf_unicode_font_replaces_what_it_cannot_draw():
    odd = view(themes=[theme(1, "Emoji", [idea(1, "bravo 🙂 e\u0301te\u0301 fin")])])
    text = pdf_text(export.pdf(odd, Language.fr, compress=False))
    assert "bravo ? été fin" in text


@pytest.mark.parametrize(
    ("raw", "printed"),
    [
        ("e\u0301te\u0301", "été"),
        ("a\u202fb", "a\u00a0b"),
        ("Łódź", "Lódz"),
        ("x → y", "x -> y"),
        ("ﬁn", "fin"),
        ("🙂", "?"),
        ("a\x00b\tc\nd", "ab c\nd"),
        ("œ ’ « » … —", "œ ’ « » … —"),
    ],
)
def test_printable_in_windows_1252(raw: str, printed: str):
    assert export.printable(raw, export.in_windows_1252) == printed


def test_printable_ascii_only_uses_the_plain_equivalents():
    assert export.printable("l’œuvre « x » … —", str.isascii) == 'l\'oeuvre " x " ... -'


@pytest.mark.parametrize("status", list(DraftStatus))
@pytest.mark.parametrize("language", list(Language))
def test_pdf_of_an_empty_synthesis(status: DraftStatus, language: Language):
    for files in (export.font_files(), None):
        data = export.render(empty_view(status, current=False), language, files, compress=False)
        assert data.startswith(b"%PDF-")
        assert export.wording(language).themes_none in pdf_text(data)


def test_very_long_text_wraps_instead_of_overflowing():
    url = "https://exemple.org/" + "très-long-chemin/" * 180
    long_text = (("Une idée très développée, sans fin. " * 195) + url)[:10_000]
    assert len(long_text) == 10_000
    word = long_text.split()[-1]
    assert len(word) > 2_900
    big = view(
        contract=long_text,
        themes=[theme(1, long_text, [idea(1, long_text, author=long_text[:300])])],
        actions=[view().actions[0].model_copy(update={"objective": long_text})],
    )
    markdown = export.markdown(big, Language.fr)
    assert long_text in markdown.replace("\\", "")
    for files in (export.font_files(), None):
        data = export.render(big, Language.fr, files, compress=False)
        assert data.count(b"/Type /Page\n") >= 4
        fragments = pdf_fragments(data)
        # Every line is cut to the page: no single shown string holds the long word whole,
        # and no line is longer than what fits on A4 at 11 pt.
        assert max(len(f) for f in fragments) < 130
        # Read back whole once the footers that page breaks put in between are taken out.
        joined = re.sub(r"Page\d+/\d+", "", "".join("".join(fragments).split()))
        assert word in joined
