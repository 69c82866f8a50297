"""The phase state machine: unit tests, properties over random moves, the same rules over HTTP,
and the one-sentence rule of the contract."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from companion.method.contract import one_sentence_problem, sentences
from companion.method.machine import IllegalTransition, Move, PhaseState
from companion.method.phases import PHASES, Phase
from tests.world import Circle

MOVES = st.tuples(st.sampled_from(Move), st.sampled_from(Phase))
ALL_MOVES = list(itertools.product(Move, PHASES))


def reachable_states() -> list[PhaseState]:
    """The 13 states a session can be in: between phases (0..6 ended) or during one."""
    states = [PhaseState(completed=n) for n in range(len(PHASES) + 1)]
    states += [PhaseState(completed=n, running=PHASES[n]) for n in range(len(PHASES))]
    return states


def allowed_text(state: PhaseState) -> str:
    moves = [f"{m} {p}" for m, p in state.allowed_moves()]
    return ", ".join(moves) if moves else "nothing (the session is closed)"


def check_invariants(state: PhaseState) -> None:
    assert 0 <= state.completed <= len(PHASES)
    assert state.running is None or state.running.number == state.completed + 1
    assert len(state.allowed_moves()) <= 1
    if state.closed:
        assert state.running is None
        assert state.allowed_moves() == []
        assert state.next_phase is None
    else:
        assert len(state.allowed_moves()) == 1


# --- unit tests ----------------------------------------------------------------------------


def test_the_twelve_legal_moves_in_order_reach_closed():
    state = PhaseState()
    assert (state.started, state.closed, state.next_phase) == (False, False, Phase.presentation)
    assert state.describe() == "no phase has started yet"
    done: list[tuple[Move, Phase]] = []
    for phase in PHASES:
        assert state.allowed_moves() == [(Move.start, phase)]
        state = state.apply(Move.start, phase)
        done.append((Move.start, phase))
        assert state.running is phase
        assert state.started
        assert state.has_reached(phase)
        assert state.next_phase is None
        assert state.describe() == f"phase '{phase}' is running"
        assert state.allowed_moves() == [(Move.end, phase)]
        state = state.apply(Move.end, phase)
        done.append((Move.end, phase))
        assert state.running is None
        assert state.completed == phase.number
        assert state.has_reached(phase)
        check_invariants(state)
    assert done == [(m, p) for p in PHASES for m in (Move.start, Move.end)]
    assert len(done) == 12
    assert state.closed
    assert state == PhaseState(completed=6)
    assert state.allowed_moves() == []
    assert state.describe() == "the session is closed"


def test_has_reached_follows_the_order():
    state = PhaseState(completed=2, running=Phase.contract)
    assert [state.has_reached(p) for p in PHASES] == [True, True, True, False, False, False]
    assert not PhaseState().has_reached(Phase.presentation)


@pytest.mark.parametrize("state", reachable_states(), ids=lambda s: s.describe())
def test_every_illegal_move_says_what_is_allowed_now(state):
    allowed = state.allowed_moves()
    for move, phase in ALL_MOVES:
        if (move, phase) in allowed:
            after = state.apply(move, phase)
            check_invariants(after)
            continue
        with pytest.raises(IllegalTransition) as caught:
            state.apply(move, phase)
        err = caught.value
        assert err.state is state
        assert err.attempted == f"{move} phase '{phase}'"
        assert err.allowed == [f"{m} {p}" for m, p in allowed]
        message = str(err)
        assert message.startswith(f"Cannot {move} phase '{phase}' now: {state.describe()}.")
        assert message.endswith(f"Allowed now: {allowed_text(state)}.")


def test_illegal_move_messages_read_well():
    with pytest.raises(IllegalTransition) as err:
        PhaseState().end(Phase.presentation)
    assert str(err.value) == (
        "Cannot end phase 'presentation' now: no phase has started yet. "
        "Allowed now: start presentation."
    )
    with pytest.raises(IllegalTransition) as err:
        PhaseState(completed=2).start(Phase.consultation)
    assert str(err.value) == (
        "Cannot start phase 'consultation' now: phase 'clarification' has ended. "
        "Allowed now: start contract."
    )
    with pytest.raises(IllegalTransition) as err:
        PhaseState(completed=6).start(Phase.presentation)
    assert str(err.value).endswith("Allowed now: nothing (the session is closed).")
    assert err.value.allowed == []


@pytest.mark.parametrize(
    ("completed", "running"),
    [(-1, None), (7, None), (0, Phase.contract), (3, Phase.contract), (6, Phase.learning)],
)
def test_invalid_states_cannot_be_built(completed, running):
    with pytest.raises(ValueError, match=r"completed|running"):
        PhaseState(completed=completed, running=running)


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=200)
@given(st.lists(MOVES, max_size=40))
def test_random_moves_never_reach_an_invalid_state(actions):
    state = PhaseState()
    for move, phase in actions:
        before = state
        if (move, phase) in before.allowed_moves():
            state = state.apply(move, phase)
        else:
            with pytest.raises(IllegalTransition) as err:
                state.apply(move, phase)
            assert err.value.state == before
        check_invariants(state)
        assert state.completed >= before.completed
        assert state.completed - before.completed <= 1


class PhaseMachine(RuleBasedStateMachine):
    """Random moves, legal or not; the state stays valid and phases end in order."""

    def __init__(self) -> None:
        super().__init__()
        self.state = PhaseState()
        self.highest = 0
        self.ended: list[Phase] = []

    @rule(move=st.sampled_from(Move), phase=st.sampled_from(Phase))
    def any_move(self, move: Move, phase: Phase) -> None:
        if (move, phase) not in self.state.allowed_moves():
            with pytest.raises(IllegalTransition, match="Allowed now: "):
                self.state.apply(move, phase)
            return
        self.state = self.state.apply(move, phase)
        if move is Move.end:
            self.ended.append(phase)

    @precondition(lambda self: not self.state.closed)
    @rule()
    def the_legal_move(self) -> None:
        [(move, phase)] = self.state.allowed_moves()
        self.any_move(move, phase)

    @invariant()
    def valid(self) -> None:
        check_invariants(self.state)

    @invariant()
    def completed_never_decreases(self) -> None:
        assert self.state.completed >= self.highest
        self.highest = self.state.completed

    @invariant()
    def phases_end_in_order(self) -> None:
        assert self.ended == list(PHASES[: self.state.completed])


TestPhaseMachine = PhaseMachine.TestCase
TestPhaseMachine.settings = settings(max_examples=100, stateful_step_count=20, deadline=None)


# --- the same rules over HTTP ----------------------------------------------------------------

LEGAL = "legal"  # stands for "whatever move is allowed now", so runs get deep into the session


def _check_view(view: dict, model: PhaseState) -> None:
    status = "closed" if model.closed else "running" if model.started else "planned"
    assert view["status"] == status
    current = view["current_phase"]
    assert (current["phase"] if current else None) == model.running
    assert view["next_phase"] == model.next_phase
    assert view["allowed_moves"] == [f"{m} {p}" for m, p in model.allowed_moves()]
    expected = [
        "done" if p.number <= model.completed else "running" if p == model.running else "pending"
        for p in PHASES
    ]
    assert [p["status"] for p in view["phases"]] == expected
    assert (view["closed_at"] is not None) == model.closed


def test_http_answers_follow_the_machine(api):
    circle = Circle.create(api)
    fac = circle.facilitator[1]
    sessions = f"/groups/{circle.group_id}/sessions"
    # One world per test; every example plans a fresh session in it (a second client turn
    # in the cycle needs an override reason, so always give one).
    clients = itertools.cycle(circle.members)

    @settings(max_examples=20, deadline=None)
    @given(st.lists(st.one_of(st.just(LEGAL), st.just(LEGAL), MOVES), min_size=1, max_size=12))
    @example([LEGAL] * 12 + [(Move.end, Phase.learning), (Move.start, Phase.presentation)])
    def run(actions):
        client_id, _ = next(clients)
        session = api.ok(
            "POST", sessions, fac, json={"client_id": client_id, "override_reason": "x"}
        )
        path = f"{sessions}/{session['id']}"
        model = PhaseState()
        _check_view(session, model)
        for action in actions:
            if action == LEGAL:
                move, phase = model.allowed_moves()[0] if not model.closed else ALL_MOVES[0]
            else:
                move, phase = action
            res = api.call("POST", f"{path}/phases/{phase}/{move}", fac)
            if (move, phase) in model.allowed_moves():
                assert res.status_code == 200, (move, phase, res.text)
                model = model.apply(move, phase)
                _check_view(res.json(), model)
                continue
            assert res.status_code == 409, (move, phase, res.text)
            with pytest.raises(IllegalTransition) as err:
                model.apply(move, phase)
            detail = res.json()["detail"]
            assert detail == str(err.value)
            assert f"Allowed now: {allowed_text(model)}." in detail
        _check_view(api.ok("GET", path, circle.client[1]), model)

    run()


# --- the contract is one sentence ------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Comment puis-je déléguer davantage à mon équipe ?",
        "Comment puis-je … ?",
        "Comment puis-je convaincre M. Dupont de me laisser du temps ?",
        "Comment travailler avec Mme. Durand et le Dr. Martin ?",
        "Comment répondre à « Pourquoi moi ? » sans me fâcher ?",
        "Comment gérer 2.5 ETP sans heures sup. ni stress ?",
        "Comment faire ?!",
        "How can I delegate more to my team?",
        "How do I pick a tool, e.g. Jira or Trello, for my team?",
        "Wait... what?",
        'How do I say "Stop." to my boss without a fight?',
        "How do I manage J. K. Rowling's team, i.e. a writers' room?",
        "Hélène 😅 — 日本語 : comment déléguer ?",
        "  Comment déléguer ?  ",
    ],
)
def test_one_sentence_is_accepted(text):
    assert sentences(text) == [text.strip()]
    assert one_sentence_problem(text) is None


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Comment puis-je déléguer ? Et comment recruter ?", 2),
        ("Je veux déléguer. Comment faire ?", 2),
        ("Comment déléguer ?\nComment recruter ?", 2),
        ("Comment déléguer… Vraiment ?", 2),
        ("Comment déléguer ? Élise propose une idée.", 2),
        ("How can I delegate more? I mean, to my team.", 2),
        ("I need help. How do I delegate? Fast!", 3),
        ("Comment déléguer ? 2 options me viennent.", 2),
    ],
)
def test_several_sentences_are_refused(text, found):
    parts = sentences(text)
    assert len(parts) == found
    problem = one_sentence_problem(text)
    assert problem is not None
    assert f"exactly one sentence; found {found}" in problem
    for part in parts:
        assert f"«{part}»" in problem


def test_the_refusal_quotes_both_sentences():
    problem = one_sentence_problem("Comment puis-je déléguer ? Et comment recruter ?")
    assert problem == (
        "The contract must be exactly one sentence; found 2: «Comment puis-je déléguer ?» / "
        "«Et comment recruter ?». Keep one request, or merge them into a single sentence."
    )


def test_many_sentences_quote_the_first_four():
    problem = one_sentence_problem("Comment ? Pourquoi ? Quand ? Où ? Qui ?")
    assert problem is not None
    assert "found 5" in problem
    assert "«Où ?»" in problem
    assert "«Qui ?»" not in problem


@pytest.mark.parametrize("text", ["", "   ", "...", " ? ", "…"])
def test_an_empty_contract_is_refused(text):
    assert sentences(text) == []
    assert one_sentence_problem(text) == (
        "The contract is empty; state your request to the group in one sentence."
    )
