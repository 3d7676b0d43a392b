"""Persistence: SQLAlchemy tables, alembic migrations, the repository functions, and the
tenants and API tokens."""
