from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import app_state
from api.state import AppState

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


def readiness(state: AppState) -> dict[str, Any]:
    """The database answers and the master key is loaded; the model's state is only told."""
    checks: dict[str, Any] = {"master_key": "loaded" if state.master else "missing"}
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    ready = checks == {"master_key": "loaded", "database": "ok"}
    # The model is optional for readiness: the frame works without it.
    checks["llm"] = state.llm_state()
    return {"ready": ready, **checks}


@router.get("/readyz", responses={503: {"description": "A dependency is not ready."}})
def readyz(request: Request) -> JSONResponse:
    """The database answers and the master key is loaded."""
    found = readiness(app_state(request))
    return JSONResponse(status_code=200 if found["ready"] else 503, content=found)
