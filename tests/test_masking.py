"""Tests of mgvm.masking: the MaskOut contract, random / tube / running-cell maskers, build()."""

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mgvm import masking
from mgvm.masking import random as rnd

SMALL = (4, 4, 4)
BASE = (8, 14, 14)  # 16 frames at 224^2, tubelet 2x16x16

CONFIGS = {
  "random": {"kind": "random", "ratio": 0.9},
  "tube": {"kind": "tube", "ratio": 0.9},
  "running_cell": {"kind": "running_cell", "ratio": 0.9, "decoder_ratio": 0.5},
}
KINDS = sorted(CONFIGS)


def _video(batch, grid):
  t, h, w = grid
  return jnp.zeros((batch, 2 * t, 16 * h, 16 * w, 3), jnp.float32)


@functools.lru_cache(maxsize=None)
def _jitted(config, grid):
  """Masker and its jitted call, shared across tests so each configuration compiles once."""
  masker = masking.build(dict(config), grid)
  return masker, jax.jit(masker)


def _call(kind, grid, batch=4, seed=0, **overrides):
  masker, fn = _jitted(tuple(sorted({**CONFIGS[kind], **overrides}.items())), grid)
  return masker, jax.device_get(fn(jax.random.key(seed), _video(batch, grid), None))


# ----------------------------------------------------------------------------- static shapes


# (kind, grid, K, M): K, M worked out by hand from the reference formulas.
SHAPE_CASES = [
  ("random", BASE, 1568 - 1411, 1411),  # int(0.9 * 1568) = 1411 masked
  (
    "tube",
    BASE,
    8 * 20,
    8 * 176,
  ),  # int(0.9 * 196) = 176 masked per slice (docs/algorithms.md §1.2)
  ("running_cell", BASE, 8 * 20, 8 * 98),  # 2 of 4 cell positions decoded: 98 per slice
  ("random", SMALL, 64 - 57, 57),  # int(0.9 * 64) = 57
  ("tube", SMALL, 4 * 2, 4 * 14),  # int(0.9 * 16) = 14
  ("running_cell", SMALL, 4 * 2, 4 * 8),
]


@pytest.mark.parametrize("kind,grid,k,m", SHAPE_CASES)
def test_shapes_static_under_eval_shape(kind, grid, k, m):
  masker = masking.build(CONFIGS[kind], grid)
  n = grid[0] * grid[1] * grid[2]
  video = jax.ShapeDtypeStruct((3, 2 * grid[0], 16 * grid[1], 16 * grid[2], 3), jnp.float32)
  out = jax.eval_shape(masker, jax.random.key(0), video, None)
  assert (out.ids_keep.shape, out.ids_target.shape, out.mask.shape) == ((3, k), (3, m), (3, n))
  assert (out.ids_keep.dtype, out.ids_target.dtype, out.mask.dtype) == (
    jnp.int32,
    jnp.int32,
    jnp.bool_,
  )
  assert (masker.num_keep, masker.num_target, masker.num_tokens) == (k, m, n)


@pytest.mark.parametrize("kind", KINDS)
def test_batch_size_from_tokens(kind):
  masker = masking.build(CONFIGS[kind], SMALL)
  key = jax.random.key(3)
  out = jax.eval_shape(masker, key, None, jax.ShapeDtypeStruct((5, 64, 8), jnp.float32))
  assert out.mask.shape == (5, 64) and out.ids_keep.shape == (5, masker.num_keep)
  with pytest.raises(ValueError, match="both are None"):
    masker(key, None, None)
  with pytest.raises(ValueError, match="tokens hold 63 tokens"):
    masker(key, None, jnp.zeros((5, 63, 8)))
  with pytest.raises(ValueError, match="video batch 4 != tokens batch 5"):
    masker(key, _video(4, SMALL), jnp.zeros((5, 64, 8)))


@pytest.mark.parametrize("kind", KINDS)
def test_compiles_once(kind):
  masker = masking.build(CONFIGS[kind], SMALL)
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(key, video):
    return masker(key, video, None)

  video = _video(2, SMALL)
  outs = [step(jax.random.key(s), video) for s in range(4)]
  assert len({np.asarray(o.mask).tobytes() for o in outs}) > 1  # new keys, new masks


# ----------------------------------------------------------------------------- index validity


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("grid", [SMALL, BASE])
def test_indices_sorted_unique_and_consistent_with_mask(kind, grid):
  masker, out = _call(kind, grid, batch=8, seed=1)
  n = masker.num_tokens
  for keep, target, mask in zip(out.ids_keep, out.ids_target, out.mask):
    for ids in (keep, target):
      assert np.all(np.diff(ids) > 0), "ids must be strictly ascending (hence unique)"
      assert ids.min() >= 0 and ids.max() < n
    expected_mask = np.ones(n, bool)
    expected_mask[keep] = False
    np.testing.assert_array_equal(mask, expected_mask)
    if kind != "running_cell":  # VideoMAE: target = every encoder-masked token
      assert not np.intersect1d(keep, target).size
      np.testing.assert_array_equal(np.union1d(keep, target), np.arange(n))


def test_tube_same_spatial_mask_in_every_slice():
  t, h, w = BASE
  _, out = _call("tube", BASE, batch=4, seed=2)
  per_slice = out.mask.reshape(4, t, h * w)
  np.testing.assert_array_equal(per_slice.sum(-1), np.full((4, t), 176))
  np.testing.assert_array_equal(per_slice, np.repeat(per_slice[:, :1], t, axis=1))
  keep = out.ids_keep.reshape(4, t, 20)
  np.testing.assert_array_equal(
    keep - keep[:, :1], np.broadcast_to(np.arange(t)[None, :, None] * h * w, keep.shape)
  )


def test_random_exact_count_and_not_tube_shaped():
  t, h, w = BASE
  _, out = _call("random", BASE, batch=4, seed=3)
  np.testing.assert_array_equal(out.mask.sum(-1), np.full(4, 1411))
  per_slice = out.mask.reshape(4, t, h * w)
  assert any(len(set(row.sum(-1))) > 1 for row in per_slice), "random masking looks like tubes"


@pytest.mark.parametrize(
  "grid,ratio,rule,visible",
  [
    (BASE, 0.9, "auto", 157),  # alone, "auto" is VideoMAE's: 1568 - int(1411.2)
    (BASE, 0.9, "videomae", 157),
    (BASE, 0.9, "everest", 156),  # EVEREST's int((1 - 0.9) * 1568) = int(156.79...)
    ((10, 157, 1), 0.9, "videomae", 157),  # 1570 - int(1413.0)
    ((10, 157, 1), 0.9, "everest", 156),  # (1 - 0.9) * 1570 = 156.99999999999997 in float64
    (SMALL, 0.75, "everest", 16),  # the rules agree when ratio * N is exact: 64 - 48
  ],
)
def test_random_visible_rule_counts(grid, ratio, rule, visible):
  n = grid[0] * grid[1] * grid[2]
  m = masking.build({"kind": "random", "ratio": ratio, "visible_rule": rule}, grid)
  assert (m.num_keep, m.num_target) == (visible, n - visible)
  assert m.params["visible_rule"] == ("videomae" if rule == "auto" else rule)
  if rule == "everest":  # the masker draws that count
    out = m(jax.random.key(0), None, jnp.zeros((2, n, 1)))
    np.testing.assert_array_equal(out.mask.sum(-1), [n - visible] * 2)
  with pytest.raises(ValueError, match="visible_rule must be one of"):
    masking.build({"kind": "random", "ratio": ratio, "visible_rule": "floor"}, grid)


@pytest.mark.parametrize("kind", ["random", "tube"])
def test_masks_differ_across_samples_and_keys(kind):
  _, a = _call(kind, SMALL, batch=4, seed=0, ratio=0.5)
  _, b = _call(kind, SMALL, batch=4, seed=1, ratio=0.5)
  rows = {r.tobytes() for r in a.mask}
  assert len(rows) == 4, "every sample of the batch should get its own mask"
  assert not np.array_equal(a.mask, b.mask), "a new key should give new masks"


# ----------------------------------------------------------------------------- running cell

# Hand-worked VideoMAE v2 running cell, decoder_ratio 0.5: queue = [1, 1, 0, 0] (1 = dropped by
# the decoder); for slice t of phase p the pointer is q = p + t + 1 (mod 4) and the 2x2 unit is
# [[queue[q], queue[q+1]], [queue[q+2], queue[q+3]]], tiled over the 4x4 slice. Decoded (0)
# positions of one 4x4 slice (index i*4 + j) for each pointer value:
DECODED_BY_POINTER = {
  0: [4, 5, 6, 7, 12, 13, 14, 15],  # unit [[1,1],[0,0]]: odd rows
  1: [1, 3, 4, 6, 9, 11, 12, 14],  # unit [[1,0],[0,1]]: anti-diagonal
  2: [0, 1, 2, 3, 8, 9, 10, 11],  # unit [[0,0],[1,1]]: even rows
  3: [0, 2, 5, 7, 8, 10, 13, 15],  # unit [[0,1],[1,0]]: diagonal
}
# Grid (3, 4, 4): pointers per phase are (p+1, p+2, p+3) mod 4.
POINTERS_BY_PHASE = {0: (1, 2, 3), 1: (2, 3, 0), 2: (3, 0, 1), 3: (0, 1, 2)}
PHASE_ROWS = {
  p: np.concatenate([16 * t + np.array(DECODED_BY_POINTER[q]) for t, q in enumerate(qs)])
  for p, qs in POINTERS_BY_PHASE.items()
}


def test_running_cell_table_matches_hand_worked_pattern():
  table = rnd.running_cell_decoded((3, 4, 4), 0.5)
  np.testing.assert_array_equal(table, np.stack([PHASE_ROWS[p] for p in range(4)]))


def test_running_cell_masker_draws_each_phase_per_sample():
  masker, out = _call("running_cell", (3, 4, 4), batch=64, seed=4, ratio=0.5)
  assert masker.num_target == 24
  phases = []
  for row in out.ids_target:
    match = [p for p, expected in PHASE_ROWS.items() if np.array_equal(row, expected)]
    assert len(match) == 1, f"ids_target row {row} is not a running-cell phase"
    phases.append(match[0])
  assert set(phases) == {0, 1, 2, 3}, "all four phases should be drawn over 64 samples"
  assert len(set(phases[:8])) > 1, "the phase should differ across samples of one batch"


@pytest.mark.parametrize("decoder_ratio,per_slice", [(0.25, 147), (0.5, 98), (0.75, 49)])
def test_running_cell_decoded_count_per_slice(decoder_ratio, per_slice):
  t, h, w = BASE
  masker, out = _call("running_cell", BASE, batch=4, decoder_ratio=decoder_ratio)
  assert masker.num_target == t * per_slice
  slices = out.ids_target // (h * w)
  for row in slices:
    np.testing.assert_array_equal(np.bincount(row, minlength=t), np.full(t, per_slice))
  # The pattern runs: consecutive slices differ, and it repeats every 4 slices.
  spatial = [set(out.ids_target[0][slices[0] == s] % (h * w)) for s in range(t)]
  assert all(spatial[s] != spatial[s + 1] for s in range(t - 1))
  assert all(spatial[s] == spatial[s + 4] for s in range(t - 4))


def test_running_cell_encoder_mask_is_tube_and_targets_may_be_visible():
  t, h, w = BASE
  _, out = _call("running_cell", BASE, batch=4, seed=5)
  per_slice = out.mask.reshape(4, t, h * w)
  np.testing.assert_array_equal(per_slice, np.repeat(per_slice[:, :1], t, axis=1))
  np.testing.assert_array_equal(per_slice.sum(-1), np.full((4, t), 176))
  # Loss weight in mgvm = mask gathered at ids_target (decoded AND encoder-masked).
  weight = np.take_along_axis(out.mask, out.ids_target, axis=1)
  for keep, target, wrow in zip(out.ids_keep, out.ids_target, weight):
    np.testing.assert_array_equal(wrow, ~np.isin(target, keep))
  assert weight.all(axis=1).sum() < 4, "some decoded positions should be encoder-visible"
  assert weight.mean() > 0.8


# ----------------------------------------------------------------------------- from_boolean_mask


def test_from_boolean_mask_hand_case():
  out = masking.from_boolean_mask(
    np.array([[True, False, True, False], [False, True, True, False]])
  )
  np.testing.assert_array_equal(out.ids_keep, [[1, 3], [0, 3]])
  np.testing.assert_array_equal(out.ids_target, [[0, 2], [1, 2]])
  assert out.ids_keep.dtype == jnp.int32 and out.mask.dtype == jnp.bool_


@pytest.mark.parametrize("kind", ["random", "tube"])
def test_from_boolean_mask_round_trip(kind):
  _, out = _call(kind, SMALL, batch=8, seed=6)
  back = masking.from_boolean_mask(jnp.asarray(out.mask))
  chex.assert_trees_all_equal(jax.device_get(back), out)


def test_from_boolean_mask_errors():
  with pytest.raises(ValueError, match=r"row 0 masks 2 tokens, row 1 masks 3; every row must"):
    masking.from_boolean_mask(np.array([[1, 1, 0, 0], [1, 1, 1, 0]], bool))
  with pytest.raises(ValueError, match="2-D"):
    masking.from_boolean_mask(np.zeros((2, 3, 4), bool))


# ----------------------------------------------------------------------------- build errors


def test_build_accepts_config_dict_and_defaults():
  masker = masking.build(ml_collections.ConfigDict({"kind": "running_cell"}), BASE)
  assert (masker.kind, masker.num_keep, masker.num_target) == ("running_cell", 160, 784)
  assert masker.params == {"ratio": 0.9, "decoder_ratio": 0.5}


@pytest.mark.parametrize(
  "config,grid,match",
  [
    (
      {"kind": "tubes", "ratio": 0.9},
      SMALL,
      r"unknown kind 'tubes'; known kinds: everest, "
      r"mgm, mgmae, mgtc, random, random_drop, rlt, running_cell, tube",
    ),
    ({"ratio": 0.9}, SMALL, "no 'kind'"),
    ({"kind": "tube", "ratoi": 0.9}, SMALL, r"does not accept key 'ratoi' \(did you mean 'ratio'"),
    ({"kind": "random", "ratio": 0.9, "decoder_ratio": 0.5}, SMALL, "accepted keys: kind, ratio"),
    ({"kind": "tube"}, SMALL, "needs key.*'ratio'"),
    ({"kind": "tube", "ratio": 1.0}, SMALL, r"ratio must lie in \[0, 1\)"),
    ({"kind": "random", "ratio": -0.1}, SMALL, r"ratio must lie in \[0, 1\)"),
    ({"kind": "random", "ratio": "0.9"}, SMALL, "must be a number"),
    ({"kind": "random", "ratio": 0.0}, SMALL, "no token would be masked"),
    ({"kind": "tube", "ratio": 0.05}, SMALL, r"int\(0.05 \* 16\) = 0"),
    ({"kind": "running_cell", "decoder_ratio": 0.2}, SMALL, "must drop 1, 2 or 3"),
    ({"kind": "running_cell"}, (4, 5, 4), "h and w must be even"),
    ({"kind": "tube", "ratio": 0.9}, (4, 4), r"\(T', h, w\)"),
    ({"kind": "tube", "ratio": 0.9}, (0, 4, 4), ">= 1"),
    ({"kind": "tube", "ratio": 0.9}, (4, 4.0, 4), "ints"),
  ],
)
def test_build_errors(config, grid, match):
  with pytest.raises(ValueError, match=match):
    masking.build(config, grid)


# ----------------------------------------------------------------------------- sharding


@pytest.mark.parametrize("kind", KINDS)
def test_same_output_on_8_device_mesh(kind):
  if jax.device_count() < 8:
    pytest.skip(
      "needs 8 devices: run with XLA_FLAGS=--xla_force_host_platform_device_count=8 "
      "(tests/conftest.py sets it)"
    )
  masker, expected = _call(kind, SMALL, batch=8, seed=7)  # jit on the default (one) device
  key = jax.random.key(7)
  video = _video(8, SMALL)
  mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
  sharded_video = jax.device_put(video, NamedSharding(mesh, P("data")))
  replicated_key = jax.device_put(key, NamedSharding(mesh, P()))
  out = jax.jit(masker)(replicated_key, sharded_video, None)
  assert len(out.mask.sharding.device_set) == 8, "the masker should run on the 8-device mesh"
  chex.assert_trees_all_equal(jax.device_get(out), expected)
