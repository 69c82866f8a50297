from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import AppStateDep, MaybeMemoryDep
from api.responses import unavailable

router = APIRouter(tags=["health"])

# What /readyz answers, ready (200) or not (503): `ready`, and each dependency's state.
READINESS = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["ready", "master_key", "database", "llm", "memory"],
                "properties": {
                    "ready": {"type": "boolean"},
                    "master_key": {"type": "string"},
                    "database": {"type": "string"},
                    "llm": {"type": "string"},
                    "memory": {
                        "description": "'off', or how the memory matches the database.",
                        "anyOf": [{"type": "string"}, {"type": "object"}],
                    },
                },
            }
        }
    }
}


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        200: READINESS,
        503: {**unavailable("A dependency is not ready.")[503], **READINESS},
    },
)
def readyz(state: AppStateDep, memory: MaybeMemoryDep) -> JSONResponse:
    """The database answers and the master key is loaded; the memory says whether it matches
    the database (checked at start; a group whose memory lacks items is reindexed)."""
    found = state.readiness()
    found["memory"] = memory.state() if memory is not None else "off"
    return JSONResponse(status_code=200 if found["ready"] else 503, content=found)
