"""Alembic environment: run on the connection ``llmpulse.store.migrations`` hands over."""

from alembic import context

# All revisions in the caller's one transaction (SQLite's too: its engine issues BEGIN).
connection = context.config.attributes["connection"]
version_table = context.config.attributes["version_table"]
context.configure(connection=connection, transactional_ddl=True, version_table=version_table)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Agents starting together on one database: one migrates, the others then find it done.
        lock = f"hashtext(current_schema() || '.{version_table}')"
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({lock})")
    context.run_migrations()
