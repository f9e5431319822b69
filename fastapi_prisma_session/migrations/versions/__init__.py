"""The revisions, in order (Alembic loads them by path)."""
