"""The package's Alembic environment and revisions: `python -m fastapi_prisma_session migrate` runs them,
and so does `alembic upgrade head` in a clone of the repository. Not imported: Alembic loads them by path.
"""
