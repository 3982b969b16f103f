"""Optical flow: `estimate(frame_a, frame_b) -> flow [B, H, W, 2]` and `warp(image, flow)`.

Convention (RAFT's): the flow from a to b is defined on a's grid, in pixels (dx, dy), with
frame_b(x + flow(x)) ≈ frame_a(x); hence `warp(frame_b, estimate(frame_a, frame_b)) ≈ frame_a`.
`estimate` is the weight-free pyramidal Lucas–Kanade of `mgvm.flow.classic` (jit- and
vmap-able, batch-independent). RAFT (small / large, Flax NNX) is `mgvm.flow.raft`, whose
`RaftFlow` has the same interface, with its checkpoint converters in `mgvm.flow.raft_weights`.
See docs/flow.md.
"""

from __future__ import annotations

from mgvm.flow.classic import estimate
from mgvm.flow.warp import sample, warp

__all__ = ["estimate", "sample", "warp"]
