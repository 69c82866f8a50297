"""The scoring of bench/eval/recall.py (the memory retrieval bench), on hand-made hits: no
service, no model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench" / "eval"))

from recall import category, found, holds, rank, recall  # bench/eval/recall.py

IDEA = "Tu pourrais désigner un seul interlocuteur pour tous les échanges avec lui."


def hit(source_id: str, snippet: str, kind: str = "note", phase: str = "consultation") -> dict:
    return {"source_id": source_id, "snippet": snippet, "kind": kind, "phase": phase}


def test_found_by_the_note_it_was_said_in():
    hits = [hit("n1", "Autre chose."), hit("n2", "Le client, lui… (coupé)")]
    assert found(IDEA, hits, {"n2"})
    assert rank(IDEA, hits, {"n2"}) == 2


def test_found_by_a_snippet_holding_it_even_cut_after_60_characters():
    theme = hit("t1", "client, interlocuteur\n- " + IDEA, kind="theme")
    assert holds(IDEA, theme, set())
    cut = hit("t2", "label\n- " + IDEA[:60] + "…", kind="theme")
    assert holds(IDEA, cut, set())
    assert rank(IDEA, [hit("n9", "Rien à voir."), cut], {"n1"}) == 2


def test_not_found():
    hits = [hit("n3", "Un point de suivi avec le client."), hit("n4", IDEA[:30])]
    assert not found(IDEA, hits, {"n1"})
    assert rank(IDEA, hits, {"n1"}) is None
    assert not found(IDEA, [], {"n1"})


def test_recall_averages_per_question():
    assert recall([[True, False], [True, True, True, False]]) == pytest.approx((0.5 + 0.75) / 2)
    assert recall([[False, False]]) == 0.0
    assert recall([]) == 0.0


def test_categories():
    assert category(hit("n", "?", phase="clarification")) == "clarification"
    assert category(hit("n", "x")) == "consultation"
    assert category(hit("t", "x", kind="theme")) == "theme"
    assert category(hit("c", "x", kind="contract", phase="contract")) == "contract"
    assert category(hit("n", "x", phase="presentation")) == "exposé"
