"""What a model call can fail with; each maps to one HTTP status through DomainError.

`kind` is what the audit of model calls records about a failure: a word, never the message.
"""

from __future__ import annotations

from companion.errors import Conflict, DomainError


class PolicyRefused(Conflict):
    """The group's policy forbids this endpoint; raised before a byte is sent."""

    kind = "policy"

    def __init__(self, policy: str, host: str, reason: str) -> None:
        self.policy = policy
        self.host = host
        super().__init__(
            f"Model call refused by the group's '{policy}' policy: the endpoint host '{host}' "
            f"{reason}. Under 'on_prem' a model may only be called on loopback, private-network "
            "or link-local addresses, or on a host of the operator's allowlist "
            "(COMPANION_LLM_ALLOWLIST). Point COMPANION_LLM_BASE_URL at an on-prem server, or "
            "have a facilitator or an administrator switch the group's policy to "
            "'cloud_allowed'."
        )


class ModelError(DomainError):
    kind = "error"
    # Given up on purpose (the caller wants a newer run), not failed: audited as `cancelled`.
    cancelled = False

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind or type(self).kind


class ModelUnavailable(ModelError):
    """The model server is down, too slow or overloaded: worth retrying later."""

    status = 503
    kind = "unavailable"


class ModelCallFailed(ModelError):
    """The model server refused the request (bad key, unknown model...): a settings problem."""

    status = 502
    kind = "refused_by_server"


class ModelOutputInvalid(ModelError):
    """The model's answer did not match the expected structure, even after one retry."""

    status = 502
    kind = "invalid_output"
