"""The master key: from an env var or a 0600 file created on first start."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

KEY_BYTES = 32


class MasterKeyError(Exception):
    """The master key is missing, malformed or not the one the data was wrapped with."""


@dataclass(frozen=True)
class MasterKey:
    material: bytes

    def __post_init__(self) -> None:
        if len(self.material) != KEY_BYTES:
            raise MasterKeyError(f"a master key is {KEY_BYTES} bytes, got {len(self.material)}")

    @property
    def key_id(self) -> str:
        """A short fingerprint stored beside wrapped keys, so a wrong master key is named."""
        return hashlib.sha256(b"companion-master-key-id" + self.material).hexdigest()[:16]

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_b64(cls, text: str) -> MasterKey:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except ValueError as exc:
            raise MasterKeyError("the master key is not valid base64") from exc
        return cls(raw)

    def to_b64(self) -> str:
        return base64.b64encode(self.material).decode()

    @classmethod
    def read(cls, path: Path) -> MasterKey:
        try:
            return cls.from_b64(path.read_text())
        except OSError as exc:
            raise MasterKeyError(f"cannot read the master key file {path}: {exc}") from exc

    def write(self, path: Path) -> None:
        """Write atomically with 0600 permissions (temp file, fsync, rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (self.to_b64() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)


def load_or_create(env_value: str | None, path: Path) -> MasterKey:
    """The env var wins; otherwise the file, created with a fresh key on first start."""
    if env_value:
        return MasterKey.from_b64(env_value)
    if path.exists():
        return MasterKey.read(path)
    key = MasterKey.generate()
    key.write(path)
    log.warning(
        "Created a new master key at %s (mode 0600). Production deployments should supply "
        "their own key (COMPANION_MASTER_KEY or COMPANION_MASTER_KEY_FILE) and back it up: "
        "without it no stored content can be read.",
        path.resolve(),
    )
    return key
