"""Client rotation within a cycle: each member is client once per cycle."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class SecondClientTurn(Exception):
    """A member already had a client turn in this cycle and no override was given."""

    def __init__(self, member_id: str) -> None:
        self.member_id = member_id
        super().__init__(
            "This member has already been client in this cycle. A facilitator may override "
            "by giving an `override_reason`."
        )


@dataclass(frozen=True)
class RotationProposal:
    candidates: list[str]
    already_client: list[str]
    sessions_planned: int
    cycle_size: int


def propose(
    members: Sequence[str], past_clients: Iterable[str], cycle_size: int
) -> RotationProposal:
    """Members not yet client in the cycle, in the given member order."""
    seen = set(past_clients)
    return RotationProposal(
        candidates=[m for m in members if m not in seen],
        already_client=[m for m in members if m in seen],
        sessions_planned=len(seen),
        cycle_size=cycle_size,
    )


def check_client_turn(
    client: str, past_clients: Iterable[str], override_reason: str | None
) -> bool:
    """Return True when the turn needs the override (and has one); raise when refused."""
    if client not in set(past_clients):
        return False
    if not override_reason or not override_reason.strip():
        raise SecondClientTurn(client)
    return True
