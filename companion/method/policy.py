"""Where a group's model calls may go: a setting of the group, enforced by the LLM gateway."""

from __future__ import annotations

from enum import StrEnum


class Policy(StrEnum):
    on_prem = "on_prem"  # loopback, private networks and the allowlist only (the default)
    cloud_allowed = "cloud_allowed"  # the group opted in to endpoints off the premises
