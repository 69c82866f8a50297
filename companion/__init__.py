"""Codev Companion: the domain and its services, importable without FastAPI."""
