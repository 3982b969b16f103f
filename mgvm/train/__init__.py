"""Training pieces the runner composes: steps, losses, optimizer, train state, checkpoints, mixup,
EVAD's detection objective."""
