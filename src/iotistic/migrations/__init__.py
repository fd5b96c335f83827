"""Alembic migration scripts, shipped inside the package so an installed `iotistic` can migrate itself."""
