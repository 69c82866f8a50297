"""User accounts and bearer tokens (stored as argon2 hashes)."""
