"""The local Device API (port 48484), balena-supervisor compatible where it makes sense."""
