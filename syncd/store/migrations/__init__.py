"""Alembic migrations of the syncd store (configured in code by ``syncd.store.db``)."""
