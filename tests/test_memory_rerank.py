"""The memory search ranks what is about the question's topic before what only sounds like a
question: the nearest memories are re-ranked by the words they share with it."""

from companion.memory import rerank
from tests.test_memory_ask import retrieved, with_notes
from tests.world import Api

ASKED = "Qu'avait-on dit sur la formation ?"
NOTES = [
    "Tu as pensé à en parler à ta direction ?",
    "Est-ce que ton équipe sait ce que tu attends d'elle ?",
    "Une petite formation interne de deux heures pourrait changer beaucoup de choses.",
    "Qu'est-ce que tu as déjà essayé ?",
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
    order = rerank.order(ASKED, NOTES, [0.311, 0.252, 0.264, 0.294])
    assert order[0] == 2
    assert rerank.order("rien", NOTES, [0.1, 0.4, 0.3, 0.2]) == [1, 2, 3, 0]  # vectors alone


def test_the_search_finds_the_idea_on_the_topic_before_the_questions(api: Api):
    circle, ids = with_notes(api, NOTES)
    assert retrieved(api, circle, ASKED)[0] == ids[2]
