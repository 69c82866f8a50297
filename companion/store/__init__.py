"""Relational persistence: SQLAlchemy 2 models, Alembic migrations, the keyring of data keys."""
