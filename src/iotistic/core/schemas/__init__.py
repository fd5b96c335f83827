"""Pydantic schemas shared by the cloud and the agent (the device <-> cloud contract)."""
