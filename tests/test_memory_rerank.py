"""The memory search ranks what is about the question's topic before what only sounds like a
question: the nearest memories are re-ranked by the words they share with it, set back when
they are questions themselves, and drawn towards the session the question is about."""

from companion.memory import rerank
from companion.memory.rerank import Candidate
from tests.test_memory_ask import retrieved, with_notes
from tests.world import Api, Circle

ASKED = "Qu'avait-on dit sur la formation ?"
NOTES = [
    "Tu as pensé à en parler à ta direction ?",
    "Est-ce que ton équipe sait ce que tu attends d'elle ?",
    "Une petite formation interne de deux heures pourrait changer beaucoup de choses.",
    "Qu'est-ce que tu as déjà essayé ?",
]


def pool(
    similarities: list[float], bodies: list[str] = NOTES, sessions: str = ""
) -> list[Candidate]:
    """Candidates of one session (or of the sessions named letter by letter)."""
    return [
        Candidate(
            body,
            sim,
            sessions[n] if sessions else "s",
            rerank.asks_something(body, kind="note", phase="consultation"),
        )
        for n, (body, sim) in enumerate(zip(bodies, similarities, strict=True))
    ]


def test_a_word_of_the_question_counts_by_how_rare_it_is_among_the_hits():
    bodies = ["la formation des équipes", "les équipes du soir", "les équipes du matin"]
    scores = rerank.word_scores("formation des équipes", bodies)
    assert scores[0] == 1.0  # holds every word asked
    assert 0 < scores[1] == scores[2] < 0.5  # "équipes", which every hit holds, says little
    assert rerank.word_scores("de la", bodies) == [0.0, 0.0, 0.0]  # no content word asked
    assert rerank.stems("Formations formées") == {"format", "formée"}


def test_the_word_score_reorders_what_the_vectors_rank_close():
    # Cosines as the bundled embeddings give them for ASKED and NOTES: the idea comes third.
    order = rerank.order(ASKED, pool([0.311, 0.252, 0.264, 0.294]))
    assert order[0] == 2
    statements = ["Un mot.", "Deux mots.", "Trois mots.", "Quatre mots."]
    assert rerank.order("rien", pool([0.1, 0.4, 0.3, 0.2], statements)) == [1, 2, 3, 0]
    assert rerank.order("rien", []) == []


def test_a_question_shaped_memory_falls_behind_unless_questions_are_asked_about():
    bodies = ["Tu as parlé à ton équipe ?", "Parle à ton équipe dès lundi."]
    found = pool([0.45, 0.30], bodies)
    assert rerank.order("Qu'avait-on conseillé pour l'équipe ?", found) == [1, 0]
    assert rerank.order("Quelles questions avait-on posées sur l'équipe ?", found) == [0, 1]
    assert rerank.order("What had we asked about the team?", found) == [0, 1]
    # What is a question: phase 2 by the method, a contract, anything ending with "?".
    assert rerank.asks_something("Je me demandais comment", kind="note", phase="clarification")
    assert rerank.asks_something("Comment puis-je déléguer", kind="contract", phase="contract")
    assert rerank.asks_something("Why not? ", kind="segment", phase="consultation")
    assert not rerank.asks_something("Délègue.", kind="note", phase="consultation")
    assert not rerank.asks_something("Je me demandais.", kind="segment", phase="clarification")


def test_the_session_the_question_is_about_draws_its_memories_up():
    bodies = ["Une idée.", "Une autre idée.", "Une troisième.", "Une idée d'ailleurs."]
    # Session a holds three close memories, b one a little closer than a's weakest.
    order = rerank.order("rien", pool([0.50, 0.48, 0.30, 0.35], bodies, sessions="aaab"))
    assert order == [0, 1, 2, 3]  # b's memory: its session is far behind a
    alone = rerank.order("rien", pool([0.50, 0.48, 0.30, 0.35], bodies, sessions="aaaa"))
    assert alone == [0, 1, 3, 2]


def test_the_search_finds_the_idea_on_the_topic_before_the_questions(api: Api):
    circle, ids = with_notes(api, NOTES)
    assert retrieved(api, circle, ASKED)[0] == ids[2]


def test_the_ideas_of_phase_4_come_before_the_clarifying_questions_on_their_topic(api: Api):
    """A clarifying question shares every word of the topic with the search and is nearest by
    the vectors; the group's suggestions on it are what the search is for."""
    circle = Circle.create(api)
    consultant = circle.members[1][1]
    circle.phase("presentation", "start")
    circle.phase("presentation", "end")
    circle.phase("clarification", "start")
    asked = [
        api.ok("POST", circle.path("/notes"), consultant, json={"body": body})["id"]
        for body in (
            "Qui s'occupe du planning des gardes de nuit en ce moment",
            "Le planning des gardes de nuit change souvent",
        )
    ]
    circle.phase("clarification", "end")
    circle.phase("contract", "start")
    circle.phase("contract", "end")
    circle.phase("consultation", "start")
    idea = api.ok(
        "POST",
        circle.path("/notes"),
        consultant,
        json={"body": "Le planning des gardes de nuit, je le publierais un mois à l'avance."},
    )["id"]
    found = retrieved(api, circle, "Qu'avait-on suggéré pour le planning des gardes de nuit ?")
    assert found[0] == idea
    assert set(asked) <= set(found)  # set back, not hidden
