"""Training pieces: losses (and, later, state, steps, optimizers, checkpoints)."""
