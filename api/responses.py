"""The error answers routes document in the OpenAPI spec, one wording for each kind.

Errors are problem+json (api/errors.py); a route lists what it can answer besides 200 with
these, e.g. `responses={**conflict("Phase 4 has not started."), **MODEL_CALL}`.
"""

from __future__ import annotations

from typing import Any

Responses = dict[int | str, dict[str, Any]]

MODEL_FAILED: Responses = {
    502: {"description": "The model's answer failed its checks twice; nothing changed, retry."}
}
MODEL_DOWN: Responses = {
    503: {"description": "No model configured, or the model server is down; nothing changed."}
}
# A route that calls the language model can answer both.
MODEL_CALL: Responses = {**MODEL_FAILED, **MODEL_DOWN}


def conflict(why: str) -> Responses:
    """409: the request is valid but the session is not where it can be done."""
    return {409: {"description": why}}


def unavailable(why: str) -> Responses:
    """503: a dependency other than the language model is down."""
    return {503: {"description": why}}
