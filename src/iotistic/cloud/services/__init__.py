"""Business logic of the cloud API. Routers stay thin and call these; each function takes a session."""
