"""The session state machine: phases run strictly in order, one at a time.

Pure logic over a small immutable state, so every store and every test uses the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from companion.method.phases import PHASES, Phase


class Move(StrEnum):
    start = "start"
    end = "end"


class IllegalTransition(Exception):
    """A phase move that the frame does not allow now; `allowed` says what is."""

    def __init__(self, attempted: str, state: PhaseState) -> None:
        self.attempted = attempted
        self.state = state
        self.allowed = [f"{move} {phase}" for move, phase in state.allowed_moves()]
        allowed = ", ".join(self.allowed) if self.allowed else "nothing (the session is closed)"
        super().__init__(f"Cannot {attempted} now: {state.describe()}. Allowed now: {allowed}.")


@dataclass(frozen=True)
class PhaseState:
    """`completed` phases have ended; `running` is the phase under way, if any."""

    completed: int = 0
    running: Phase | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.completed <= len(PHASES):
            raise ValueError(f"completed must be within 0..{len(PHASES)}")
        if self.running is not None and self.running.number != self.completed + 1:
            raise ValueError("the running phase must be the one after the completed ones")

    @property
    def closed(self) -> bool:
        return self.completed == len(PHASES)

    @property
    def started(self) -> bool:
        return self.completed > 0 or self.running is not None

    @property
    def next_phase(self) -> Phase | None:
        """The phase that may start next, once none is running."""
        if self.running is not None or self.closed:
            return None
        return PHASES[self.completed]

    def has_reached(self, phase: Phase) -> bool:
        """True once `phase` has started (running or ended)."""
        return self.completed >= phase.number or self.running == phase

    def allowed_moves(self) -> list[tuple[Move, Phase]]:
        if self.running is not None:
            return [(Move.end, self.running)]
        nxt = self.next_phase
        return [(Move.start, nxt)] if nxt is not None else []

    def describe(self) -> str:
        if self.closed:
            return "the session is closed"
        if self.running is not None:
            return f"phase '{self.running}' is running"
        if self.completed == 0:
            return "no phase has started yet"
        return f"phase '{PHASES[self.completed - 1]}' has ended"

    def start(self, phase: Phase) -> PhaseState:
        if (Move.start, phase) not in self.allowed_moves():
            raise IllegalTransition(f"start phase '{phase}'", self)
        return PhaseState(self.completed, phase)

    def end(self, phase: Phase) -> PhaseState:
        if (Move.end, phase) not in self.allowed_moves():
            raise IllegalTransition(f"end phase '{phase}'", self)
        return PhaseState(self.completed + 1, None)

    def apply(self, move: Move, phase: Phase) -> PhaseState:
        return self.start(phase) if move is Move.start else self.end(phase)
