"""Persistence: SQLAlchemy tables, alembic migrations and the repository functions."""
