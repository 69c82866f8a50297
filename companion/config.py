"""All settings in one place, grouped by concern (`settings.llm.base_url`, `settings.live.window_s`).

Each setting is named by its environment variable without the COMPANION_ prefix: the group
then the field (`COMPANION_LLM_BASE_URL` is `llm.base_url`), except the few whose variable
predates the grouping (`COMPANION_CHROMA_URL` is `memory.chroma_url`: see LEGACY_NAMES). The
same flat names are accepted as keyword arguments (`Settings(llm_base_url=...)`) and by
`Settings.updated`, so a test or a command can say what an operator would set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

TRACING_VARIABLES = (
    "LANGSMITH_TRACING",
    "LANGSMITH_TRACING_V2",
    "LANGCHAIN_TRACING_V2",
    "LANGCHAIN_TRACING",
)
PREFIX = "COMPANION_"


class LlmSettings(BaseModel):
    """The language model: an OpenAI-compatible endpoint, or the local llama.cpp server."""

    base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible endpoint for models; unset: a local llama.cpp server.",
    )
    model: str = Field(default="local", description="Model name sent to the endpoint.")
    api_key: SecretStr = Field(
        default=SecretStr("none"), description="API key for the endpoint, if any."
    )
    timeout_s: float = Field(default=60, gt=0, description="Longest wait for one answer.")
    retries: int = Field(
        default=1, ge=0, le=5, description="Retries of a model call the server failed."
    )
    max_tokens: int = Field(default=1024, ge=16, description="Longest answer, in tokens.")
    temperature: float = Field(
        default=0.2, ge=0, le=2, description="Sampling temperature of model calls."
    )
    local_model: str = Field(
        default="auto",
        description="Local llama.cpp model when llm_base_url is unset: auto | qwen2.5-1.5b | "
        "smollm2-135m | a .gguf path | off.",
    )
    local_threads: int = Field(default=1, ge=1, description="Threads of the local model.")
    local_ctx: int = Field(default=8192, ge=512, description="Context of the local model.")
    local_preload: bool = Field(
        default=False,
        description="Start the local model in the background when the service starts; "
        "default: on the first call that needs it.",
    )
    allowlist: list[str] = Field(
        default_factory=list,
        description="Hosts (or CIDR networks) that on_prem groups may call besides private ones.",
    )


class AssistSettings(BaseModel):
    """The assistance kept current in the background while a consultation runs."""

    background: bool = Field(
        default=True,
        description="Keep the ideas, themes and draft synthesis of running consultations "
        "current in the background, so the draft is ready when phase 4 ends.",
    )
    poll_s: float = Field(
        default=5.0, gt=0, description="How often the background assistance looks for new ideas."
    )
    retry_s: float = Field(
        default=60.0, ge=0, description="Wait before a failed draft synthesis is tried again."
    )


class MemorySettings(BaseModel):
    """Each group's sealed memory: Chroma and the sentence embeddings."""

    enabled: bool = Field(
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
    embedder: Literal["use", "e5", "openai"] = Field(
        default="use",
        description="Embeddings: 'use' (multilingual USE v3, bundled), 'e5' (multilingual-e5-small, "
        "bundled, needs the 'e5' extra) or 'openai' (an OpenAI-compatible embeddings endpoint).",
    )
    embeddings_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL for memory_embedder=openai."
    )
    embeddings_model: str = Field(
        default="local", description="Embeddings model name sent to that endpoint."
    )
    embeddings_api_key: SecretStr = Field(
        default=SecretStr("none"), description="Its API key, if any."
    )
    embedding_threads: int = Field(
        default=1, ge=1, le=64, description="CPU threads for the bundled embedding models."
    )
    max_query_chars: int = Field(default=1000, ge=1, description="Longest memory query.")
    snippet_chars: int = Field(
        default=400, ge=20, description="Longest snippet a memory search returns per hit."
    )


class SpeechSettings(BaseModel):
    """Transcription: the Whisper model, the queue and its workers, the uploads' limits."""

    model_dir: Path | None = Field(
        default=None,
        description="A CTranslate2 Whisper directory (small, medium, large-v3...); default: the "
        "bundled multilingual Whisper base.",
    )
    cache_dir: Path | None = Field(
        default=None, description="Where the bundled model is assembled; default <data_dir>/models."
    )
    device: Literal["cpu", "cuda"] = Field(default="cpu", description="Where Whisper runs.")
    compute_type: str = Field(
        default="int8", description="CTranslate2 compute type: int8, int8_float16, float16, ..."
    )
    cpu_threads: int = Field(default=2, ge=1, le=64, description="Threads per transcription.")
    beam_size: int = Field(default=5, ge=1, le=10, description="Beam search width.")
    preload: bool = Field(
        default=True,
        description="`companion serve` loads the Whisper models in the background at start "
        "(else on the first recording, which then waits for them).",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for the transcription queue (redis://host:6379/0); default: an "
        "embedded SQLite queue under the data dir.",
    )
    worker: bool = Field(
        default=True, description="Run a transcription worker inside the API process."
    )
    workers: int = Field(
        default=1, ge=1, le=32, description="Worker threads per consumer (API or companion worker)."
    )
    lease_s: float = Field(
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


class LiveSettings(BaseModel):
    """Live mode: audio streamed over the WebSocket while a phase runs."""

    window_s: float = Field(
        default=20, ge=4, le=28, description="Live mode: seconds of audio that start a pass."
    )
    hold_s: float = Field(
        default=4,
        ge=1,
        le=10,
        description="Live mode: the last seconds of a pass are not final; the next pass "
        "transcribes them again with what follows.",
    )
    max_frame_bytes: int = Field(
        default=1_048_576, ge=1024, description="Live mode: largest audio frame, in bytes."
    )
    max_seconds: float = Field(
        default=7200, gt=0, description="Live mode: longest audio one connection may send."
    )
    idle_s: float = Field(
        default=60, gt=0, description="Live mode: a connection silent this long is closed."
    )


GROUPS: dict[str, type[BaseModel]] = {
    "llm": LlmSettings,
    "assist": AssistSettings,
    "memory": MemorySettings,
    "speech": SpeechSettings,
    "live": LiveSettings,
}

# Variables named before the settings were grouped: (group, field) they set.
LEGACY_NAMES: dict[str, tuple[str, str]] = {
    "chroma_url": ("memory", "chroma_url"),
    "chroma_path": ("memory", "chroma_path"),
    "chroma_timeout_s": ("memory", "chroma_timeout_s"),
    "redis_url": ("speech", "redis_url"),
    "transcription_worker": ("speech", "worker"),
    "transcription_workers": ("speech", "workers"),
    "transcription_lease_s": ("speech", "lease_s"),
    "max_upload_bytes": ("speech", "max_upload_bytes"),
    "max_audio_seconds": ("speech", "max_audio_seconds"),
}


def flat_names() -> dict[str, tuple[str, str]]:
    """Every grouped setting's flat name (its variable without COMPANION_) -> (group, field)."""
    names = {
        f"{group}_{name}": (group, name)
        for group, model in GROUPS.items()
        for name in model.model_fields
    }
    for flat, (group, name) in LEGACY_NAMES.items():
        del names[f"{group}_{name}"]
        names[flat] = (group, name)
    return names


def _nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """Flat names among `values` moved into their group's dict (a flat name wins)."""
    names = flat_names()
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in names:
            continue
        out[key] = dict(value) if key in GROUPS and isinstance(value, Mapping) else value
    for key, value in values.items():
        if key in names:
            group, name = names[key]
            nested = out.setdefault(group, {})
            if isinstance(nested, BaseModel):
                nested = out[group] = nested.model_dump()
            nested[name] = value
    return out


class _LegacyEnv(PydanticBaseSettingsSource):
    """COMPANION_ variables of LEGACY_NAMES, which the nested reading does not see."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for flat, (group, name) in LEGACY_NAMES.items():
            value = os.environ.get(PREFIX + flat.upper())
            if value is not None:
                found.setdefault(group, {})[name] = value
        return found


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        env_file=None,
        extra="ignore",
    )

    data_dir: Path = Field(default=Path("data"), description="Where the embedded defaults live.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file under the data dir."
    )
    master_key: SecretStr | None = Field(
        default=None, description="Base64 master key (32 bytes); overrides master_key_file."
    )
    master_key_file: Path | None = Field(
        default=None, description="Master key file; default: <data_dir>/master.key, created once."
    )
    host: str = Field(default="127.0.0.1", description="Interface the service listens on.")
    port: int = Field(default=8000, description="Port the service listens on.")
    request_threads: int = Field(
        default=16,
        ge=1,
        le=200,
        description="Requests served at once (the rest wait their turn, holding nothing); "
        "the database keeps twice as many connections open, plus 8 for the background work.",
    )
    max_text_chars: int = Field(default=20_000, description="Longest note or learning.")
    max_request_bytes: int = Field(default=1_000_000, description="Largest JSON request body.")
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
    token_days: float = Field(
        default=90, gt=0, description="An API token works this many days after it was issued."
    )
    web_secure_cookies: bool | None = Field(
        default=None,
        description="Mark cookies Secure (HTTPS only); default: when public_url is https.",
    )

    llm: LlmSettings = Field(default_factory=LlmSettings)
    assist: AssistSettings = Field(default_factory=AssistSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    speech: SpeechSettings = Field(default_factory=SpeechSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _LegacyEnv(settings_cls), file_secret_settings)

    @model_validator(mode="before")
    @classmethod
    def _grouped(cls, values: Any) -> Any:
        return _nest(values) if isinstance(values, Mapping) else values

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

    def updated(self, **changes: Any) -> Self:
        """A copy with these settings changed, by flat name (`llm_base_url=...`), validated."""
        return type(self).model_validate({**self.model_dump(), **changes})

    @property
    def token_lifetime(self) -> timedelta:
        """How long an API token works after it was issued (token_days)."""
        return timedelta(days=self.token_days)

    @property
    def resolved_chroma_path(self) -> Path:
        return self.memory.chroma_path or self.data_dir / "chroma"

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
