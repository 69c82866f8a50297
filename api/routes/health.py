from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import AppStateDep, MaybeMemoryDep
from api.responses import unavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses=unavailable("A dependency is not ready."))
def readyz(state: AppStateDep, memory: MaybeMemoryDep) -> JSONResponse:
    """The database answers and the master key is loaded; the memory says whether it matches
    the database (checked at start; a group whose memory lacks items is reindexed)."""
    found = state.readiness()
    found["memory"] = memory.state() if memory is not None else "off"
    return JSONResponse(status_code=200 if found["ready"] else 503, content=found)
