"""Sealing with AES-256-GCM; the associated data binds each ciphertext to where it belongs."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from companion.vault.master import MasterKey, MasterKeyError

FORMAT_V1 = b"\x01"
NONCE_BYTES = 12
TAG_BYTES = 16
SEALED_OVERHEAD = len(FORMAT_V1) + NONCE_BYTES + TAG_BYTES  # a sealed value's size over its text


class IntegrityError(Exception):
    """A ciphertext failed to open: tampered with, moved to another record, or its key is gone."""


def _aad(*parts: str) -> bytes:
    # Length-prefixed so that ("ab", "c") and ("a", "bc") never collide.
    return b"".join(len(p.encode()).to_bytes(4, "big") + p.encode() for p in parts)


@dataclass(frozen=True)
class DataKey:
    """A data key for one scope (a group, or the deployment's own 'system' scope)."""

    scope: str
    material: bytes

    @classmethod
    def generate(cls, scope: str) -> DataKey:
        return cls(scope, AESGCM.generate_key(bit_length=256))

    def wrap(self, master: MasterKey, key_row_id: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        aad = _aad("data-key", self.scope, key_row_id)
        return FORMAT_V1 + nonce + AESGCM(master.material).encrypt(nonce, self.material, aad)

    @classmethod
    def unwrap(cls, master: MasterKey, scope: str, key_row_id: str, wrapped: bytes) -> DataKey:
        try:
            material = _open(master.material, wrapped, _aad("data-key", scope, key_row_id))
        except IntegrityError as exc:
            raise MasterKeyError(
                f"the data key of scope {scope} does not open with this master key "
                "(wrong master key, or the key row was altered)"
            ) from exc
        return cls(scope, material)

    def seal(self, plaintext: bytes, record_type: str, record_id: str, field: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        aad = _aad("record", self.scope, record_type, record_id, field)
        return FORMAT_V1 + nonce + AESGCM(self.material).encrypt(nonce, plaintext, aad)

    def fingerprint(self, purpose: str, data: bytes) -> str:
        """A keyed fingerprint (HMAC-SHA256, hex) of `data`: equal data give equal fingerprints
        within the scope and purpose, and nothing about the data can be learnt from it without
        the key (gone with the key when it is shredded). The HMAC key is derived from the data
        key for `purpose`, so the data key itself is never used for two things."""
        derived = hmac.new(self.material, _aad("fingerprint", self.scope, purpose), hashlib.sha256)
        return hmac.new(derived.digest(), data, hashlib.sha256).hexdigest()

    def open(self, sealed: bytes, record_type: str, record_id: str, field: str) -> bytes:
        try:
            return _open(
                self.material, sealed, _aad("record", self.scope, record_type, record_id, field)
            )
        except IntegrityError as exc:
            raise IntegrityError(
                f"{record_type} {record_id} ({field}) failed its integrity check: it was altered, "
                f"or it does not belong to {self.scope}"
            ) from exc


def _open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < SEALED_OVERHEAD or sealed[:1] != FORMAT_V1:
        raise IntegrityError("not a sealed value of a known format")
    nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, aad)
    except InvalidTag as exc:
        raise IntegrityError("authentication tag mismatch") from exc


def seal_text(key: DataKey, text: str, record_type: str, record_id: str, field: str) -> bytes:
    return key.seal(text.encode("utf-8"), record_type, record_id, field)


def open_text(key: DataKey, sealed: bytes, record_type: str, record_id: str, field: str) -> str:
    return key.open(sealed, record_type, record_id, field).decode("utf-8")
