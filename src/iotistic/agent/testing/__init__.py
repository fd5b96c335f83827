"""Helpers for the agent's tests and benchmarks (a private Docker engine, test images). Not used at run time."""
