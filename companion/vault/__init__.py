"""Envelope encryption: a master key wraps per-group data keys that seal content (AES-256-GCM)."""

from companion.vault.envelope import DataKey, IntegrityError, open_text, seal_text
from companion.vault.master import MasterKey, MasterKeyError

__all__ = ["DataKey", "IntegrityError", "MasterKey", "MasterKeyError", "open_text", "seal_text"]
