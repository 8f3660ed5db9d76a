"""Alembic environment of the finsent database (run through services.storage.migrate)."""
