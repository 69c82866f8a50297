"""Every error answers JSON `Problem` (api/responses.py): `{"detail": "<what to fix>"}`, and a
request that does not follow the schema also lists its fields (`errors`)."""

from __future__ import annotations

import logging
from typing import Any

import fastapi.routing
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.responses import FieldError, Problem
from api.web import render
from companion.accounts.signin import LinkRefused
from companion.errors import DomainError
from companion.store.keyring import KeyGone
from companion.vault import IntegrityError, MasterKeyError

log = logging.getLogger(__name__)


def problem_response(
    status: int,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(detail=detail, errors=errors).model_dump(exclude_none=True)
    return JSONResponse(status_code=status, content=body, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    # ("body", "due_date") reads better as "due_date"; path and query names keep their origin.
    parts = loc[1:] if len(loc) > 1 and loc[0] == "body" else loc
    return ".".join(str(part) for part in parts) or "request body"


def _message(err: dict[str, Any]) -> str:
    if err.get("type") == "missing":
        return "is required"
    msg = str(err.get("msg", "invalid value"))
    return msg.removeprefix("Value error, ")


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if render.is_page(request):
        wrong = "; ".join(f"{_field(e.get('loc', ()))}: {_message(e)}" for e in errors)
        return render.error_page(request, 422, f"Invalid form: {wrong}")
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = errors[0].get("ctx", {}).get("error", "")
        return problem_response(
            400, f"The request body is not valid JSON ({detail}); send a JSON object."
        )
    fields = [FieldError(field=_field(e.get("loc", ())), message=_message(e)) for e in errors]
    summary = "; ".join(f"{f.field}: {f.message}" for f in fields)
    return problem_response(422, f"Invalid request: {summary}", fields)


def _allowed(request: Request) -> str:
    """Every method the request's path answers: each method of a path is a route of its own,
    and Starlette's 405 names only those of the first route it tried."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = contexts(request.app.routes) if contexts is not None else request.app.routes
    path = request.scope["path"].removeprefix(request.scope.get("root_path", ""))
    methods: set[str] = set()
    for route in routes:
        regex, found = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and found and regex.match(path):
            methods |= found
    return ", ".join(sorted(methods))


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        return problem_response(
            400, "The request body is not valid JSON in UTF-8; send a JSON object."
        )
    if exc.status_code == 405:
        headers = {**(exc.headers or {}), "Allow": _allowed(request)}
        exc = StarletteHTTPException(405, exc.detail, headers)
    if not isinstance(exc.detail, str):  # the body is always a Problem
        exc = StarletteHTTPException(exc.status_code, str(exc.detail), exc.headers)
    return await http_exception_handler(request, exc)


async def domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    if render.is_page(request):
        problem = exc.problem.value if isinstance(exc, LinkRefused) else None
        return render.error_page(request, exc.status, str(exc), problem)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return problem_response(exc.status, str(exc), headers=headers)


async def integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    log.error("Sealed data failed to open: %s", exc)
    return problem_response(
        500, f"Stored data failed its integrity check and was not returned: {exc}"
    )


async def concurrent_change(_request: Request, exc: Exception) -> JSONResponse:
    log.info("Refused a write that conflicts with a concurrent one: %s", exc)
    return problem_response(409, "Another request changed this at the same time; reload and retry.")


async def key_gone(_request: Request, exc: Exception) -> JSONResponse:
    return problem_response(410, str(exc))


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(IntegrityError, integrity_error)
    app.add_exception_handler(MasterKeyError, integrity_error)
    app.add_exception_handler(KeyGone, key_gone)
    app.add_exception_handler(sqlalchemy.exc.IntegrityError, concurrent_change)
