"""HTTP: the upload gate, the batcher, settings and the BentoML service (floor 2)."""
