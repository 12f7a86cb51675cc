"""Alembic environment, driven from code by ``syncd.store.db.Database.upgrade``.

The caller hands over an open connection in ``config.attributes["connection"]``. For
authoring a migration by hand, set ``SYNCD_DATABASE_URL`` and run alembic with
``syncd.store.db.alembic_config()`` (e.g. ``command.revision(cfg, autogenerate=True)``).
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from syncd.store.db import create_db_engine
from syncd.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things: future migrations use batch mode there.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = os.environ.get("SYNCD_DATABASE_URL")
    if not url:
        raise RuntimeError("set SYNCD_DATABASE_URL or pass a connection in config.attributes")
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("syncd migrations run online only")
run_migrations_online()
