"""Shared building blocks. Imports nothing else of ours (checked by import-linter)."""
