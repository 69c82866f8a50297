"""All settings in one place; every field can be set with a COMPANION_ environment variable."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TRACING_VARIABLES = (
    "LANGSMITH_TRACING",
    "LANGSMITH_TRACING_V2",
    "LANGCHAIN_TRACING_V2",
    "LANGCHAIN_TRACING",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COMPANION_", env_file=None, extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="Where the embedded defaults live.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file under the data dir."
    )
    master_key: str | None = Field(
        default=None, description="Base64 master key (32 bytes); overrides master_key_file."
    )
    master_key_file: Path | None = Field(
        default=None, description="Master key file; default: <data_dir>/master.key, created once."
    )
    host: str = Field(default="127.0.0.1", description="Interface the service listens on.")
    port: int = Field(default=8000, description="Port the service listens on.")
    max_text_chars: int = Field(default=20_000, description="Longest note or learning.")
    max_request_bytes: int = Field(default=1_000_000, description="Largest JSON request body.")
    llm_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible endpoint for models; unset: a local llama.cpp server.",
    )
    llm_model: str = Field(default="local", description="Model name sent to the endpoint.")
    llm_api_key: str = Field(default="none", description="API key for the endpoint, if any.")
    llm_timeout_s: float = Field(default=60, gt=0, description="Longest wait for one answer.")
    llm_retries: int = Field(
        default=1, ge=0, le=5, description="Retries of a model call the server failed."
    )
    llm_max_tokens: int = Field(default=1024, ge=16, description="Longest answer, in tokens.")
    llm_temperature: float = Field(
        default=0.2, ge=0, le=2, description="Sampling temperature of model calls."
    )
    llm_local_model: str = Field(
        default="auto",
        description="Local llama.cpp model when llm_base_url is unset: auto | qwen2.5-1.5b | "
        "smollm2-135m | a .gguf path | off.",
    )
    llm_local_threads: int = Field(default=1, ge=1, description="Threads of the local model.")
    llm_local_ctx: int = Field(default=8192, ge=512, description="Context of the local model.")
    llm_local_preload: bool = Field(
        default=False,
        description="Start the local model in the background when the service starts; "
        "default: on the first call that needs it.",
    )
    assist_background: bool = Field(
        default=True,
        description="Keep the ideas, themes and draft synthesis of running consultations "
        "current in the background, so the draft is ready when phase 4 ends.",
    )
    assist_poll_s: float = Field(
        default=5.0, gt=0, description="How often the background assistance looks for new ideas."
    )
    assist_retry_s: float = Field(
        default=60.0, ge=0, description="Wait before a failed draft synthesis is tried again."
    )
    llm_allowlist: list[str] = Field(
        default_factory=list,
        description="Hosts (or CIDR networks) that on_prem groups may call besides private ones.",
    )
    memory_enabled: bool = Field(
        default=True, description="Index session content into each group's sealed memory."
    )
    chroma_url: str | None = Field(
        default=None,
        description="Chroma server (http://host:port); default: embedded Chroma under the data dir.",
    )
    chroma_path: Path | None = Field(
        default=None, description="Embedded Chroma directory; default: <data_dir>/chroma."
    )
    chroma_timeout_s: float = Field(
        default=10, gt=0, description="Longest wait for one answer of the Chroma server."
    )
    memory_embedder: Literal["use", "e5", "openai"] = Field(
        default="use",
        description="Embeddings: 'use' (multilingual USE v3, bundled), 'e5' (multilingual-e5-small, "
        "bundled, needs the 'e5' extra) or 'openai' (an OpenAI-compatible embeddings endpoint).",
    )
    memory_embeddings_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL for memory_embedder=openai."
    )
    memory_embeddings_model: str = Field(
        default="local", description="Embeddings model name sent to that endpoint."
    )
    memory_embeddings_api_key: str = Field(default="none", description="Its API key, if any.")
    memory_embedding_threads: int = Field(
        default=1, ge=1, le=64, description="CPU threads for the bundled embedding models."
    )
    memory_max_query_chars: int = Field(default=1000, ge=1, description="Longest memory query.")
    memory_snippet_chars: int = Field(
        default=400, ge=20, description="Longest snippet a memory search returns per hit."
    )

    speech_model_dir: Path | None = Field(
        default=None,
        description="A CTranslate2 Whisper directory (small, medium, large-v3...); default: the "
        "bundled multilingual Whisper base.",
    )
    speech_cache_dir: Path | None = Field(
        default=None, description="Where the bundled model is assembled; default <data_dir>/models."
    )
    speech_device: Literal["cpu", "cuda"] = Field(default="cpu", description="Where Whisper runs.")
    speech_compute_type: str = Field(
        default="int8", description="CTranslate2 compute type: int8, int8_float16, float16, ..."
    )
    speech_cpu_threads: int = Field(
        default=2, ge=1, le=64, description="Threads per transcription."
    )
    speech_beam_size: int = Field(default=5, ge=1, le=10, description="Beam search width.")
    redis_url: str | None = Field(
        default=None,
        description="Redis for the transcription queue (redis://host:6379/0); default: an "
        "embedded SQLite queue under the data dir.",
    )
    transcription_worker: bool = Field(
        default=True, description="Run a transcription worker inside the API process."
    )
    transcription_workers: int = Field(
        default=1, ge=1, le=32, description="Worker threads per consumer (API or companion worker)."
    )
    transcription_lease_s: float = Field(
        default=120,
        gt=0,
        description="A running job silent for this long is taken as abandoned and run again.",
    )
    max_upload_bytes: int = Field(
        default=200_000_000, ge=1, description="Largest recording upload, in bytes."
    )
    max_audio_seconds: float = Field(
        default=7200, gt=0, description="Longest recording accepted, in seconds."
    )
    live_window_s: float = Field(
        default=20, ge=4, le=28, description="Live mode: seconds of audio that start a pass."
    )
    live_hold_s: float = Field(
        default=4,
        ge=1,
        le=10,
        description="Live mode: the last seconds of a pass are not final; the next pass "
        "transcribes them again with what follows.",
    )
    live_max_frame_bytes: int = Field(
        default=1_048_576, ge=1024, description="Live mode: largest audio frame, in bytes."
    )
    live_max_seconds: float = Field(
        default=7200, gt=0, description="Live mode: longest audio one connection may send."
    )
    live_idle_s: float = Field(
        default=60, gt=0, description="Live mode: a connection silent this long is closed."
    )

    public_url: str | None = Field(
        default=None,
        description="The address people open, for the links the service prints and the "
        "invitations it makes (https://companion.example.org); default: http://host:port.",
    )
    web_session_days: float = Field(
        default=30, gt=0, description="A browser stays signed in this long after its last use."
    )
    invitation_days: float = Field(
        default=7, gt=0, description="An invitation link works once, within this many days."
    )
    web_secure_cookies: bool | None = Field(
        default=None,
        description="Mark cookies Secure (HTTPS only); default: when public_url is https.",
    )

    @model_validator(mode="after")
    def _no_prompt_tracing(self) -> Self:
        """langchain-core (prompt templates) comes with LangSmith, whose tracing, switched on
        by these variables, would send prompts and answers off the premises."""
        on = [v for v in TRACING_VARIABLES if os.environ.get(v, "").strip().lower() == "true"]
        if on:
            raise ValueError(
                f"{', '.join(on)} is set to true: LangSmith tracing would send the groups' "
                "prompts off the premises. Unset it to start Codev Companion."
            )
        return self

    @property
    def resolved_chroma_path(self) -> Path:
        return self.chroma_path or self.data_dir / "chroma"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'companion.db').resolve()}"

    @property
    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def secure_cookies(self) -> bool:
        if self.web_secure_cookies is not None:
            return self.web_secure_cookies
        return self.resolved_public_url.startswith("https://")

    @property
    def resolved_master_key_file(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"


@lru_cache
def get_settings() -> Settings:
    return Settings()
