"""The error answers the OpenAPI spec documents, with the one body every error has: `Problem`.

`document_errors(app)` (api/main.py calls it once the routers are in) adds to each operation
what its parts can answer, found on its dependency tree: 401 where it needs a caller, 403 and
404 by its `Access` dependency (api/deps.py) or `admin_user`, 404 for a path that names a
resource, 400, 413 and 422 where it takes a body or parameters, 409 on writes (a concurrent
change), 400 and 409 on a POST (its `Idempotency-Key`), 503 where it needs the memory, the
embeddings or the model. A route adds what only it knows with `responses=`, e.g.
`responses={**conflict("Phase 4 has not started."), **MODEL_CALL}`; its wording comes first in
the description of that status.
"""

from __future__ import annotations

import http
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from api import deps

Responses = dict[int | str, dict[str, Any]]


class FieldError(BaseModel):
    field: str = Field(
        description="The field: a body field as `due_date` or `points.0.text`, a parameter as "
        "`query.limit` or `path.phase`."
    )
    message: str = Field(description="What is wrong with it.")


class Problem(BaseModel):
    """Every error answer (api/errors.py): what to fix, in words."""

    detail: str = Field(description="What went wrong and what to do, in one or two sentences.")
    errors: list[FieldError] | None = Field(
        default=None, description="For a request that does not follow the schema: each field."
    )


MODEL_FAILED: Responses = {
    502: {"description": "The model's answer failed its checks twice; nothing changed, retry."}
}
MODEL_DOWN: Responses = {
    503: {"description": "No model configured, or the model server is down; nothing changed."}
}
# A route that calls the language model can answer both.
MODEL_CALL: Responses = {**MODEL_FAILED, **MODEL_DOWN}


def conflict(why: str) -> Responses:
    """409: the request is valid, but what it acts on is not where it can be done."""
    return {409: {"description": why}}


def unavailable(why: str) -> Responses:
    """503: a dependency other than the language model is down."""
    return {503: {"description": why}}


# --- what a route's parts can answer -------------------------------------------------------

PROBLEM_REF = "#/components/schemas/Problem"
DEFAULT_422 = "#/components/schemas/HTTPValidationError"
SAFE_METHODS = deps.SAFE_METHODS

UNAUTHENTICATED = (
    "No token (`Authorization: Bearer <token>`), or one that is unknown, revoked or expired, "
    "or whose owner was deactivated."
)
CSRF = "Signed in by the web app's cookie, the change lacks the page's CSRF token."
ADMIN = "The caller is not an administrator."
NOT_FOUND = "No such group among the caller's groups (an outsider gets this too)."
NO_SESSION = "No such session in this group."
NO_RESOURCE = "Nothing with this id here."
INVALID = (
    "The request does not follow this schema (`errors` lists each field), or breaks a rule the "
    "schema cannot say (`detail` tells which)."
)
NOT_JSON = "The body is not valid JSON in UTF-8."
TOO_LARGE = "The body is over the size limit (COMPANION_MAX_REQUEST_BYTES)."
CONCURRENT = "Another request changed this at the same time; reload and retry."
# api/idempotency.py, on every POST that sends an `Idempotency-Key`.
KEY_REUSED = "The Idempotency-Key was used with another body, or its first request still runs."
NEEDS = {
    deps.Need.member: None,
    deps.Need.facilitator: "This needs the facilitator role in this group.",
    deps.Need.manage: "This needs the facilitator role in this group, or an administrator.",
    deps.Need.participant: "Only the session's participants (client, consultants, facilitator).",
    deps.Need.client: "Only the client of this session.",
}
# Dependencies that answer 503 when what they give is not there.
UNAVAILABLE: dict[Callable[..., Any], str] = {
    deps.get_memory: "The group memory is off or not running; nothing is lost.",
    deps.get_embed: "The embedding model cannot be used right now.",
    deps.get_gateway: "No model configured, or the model server is down; nothing changed.",
}


def _tree(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _tree(sub)


def derived(route: Any) -> dict[int, list[str]]:
    """The error statuses a route's dependencies, parameters and body can answer, with why."""
    found: dict[int, list[str]] = {}

    def add(status: int, why: str | None) -> None:
        if why is not None and why not in found.setdefault(status, []):
            found[status].append(why)

    tree = list(_tree(route.dependant))
    calls = [d.call for d in tree]
    writes = bool(route.methods - SAFE_METHODS)
    params = any(
        d.path_params or d.query_params or d.header_params or d.cookie_params for d in tree
    )
    if route.body_field is not None:
        add(400, NOT_JSON)
        add(413, TOO_LARGE)
    if params or route.body_field is not None:
        add(422, INVALID)
    if deps.current_user in calls:
        add(401, UNAUTHENTICATED)
    if deps.admin_user in calls:
        add(403, ADMIN)
    for call in calls:
        if isinstance(call, deps.Access):
            add(404, NOT_FOUND)
            if isinstance(call, deps.SessionAccess):
                add(404, NO_SESSION)
            add(403, NEEDS[call.need])
        if call in UNAVAILABLE:
            add(503, UNAVAILABLE[call])
    if any(d.path_params for d in tree):
        add(404, NO_RESOURCE)  # a path parameter names something that may not exist
    if writes and deps.current_user in calls:
        add(403, CSRF)
    if writes and deps.get_db in calls:
        add(409, CONCURRENT)
    if "POST" in route.methods:
        add(409, KEY_REUSED)
    return found


# api/idempotency.py: honoured on every POST.
# api/idempotency.py, honoured on every POST. Said in each POST's description rather than as a
# header parameter: schemathesis 4.32's auth check then resends a parameter it generated.
IDEMPOTENCY_KEY = (
    "Send an `Idempotency-Key` header (a new UUID for each request) to make a retry safe: the "
    "same key and body answer as the first time did, with `Idempotent-Replayed: true`, "
    "without running again; another body with the same key is a 409. Kept a day, per caller "
    "and path."
)

FASTAPI_DEFAULT = "Validation Error"  # FastAPI's description of its own 422


def _document(operation: dict[str, Any], found: dict[int, list[str]]) -> None:
    """Merge what the route's parts can answer into its operation; every error body a Problem."""
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for status, reasons in found.items():
        response = responses.setdefault(str(status), {})
        said = response.get("description")
        if said in (FASTAPI_DEFAULT, http.HTTPStatus(status).phrase):
            said = None  # not the route's own words
        more = [why for why in reasons if not said or why.rstrip(".") not in said]
        response["description"] = " ".join([said, *more] if said else more)
    for key, response in responses.items():
        if key[0] not in "45":
            continue
        content = response.setdefault("content", {})
        media = content.get("application/json")
        if media is None or media.get("schema") in (None, {"$ref": DEFAULT_422}):
            content["application/json"] = {"schema": {"$ref": PROBLEM_REF}}
    if "401" in responses:
        responses["401"].setdefault(
            "headers",
            {"WWW-Authenticate": {"description": "`Bearer`.", "schema": {"type": "string"}}},
        )
    operation["responses"] = dict(sorted(responses.items()))


def _routes(app: FastAPI) -> Iterator[Any]:
    """Each API route as mounted (with its full path): FastAPI's route contexts, where it has
    them (0.16x), else the routes themselves."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    routes: Iterable[Any] = contexts(app.routes) if contexts is not None else app.routes
    for route in routes:
        original = getattr(route, "original_route", route)
        if isinstance(original, APIRoute) and route.include_in_schema:
            yield route


def _components() -> dict[str, Any]:
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    found: dict[str, Any] = schema.pop("$defs", {})
    return {**found, "Problem": schema}


def document_errors(app: FastAPI) -> None:
    """Have the app's spec document every operation's errors with Problem (FastAPI's own
    validation error schema is gone: no body follows it). Called once, routers in."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            for route in _routes(app):
                item = spec["paths"].get(route.path_format, {})
                found = derived(route)
                for method in route.methods:
                    if method.lower() in item:
                        _document(item[method.lower()], found)
                if "post" in item:  # a header the middleware reads, said in words: see below
                    said = item["post"].get("description", "")
                    item["post"]["description"] = f"{said}\n\n{IDEMPOTENCY_KEY}".strip()
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(_components())
            schemas.pop("HTTPValidationError", None)
            if "loc" in schemas.get("ValidationError", {}).get("properties", {}):
                del schemas["ValidationError"]  # FastAPI's, not one of ours
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
