"""Alembic environment: always run programmatically with a connection handed in by
``onehop.network.migrate`` (there is no alembic.ini)."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True,
                  version_table="alembic_version")
with context.begin_transaction():
    context.run_migrations()
