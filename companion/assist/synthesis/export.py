"""The client's synthesis as a document to keep: Markdown, or PDF (fpdf2).

The fixed wording is in prompts/synthesis/export.<language>.toml. Everything else comes from
people (ideas, contract, names) or from the model (questions, actions): it is escaped for
Markdown and, for the PDF, kept to the characters the font can draw.

The PDF uses Source Sans Pro (TrueType, from the pure-PyPI font-source-sans-pro package) for
French and English typography: accents, œ, ’, « », …, —. Where that package is missing it falls
back to Helvetica in windows-1252, which holds the same characters; in both cases a character the
font cannot draw is replaced by a close equivalent (or "?") rather than an empty box.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import TTFFont

from companion.assist.ideas.schemas import IdeaView
from companion.assist.synthesis.schemas import DraftAction, DraftStatus, SynthesisView
from companion.method.phases import Language
from companion.prompts import data

# ---------------------------------------------------------------------------------------------
# Wording


@dataclass(frozen=True)
class Wording:
    title: str
    contract: str
    no_contract: str
    most_relevant: str
    most_relevant_none: str
    themes: str
    theme: str
    in_theme: str
    themes_none: str
    near_duplicate: str
    near_duplicate_unknown: str
    questions: str
    questions_none: str
    actions: str
    actions_none: str
    action: str
    objective: str
    first_step: str
    resources: str
    indicator: str
    due_date: str
    cited: str
    field: str
    cites: str
    list_separator: str
    page: str
    stale: str
    pending: str
    failed: str
    failed_kept: str
    no_model: str
    date_format: str
    first_day: str
    months: tuple[str, ...]

    def day(self, when: date) -> str:
        day = self.first_day if when.day == 1 and self.first_day else str(when.day)
        return self.date_format.format(day=day, month=self.months[when.month - 1], year=when.year)

    def refs(self, refs: Iterable[str]) -> str:
        return self.list_separator.join(refs)


def wording(language: Language) -> Wording:
    raw: dict[str, Any] = data("synthesis", "export", language)
    values: dict[str, Any] = {}
    for name in (field.name for field in fields(Wording)):
        value = raw.get(name)
        if name == "months":
            if not (isinstance(value, list) and len(value) == 12):
                raise ValueError(f"export.{language}.toml: `months` must list 12 names")
            values[name] = tuple(str(m) for m in value)
        elif isinstance(value, str):
            values[name] = value
        else:
            raise ValueError(f"export.{language}.toml: `{name}` must be a string")
    return Wording(**values)


def status_lines(view: SynthesisView, words: Wording) -> list[str]:
    """What the reader must know about the draft before reading it; empty when all is well."""
    if view.status == DraftStatus.pending:
        return [words.pending]
    if view.status == DraftStatus.no_model:
        return [words.no_model]
    if view.status == DraftStatus.failed:
        return [words.failed_kept if view.questions or view.actions else words.failed]
    return [] if view.current else [words.stale]


# ---------------------------------------------------------------------------------------------
# Text from people

_LINE_BREAKS = re.compile(r"[ \t\n\r\v\f\x85\u2028\u2029]+")


def one_line(text: str) -> str:
    """NFC, no control characters, runs of spaces and line breaks as one space.

    Non-breaking spaces (French typography: « mot », prix : 3 €) are kept.
    """
    text = _LINE_BREAKS.sub(" ", unicodedata.normalize("NFC", text))
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cc").strip()


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#&~])")
_MD_LINE_START = re.compile(r"^([-+=]|\d+(?=[.)]))")


def md(text: str) -> str:
    """People's text, on one line, with nothing that Markdown would read as markup.

    Every character that could start emphasis, code, a link, HTML, a table cell or a heading
    is backslash-escaped; so is what would start a list or a setext heading at the line start.
    """
    text = _MD_SPECIAL.sub(r"\\\1", one_line(text))
    match = _MD_LINE_START.match(text)
    if match is None:
        return text
    if match.group(1)[0].isdigit():  # "1. " or "1) ": escape the dot or parenthesis
        end = match.end()
        return text[:end] + "\\" + text[end:]
    return "\\" + text


def idea_refs(view: SynthesisView) -> dict[str, str]:
    return {idea.id: idea.ref for theme in view.themes for idea in theme.ideas}


def _duplicate_note(idea: IdeaView, refs: dict[str, str], words: Wording) -> str | None:
    if idea.duplicate_of is None:
        return None
    ref = refs.get(idea.duplicate_of)
    return words.near_duplicate_unknown if ref is None else words.near_duplicate.format(ref=ref)


def _action_cells(action: DraftAction, words: Wording) -> list[tuple[str, str]]:
    return [
        (words.first_step, action.first_step),
        (words.resources, action.resources or ""),
        (words.indicator, action.indicator),
        (words.due_date, words.day(action.due_date)),
    ]


# ---------------------------------------------------------------------------------------------
# Markdown


def markdown(view: SynthesisView, language: Language) -> str:
    words = wording(language)
    refs = idea_refs(view)
    out: list[str] = [f"# {words.title}", ""]

    for line in status_lines(view, words):
        out += [f"> **{line}**", ""]

    out += [f"## {words.contract}", ""]
    contract = one_line(view.contract or "")
    out += [md(contract) if contract else f"*{words.no_contract}*", ""]

    out += [f"## {words.most_relevant}", ""]
    if view.most_relevant:
        for relevant in view.most_relevant:
            lead = f"**{md(words.refs(relevant.refs))}** " if relevant.refs else ""
            where = words.in_theme.format(number=relevant.theme_number)
            out.append(f"- {lead}{md(relevant.text)} *({where})*")
    else:
        out.append(f"*{words.most_relevant_none}*")
    out.append("")

    out += [f"## {words.themes}", ""]
    if not any(theme.ideas for theme in view.themes):
        out += [f"*{words.themes_none}*", ""]
    for theme in view.themes:
        if not theme.ideas:
            continue
        out += [f"### {md(words.theme.format(number=theme.number, label=one_line(theme.label)))}"]
        out.append("")
        for idea in theme.ideas:
            line = f"- **{md(idea.ref)}** {md(idea.text)}"
            if idea.author is not None and one_line(idea.author.name):
                line += f" — *{md(idea.author.name)}*"
            note = _duplicate_note(idea, refs, words)
            if note is not None:
                line += f" ({md(note)})"
            out.append(line)
        out.append("")

    if view.questions or view.status in (DraftStatus.ready, DraftStatus.failed):
        out += [f"## {words.questions}", ""]
        for number, question in enumerate(view.questions, 1):
            cites = f" *({md(words.cites.format(refs=words.refs(question.refs)))})*"
            out.append(f"{number}. {md(question.text)}{cites if question.refs else ''}")
        if not view.questions:
            out.append(f"*{words.questions_none}*")
        out.append("")

    if view.actions or view.status in (DraftStatus.ready, DraftStatus.failed):
        out += [f"## {words.actions}", ""]
        if view.actions:
            header = [words.objective] + [h for h, _ in _action_cells(view.actions[0], words)]
            header.append(words.cited)
            out.append("| " + " | ".join(md(h) for h in header) + " |")
            out.append("|" + " --- |" * len(header))
            for action in view.actions:
                cells = [action.objective] + [v for _, v in _action_cells(action, words)]
                cells.append(words.refs(action.refs))
                out.append("| " + " | ".join(md(c) or " " for c in cells) + " |")
        else:
            out.append(f"*{words.actions_none}*")
        out.append("")

    return "\n".join(out).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------
# PDF

FONT_PACKAGE = "font_source_sans_pro"
FONT_FILES = {
    "": "SourceSansPro-Regular.ttf",
    "B": "SourceSansPro-Bold.ttf",
    "I": "SourceSansPro-It.ttf",
}

# Close equivalents for characters a font may lack; tried before the NFKD decomposition.
REPLACEMENTS: dict[str, str] = {
    "\u202f": "\u00a0",  # narrow no-break space (French « », ; : ! ?)
    "\u2007": " ",
    "\u2009": " ",
    "\u200a": " ",
    "\u2002": " ",
    "\u2003": " ",
    "\u00ad": "",  # soft hyphen
    "\u200b": "",
    "\u200c": "",
    "\u200d": "",
    "\u2060": "",
    "\ufeff": "",
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2212": "-",
    "\u2015": "—",
    "\u2039": "<",
    "\u203a": ">",
    "\u201b": "'",
    "\u201f": '"',
    "\u2032": "'",
    "\u2033": '"',
    "\u2190": "<-",
    "\u2192": "->",
    "\u2194": "<->",
    "\u21d2": "=>",
    "\u2264": "<=",
    "\u2265": ">=",
    "\u2260": "!=",
    "\u2248": "~",
    "\u2022": "-",
    "\u25cf": "-",
    "\u25aa": "-",
    "\u2713": "v",
    "\u2714": "v",
    "\u2717": "x",
    "\u2718": "x",
    "\u2605": "*",
    "\u2606": "*",
    "\u0141": "L",
    "\u0142": "l",
    "\u0110": "D",
    "\u0111": "d",
    "\u0131": "i",
    "\u0153": "oe",
    "\u0152": "OE",
    "\u2026": "...",
    "\u2014": "-",
    "\u2013": "-",
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u00ab": '"',
    "\u00bb": '"',
}


def printable(text: str, drawable: Callable[[str], bool]) -> str:
    """`text` with every character the font cannot draw replaced by a close equivalent or "?"."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", text):
        if ch == "\n" or drawable(ch):
            out.append(ch)
            continue
        if unicodedata.category(ch) == "Cc":
            out.append(" " if ch == "\t" else "")
            continue
        for candidate in (REPLACEMENTS.get(ch), _without_marks(ch)):
            if candidate is not None and all(drawable(c) for c in candidate):
                out.append(candidate)
                break
        else:
            out.append("" if unicodedata.category(ch).startswith("M") else "?")
    return "".join(out)


def _without_marks(ch: str) -> str | None:
    """ą -> a, ﬁ -> fi, ² -> 2; None when the decomposition leaves nothing new."""
    bare = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    return bare if bare and bare != ch else None


def font_files() -> dict[str, Path] | None:
    """The bundled TrueType files, or None when the font package is not installed."""
    try:
        folder = resources.files(FONT_PACKAGE) / "files"
    except ModuleNotFoundError:
        return None
    paths = {style: Path(str(folder / name)) for style, name in FONT_FILES.items()}
    return paths if all(path.is_file() for path in paths.values()) else None


class _Document(FPDF):
    def __init__(self, words: Wording, files: dict[str, Path] | None) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.wording = words
        self.set_margins(left=20, top=18, right=20)
        self.set_auto_page_break(auto=True, margin=18)
        if files is not None:
            self.face = "SourceSans"
            for style, path in files.items():
                self.add_font(self.face, style=style, fname=path)
            # What every style can draw (the bold and italic cover what the regular does).
            cmaps = [
                set(font.cmap)
                for key, font in self.fonts.items()
                if key.startswith(self.face.lower()) and isinstance(font, TTFFont)
            ]
            drawable = set.intersection(*cmaps) if cmaps else set()
            self.drawable: Callable[[str], bool] = lambda ch: ord(ch) in drawable
        else:
            self.face = "Helvetica"
            self.core_fonts_encoding = "windows-1252"
            self.drawable = in_windows_1252

    def clean(self, text: str) -> str:
        return printable(text, self.drawable)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(self.face, "", 8)
        self.set_text_color(120)
        page = self.wording.page.format(page=self.page_no(), pages=self.str_alias_nb_pages)
        self.cell(0, 5, self.clean(page), align="C")
        self.set_text_color(0)

    def heading(self, text: str, size: float, space: float = 4) -> None:
        if self.will_page_break(space + size * 0.45 + 14):  # no heading alone at a page's foot
            self.add_page()
        else:
            self.ln(space)
        self.set_font(self.face, "B", size)
        self.multi_cell(
            0, size * 0.45, self.clean(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        self.ln(1.5)

    def paragraph(self, text: str, style: str = "", size: float = 11) -> None:
        self.set_font(self.face, style, size)
        self.multi_cell(
            0, size * 0.5, self.clean(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        self.ln(1)

    def item(self, marker: str, parts: list[tuple[str, str]], indent: float = 7) -> None:
        """One list item: `marker` hanging, then (style, text) runs wrapping under each other."""
        left = self.l_margin
        height = 5.5
        self.set_font(self.face, "", 11)
        self.set_x(left)
        if indent > 0:
            self.cell(indent, height, self.clean(marker))
        self.set_left_margin(left + indent)
        try:
            self.set_x(left + indent)
            for style, text in parts:
                if text:
                    self.set_font(self.face, style, 11)
                    self.write(height, self.clean(text))
            self.ln(height)
        finally:
            self.set_left_margin(left)
        self.set_x(left)
        self.ln(1)


def in_windows_1252(ch: str) -> bool:
    try:
        ch.encode("windows-1252")
    except UnicodeEncodeError:
        return False
    return unicodedata.category(ch) != "Cc"


def pdf(view: SynthesisView, language: Language, *, compress: bool = True) -> bytes:
    """The synthesis as an A4 PDF. `compress=False` leaves the content streams readable."""
    return render(view, language, font_files(), compress=compress)


def render(
    view: SynthesisView, language: Language, files: dict[str, Path] | None, *, compress: bool
) -> bytes:
    """The PDF with the given TrueType files, or with the windows-1252 core font for None."""
    words = wording(language)
    refs = idea_refs(view)
    doc = _Document(words, files)
    doc.set_compression(compress)
    doc.set_lang(str(language))
    doc.set_title(doc.clean(words.title))
    doc.add_page()

    doc.heading(words.title, 18, space=0)
    for line in status_lines(view, words):
        doc.set_text_color(150, 60, 0)
        doc.paragraph(line, style="B", size=10.5)
        doc.set_text_color(0)

    doc.heading(words.contract, 14)
    contract = one_line(view.contract or "")
    doc.paragraph(contract or words.no_contract, style="" if contract else "I")

    doc.heading(words.most_relevant, 14)
    for relevant in view.most_relevant:
        where = words.in_theme.format(number=relevant.theme_number)
        parts = [("B", words.refs(relevant.refs) + "  " if relevant.refs else "")]
        parts += [("", one_line(relevant.text)), ("I", f" ({where})")]
        doc.item("•", parts)
    if not view.most_relevant:
        doc.paragraph(words.most_relevant_none, style="I")

    doc.heading(words.themes, 14)
    if not any(theme.ideas for theme in view.themes):
        doc.paragraph(words.themes_none, style="I")
    for theme in view.themes:
        if not theme.ideas:
            continue
        doc.heading(words.theme.format(number=theme.number, label=one_line(theme.label)), 12, 2)
        for idea in theme.ideas:
            parts = [("B", idea.ref + "  "), ("", one_line(idea.text))]
            if idea.author is not None and one_line(idea.author.name):
                parts.append(("I", f" — {one_line(idea.author.name)}"))
            note = _duplicate_note(idea, refs, words)
            if note is not None:
                parts.append(("I", f" ({note})"))
            doc.item("•", parts)

    if view.questions or view.status in (DraftStatus.ready, DraftStatus.failed):
        doc.heading(words.questions, 14)
        for number, question in enumerate(view.questions, 1):
            parts = [("", one_line(question.text))]
            if question.refs:
                parts.append(("I", f" ({words.cites.format(refs=words.refs(question.refs))})"))
            doc.item(f"{number}.", parts)
        if not view.questions:
            doc.paragraph(words.questions_none, style="I")

    if view.actions or view.status in (DraftStatus.ready, DraftStatus.failed):
        doc.heading(words.actions, 14)
        for number, action in enumerate(view.actions, 1):
            title = f"{words.action.format(number=number)} — {one_line(action.objective)}"
            doc.heading(title, 12, 2)
            for label, value in _action_cells(action, words):
                doc.item("", [("B", words.field.format(label=label)), ("", one_line(value))], 0)
            if action.refs:
                doc.item("", [("I", words.cites.format(refs=words.refs(action.refs)))], indent=0)
        if not view.actions:
            doc.paragraph(words.actions_none, style="I")

    return bytes(doc.output())
