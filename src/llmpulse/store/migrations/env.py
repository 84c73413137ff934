"""Alembic environment: run on the connection ``llmpulse.store.migrations`` hands over."""

from alembic import context

# All revisions in the caller's one transaction (SQLite's too: its engine issues BEGIN).
context.configure(connection=context.config.attributes["connection"], transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
