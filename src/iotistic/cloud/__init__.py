"""The per-customer cloud API (FastAPI, port 3002)."""
