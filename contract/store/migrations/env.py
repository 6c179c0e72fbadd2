"""Alembic environment: always run programmatically by contract.store.database.migrate,
on a connection it has already opened (and locked) inside a transaction."""

from alembic import context

from contract.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
