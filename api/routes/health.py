from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import app_state

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency is not ready."}})
def readyz(request: Request) -> JSONResponse:
    """The database answers and the master key is loaded."""
    state = app_state(request)
    checks: dict[str, str] = {"master_key": "loaded" if state.master else "missing"}
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    ready = checks == {"master_key": "loaded", "database": "ok"}
    # The model is optional for readiness: the frame works without it.
    checks["llm"] = state.llm_state()
    return JSONResponse(status_code=200 if ready else 503, content={"ready": ready, **checks})
