"""The settings: grouped by concern, read from the COMPANION_ variables operators know."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from companion.config import LEGACY_NAMES, Settings, flat_names


def test_every_variable_sets_its_grouped_setting(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COMPANION_LLM_BASE_URL", "http://10.0.0.5:8080/v1")
    monkeypatch.setenv("COMPANION_LLM_ALLOWLIST", '["models.internal"]')
    monkeypatch.setenv("COMPANION_LIVE_WINDOW_S", "12")
    monkeypatch.setenv("COMPANION_MEMORY_ENABLED", "false")
    monkeypatch.setenv("COMPANION_CHROMA_URL", "http://10.0.0.6:8000")  # named before groups
    monkeypatch.setenv("COMPANION_TRANSCRIPTION_WORKERS", "3")
    monkeypatch.setenv("COMPANION_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("COMPANION_DATA_DIR", "/srv/companion")
    settings = Settings()
    assert settings.llm.base_url == "http://10.0.0.5:8080/v1"
    assert settings.llm.allowlist == ["models.internal"]
    assert settings.live.window_s == 12
    assert settings.memory.enabled is False
    assert settings.memory.chroma_url == "http://10.0.0.6:8000"
    assert settings.speech.workers == 3
    assert settings.speech.max_upload_bytes == 1234
    assert settings.data_dir == Path("/srv/companion")


def test_flat_names_cover_every_grouped_setting_once():
    names = flat_names()
    assert len(set(names.values())) == len(names)
    for flat, (group, field) in LEGACY_NAMES.items():
        assert names[flat] == (group, field)
        assert f"{group}_{field}" not in names  # one name per setting


def test_flat_names_work_as_arguments_and_in_updated(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, llm_model="qwen", transcription_lease_s=5)
    assert (settings.llm.model, settings.speech.lease_s) == ("qwen", 5)
    changed = settings.updated(llm_base_url="http://127.0.0.1:9/v1", live_hold_s=2)
    assert (changed.llm.base_url, changed.live.hold_s) == ("http://127.0.0.1:9/v1", 2)
    assert (changed.llm.model, changed.data_dir) == ("qwen", tmp_path)  # the rest is kept
    assert settings.llm.base_url is None  # a copy
    with pytest.raises(ValidationError, match="window_s"):
        settings.updated(live_window_s=1)  # still validated


def test_secrets_do_not_show(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COMPANION_LLM_API_KEY", "sk-very-secret")
    monkeypatch.setenv("COMPANION_MASTER_KEY", "bWFzdGVyLWtleQ==")
    settings = Settings()
    assert "sk-very-secret" not in repr(settings)
    assert "bWFzdGVyLWtleQ" not in repr(settings)
    assert settings.llm.api_key.get_secret_value() == "sk-very-secret"
