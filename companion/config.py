"""All settings in one place; every field can be set with a COMPANION_ environment variable."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    host: str = "127.0.0.1"
    port: int = 8000
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
    llm_temperature: float = Field(default=0.2, ge=0, le=2)
    llm_local_model: str = Field(
        default="auto",
        description="Local llama.cpp model when llm_base_url is unset: auto | qwen2.5-1.5b | "
        "smollm2-135m | a .gguf path | off.",
    )
    llm_local_threads: int = Field(default=1, ge=1, description="Threads of the local model.")
    llm_local_ctx: int = Field(default=8192, ge=512, description="Context of the local model.")
    llm_allowlist: list[str] = Field(
        default_factory=list,
        description="Hosts (or CIDR networks) that on_prem groups may call besides private ones.",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'companion.db').resolve()}"

    @property
    def resolved_master_key_file(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"


@lru_cache
def get_settings() -> Settings:
    return Settings()
