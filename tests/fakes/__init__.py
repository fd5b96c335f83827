"""Local stand-ins for the two services that cannot run here (Stripe, a Kubernetes API server).

The real client libraries talk to them over real HTTP; only the far end is ours."""
