"""Test doubles: stand-ins for outside services, for tests only."""
