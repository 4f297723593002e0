"""One module per CLI job; each exposes ``register(app)``. Heavy imports stay inside the commands."""
