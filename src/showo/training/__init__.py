"""Training-time helpers (masked-token modelling of image tokens)."""
