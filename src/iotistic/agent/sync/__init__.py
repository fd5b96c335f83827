"""Talking to the cloud: target state polls, state and metrics reports, log batches, the offline outbox."""
