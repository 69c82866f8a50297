"""The phase state machine (unit and property-based, also over HTTP) and the contract rule."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from companion.method.contract import one_sentence_problem, sentences
from companion.method.machine import IllegalTransition, Move, PhaseState
from companion.method.phases import PHASES, Phase
from tests.world import Circle

moves = st.tuples(st.sampled_from(Move), st.sampled_from(Phase))


def test_the_twelve_legal_moves_close_the_session():
    state = PhaseState()
    assert not state.started
    for phase in PHASES:
        state = state.start(phase)
        assert state.running is phase
        state = state.end(phase)
    assert state.closed
    assert state.allowed_moves() == []


def test_illegal_move_says_what_is_allowed():
    state = PhaseState().start(Phase.presentation)
    with pytest.raises(IllegalTransition) as err:
        state.start(Phase.contract)
    assert "Allowed now: end presentation" in str(err.value)
    assert err.value.allowed == ["end presentation"]
    closed = PhaseState(completed=len(PHASES))
    with pytest.raises(IllegalTransition, match="the session is closed"):
        closed.start(Phase.presentation)


def test_invalid_states_cannot_be_built():
    with pytest.raises(ValueError, match="completed"):
        PhaseState(completed=7)
    with pytest.raises(ValueError, match="running"):
        PhaseState(completed=0, running=Phase.contract)


@given(st.lists(moves, max_size=40))
@settings(max_examples=300)
def test_random_moves_never_reach_an_invalid_state(actions):
    state = PhaseState()
    for move, phase in actions:
        before = state
        try:
            state = state.apply(move, phase)
            assert (move, phase) in before.allowed_moves()
        except IllegalTransition:
            assert (move, phase) not in before.allowed_moves()
            assert state == before
        assert 0 <= state.completed <= len(PHASES)
        assert state.running is None or state.running.number == state.completed + 1
        assert state.completed >= before.completed
        assert len(state.allowed_moves()) <= 1
        if state.closed:
            assert state.running is None
            assert state.allowed_moves() == []


class PhaseMachine(RuleBasedStateMachine):
    """The same invariants, explored as a stateful model."""

    def __init__(self) -> None:
        super().__init__()
        self.state = PhaseState()
        self.ended: list[Phase] = []

    @rule(move=st.sampled_from(Move), phase=st.sampled_from(Phase))
    def act(self, move, phase):
        try:
            self.state = self.state.apply(move, phase)
            if move is Move.end:
                self.ended.append(phase)
        except IllegalTransition:
            pass

    @invariant()
    def phases_end_in_order(self):
        assert self.ended == list(PHASES[: len(self.ended)])
        assert len(self.ended) == self.state.completed


TestPhaseMachine = PhaseMachine.TestCase
TestPhaseMachine.settings = settings(max_examples=100, stateful_step_count=30)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actions=st.lists(moves, min_size=1, max_size=14))
def test_http_answers_follow_the_machine(api, actions):
    circle = Circle.create(api)
    model = PhaseState()
    for move, phase in actions:
        res = api.call("POST", circle.path(f"/phases/{phase}/{move}"), circle.facilitator[1])
        if (move, phase) in model.allowed_moves():
            assert res.status_code == 200, res.text
            model = model.apply(move, phase)
        else:
            assert res.status_code == 409, res.text
            assert "Allowed now" in res.json()["detail"]
    view = api.ok("GET", circle.path(), circle.client[1])
    assert view["allowed_moves"] == [f"{m} {p}" for m, p in model.allowed_moves()]
    running = view["current_phase"]["phase"] if view["current_phase"] else None
    assert running == (model.running.value if model.running else None)
    assert view["status"] == (
        "closed" if model.closed else "running" if model.started else "planned"
    )


@pytest.mark.parametrize(
    "text",
    [
        "Comment puis-je déléguer davantage à mon équipe ?",
        "Dans cette séance, j'aimerais que vous m'aidiez à parler à M. Dupont de mon départ.",
        "How can I say no to my boss, e.g. on weekends?",
        "Wait... what should I tell my team about the merger?",
    ],
)
def test_one_sentence_contracts_pass(text):
    assert one_sentence_problem(text) is None
    assert len(sentences(text)) == 1


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("Comment puis-je déléguer ? Et comment recruter ?", 2),
        ("I want help. How can I delegate? Also hiring!", 3),
    ],
)
def test_several_sentences_are_named(text, count):
    problem = one_sentence_problem(text)
    assert problem is not None
    assert f"found {count}" in problem
    assert "exactly one sentence" in problem
