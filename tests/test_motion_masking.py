"""Motion-guided compressors (MGTC, EVEREST) and their composition with random / tube masking."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgvm import masking
from mgvm.masking import motion

GRID = (4, 4, 4)  # T' = 4 slices of 4x4 tokens; tubelet (2, 8, 8) on 8 x 32 x 32 clips
TUBELET = (2, 8, 8)


def _static_clip(b=2, seed=0):
  """A random background that never changes: [B, 8, 32, 32, 3]."""
  still = np.random.default_rng(seed).normal(size=(b, 1, 32, 32, 3)).astype(np.float32)
  return np.repeat(still, 8, axis=1)


def _token(video, b, t, i, j):
  pt, ph, pw = TUBELET
  return (b, slice(t * pt, None), slice(i * ph, (i + 1) * ph), slice(j * pw, (j + 1) * pw))


def test_mgtc_keeps_exactly_the_planted_moving_tubelets():
  video = _static_clip()
  planted = {
    0: [(1, 0, 3), (2, 2, 2), (3, 1, 1), (1, 3, 0), (2, 0, 0), (3, 3, 3), (1, 1, 2), (3, 2, 0)],
    1: [(3, 0, 0), (2, 1, 1), (1, 2, 2), (1, 3, 3), (2, 3, 1), (3, 1, 3), (2, 0, 2), (1, 0, 1)],
  }
  rng = np.random.default_rng(1)
  for b, tokens in planted.items():
    for t, i, j in tokens:  # a step change from slice t on: only token (t, i, j) differs from
      video[_token(video, b, t, i, j)] += rng.normal(size=3) + 3.0  # its predecessor
  m = masking.build({"kind": "mgtc", "ratio": 0.625}, GRID)  # keeps int(0.375 * 64) = 24
  assert (m.num_keep, m.num_target) == (24, 0)
  out = jax.jit(lambda v: m(jax.random.key(0), v, None))(jnp.asarray(video))
  for b, tokens in planted.items():
    expected = sorted(list(range(16)) + [t * 16 + i * 4 + j for t, i, j in tokens])
    np.testing.assert_array_equal(out.ids_keep[b], expected)  # first slice whole + the planted
    assert out.ids_target.shape == (2, 0) and int((~out.mask[b]).sum()) == 24
    np.testing.assert_array_equal(np.flatnonzero(~np.asarray(out.mask[b])), expected)


def test_mgtc_scores_by_hand_l1_l2_sub_blocks_and_first_slice():
  video = np.zeros((1, 8, 32, 32, 3), np.float32)
  video[_token(video, 0, 1, 0, 0)] += 2.0  # whole patch +2 from slice 1 on
  video[0, 4:, 8:12, 8:12, :] += 4.0  # one quarter of token (2, 1, 1) +4
  v = jnp.asarray(video)
  l1 = np.asarray(motion.mgtc_scores(v, GRID)).reshape(GRID)
  assert np.isinf(l1[0]).all()
  assert l1[1, 0, 0] == 2.0 and l1[2, 1, 1] == 1.0  # mean |d| = 4 / 4
  assert np.count_nonzero(l1[1:]) == 2
  l2 = np.asarray(motion.mgtc_scores(v, GRID, metric="l2")).reshape(GRID)
  assert l2[1, 0, 0] == 2.0 and l2[2, 1, 1] == 2.0  # sqrt(16 / 4)
  sub = np.asarray(motion.mgtc_scores(v, GRID, metric="l2", sub_blocks=2)).reshape(GRID)
  assert sub[1, 0, 0] == 2.0 and sub[2, 1, 1] == 1.0  # (4 + 0 + 0 + 0) / 4 sub-blocks
  nxt = np.asarray(motion.mgtc_scores(v, GRID, first="next")).reshape(GRID)
  np.testing.assert_array_equal(nxt[0], nxt[1])  # slice 0 scored against slice 1
  with pytest.raises(ValueError, match="sub_blocks=3"):
    motion.mgtc_scores(v, GRID, sub_blocks=3)


def test_everest_candidates_by_hand_and_the_reference_rule():
  # grid (3, 1, 2), D = 1: e = [[0, 0], [3, 1], [3, 5]] -> pair distances (0,1) = [3, 1],
  # (1,2) = [0, 4]; scores per slice: [3, 1], [3, 1], [0, 4] -> top 3 = ids 5, 0, 2.
  tokens = jnp.asarray([[[0.0], [0.0], [3.0], [1.0], [3.0], [5.0]]])
  np.testing.assert_array_equal(motion.everest_scores(tokens, (3, 1, 2))[0], [3, 1, 3, 1, 0, 4])
  m = masking.build({"kind": "everest", "ratio": 0.5}, (3, 1, 2))
  np.testing.assert_array_equal(m(jax.random.key(0), None, tokens).ids_keep[0], [0, 2, 5])
  # The reference (VideoMS mcm_step) on random embeddings of a 16x224 clip: sort by score,
  # candidates = the top int((1 - 0.7) * 1568) = 470.
  grid = (8, 14, 14)
  e = np.random.default_rng(0).normal(size=(2, 1568, 8)).astype(np.float32)
  m = masking.build({"kind": "everest", "ratio": 0.7}, grid)
  assert m.num_keep == 470
  got = np.asarray(m(jax.random.key(0), None, jnp.asarray(e)).ids_keep)
  x = e.reshape(2, 8, 196, 8)
  d = np.linalg.norm(x[:, :-1] - x[:, 1:], axis=-1)  # [B, 7, 196]
  scores = np.concatenate([d[:, :1], d], axis=1).reshape(2, -1)  # slice 0 = d_0, t = d_{t-1}
  for b in range(2):
    np.testing.assert_array_equal(got[b], np.sort(np.argsort(-scores[b])[:470]))


@pytest.mark.parametrize("kind", ["random", "tube"])
def test_composition_sees_only_kept_tokens_and_reconstructs_the_rest(kind):
  video = jnp.asarray(np.random.default_rng(2).normal(size=(3, 8, 32, 32, 3)), jnp.float32)
  config = {"kind": kind, "ratio": 0.75, "compress": {"kind": "mgtc", "ratio": 0.25}}
  m = masking.build(config, GRID)
  alone = masking.build(config["compress"], GRID)
  assert m.kind == f"{kind}+mgtc" and m.num_keep == 16 and m.num_target == 48 - 16
  options = {"visible_rule": "videomae"} if kind == "random" else {}  # "auto" under mgtc
  assert m.params == {"ratio": 0.75, **options, "compress": {"kind": "mgtc", **alone.params}}
  out = m(jax.random.key(3), video, None)
  kept = np.asarray(alone(jax.random.key(0), video, None).ids_keep)
  for b in range(3):
    vis, tgt = np.asarray(out.ids_keep[b]), np.asarray(out.ids_target[b])
    assert np.all(np.diff(vis) > 0) and np.all(np.diff(tgt) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate([vis, tgt])), kept[b])
    np.testing.assert_array_equal(np.flatnonzero(~np.asarray(out.mask[b])), vis)
  if kind == "tube":  # visible = the kept tokens at the spatial positions of highest priority
    prio = np.asarray(jax.random.uniform(jax.random.split(jax.random.key(3))[1], (3, 16)))
    for b in range(3):
      rank = prio[b][kept[b] % 16]
      np.testing.assert_array_equal(
        np.asarray(out.ids_keep[b]), np.sort(kept[b][np.argsort(-rank, kind="stable")[:16]])
      )


def test_everest_pretraining_counts_and_one_trace():
  grid = (8, 14, 14)
  config = {"kind": "random", "ratio": 0.9, "compress": {"kind": "everest", "ratio": 0.7}}
  # VideoMAE's count on request: 1568 - int(0.9 * 1568) = 157 visible of the 470 candidates.
  videomae = masking.build({**config, "visible_rule": "videomae"}, grid)
  assert (videomae.num_keep, videomae.num_target) == (157, 470 - 157)
  # By default ("auto") EVEREST's mcm_step count: int((1 - 0.9) * 1568) = 156, 314 targets.
  m = masking.build(config, grid)
  assert (m.num_keep, m.num_target) == (156, 470 - 156)
  assert m.params["visible_rule"] == "everest"
  traces = []

  @jax.jit
  def run(key, tokens):
    traces.append(1)
    return m(key, None, tokens)

  tokens = jax.random.normal(jax.random.key(0), (2, 1568, 16))
  for i in range(3):
    out = run(jax.random.key(i), tokens)
  assert len(traces) == 1 and out.ids_keep.shape == (2, 156) and out.ids_target.shape == (2, 314)


def test_same_masks_on_8_devices_as_on_1():
  devices = jax.devices()
  assert len(devices) == 8
  mesh = jax.sharding.Mesh(np.array(devices), ("data",))
  sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  video = jnp.asarray(np.random.default_rng(4).normal(size=(8, 8, 32, 32, 3)), jnp.float32)
  for config in (
    {"kind": "mgtc", "ratio": 0.5, "sub_blocks": 2},
    {"kind": "tube", "ratio": 0.75, "compress": {"kind": "mgtc", "ratio": 0.25}},
  ):
    m = masking.build(config, GRID)
    run = jax.jit(lambda k, v: m(k, v, None))
    one = run(jax.random.key(5), video)
    eight = run(jax.random.key(5), jax.device_put(video, sharded))
    for a, b in zip(one, eight):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_errors_name_the_problem():
  with pytest.raises(ValueError, match="cannot take 'compress'"):
    masking.build(
      {"kind": "running_cell", "ratio": 0.9, "compress": {"kind": "mgtc", "ratio": 0.25}}, GRID
    )
  with pytest.raises(ValueError, match="is a compressor itself"):
    masking.build(
      {"kind": "mgtc", "ratio": 0.2, "compress": {"kind": "everest", "ratio": 0.2}}, GRID
    )
  with pytest.raises(ValueError, match="'tube' is not a compressor"):
    masking.build(
      {"kind": "random", "ratio": 0.9, "compress": {"kind": "tube", "ratio": 0.5}}, GRID
    )
  with pytest.raises(ValueError, match="keeps the whole first slice"):
    masking.build({"kind": "mgtc", "ratio": 0.9}, GRID)
  with pytest.raises(ValueError, match="fewer than the kept"):
    masking.build(
      {"kind": "random", "ratio": 0.2, "compress": {"kind": "mgtc", "ratio": 0.5}}, GRID
    )
  with pytest.raises(ValueError, match="did you mean 'metric'"):
    masking.build({"kind": "mgtc", "ratio": 0.2, "metrc": "l2"}, GRID)
  with pytest.raises(ValueError, match="tokens = model.encoder.embed"):
    masking.build({"kind": "everest", "ratio": 0.4}, GRID)(
      jax.random.key(0), jnp.zeros((1, 8, 32, 32, 3)), None
    )
  # An empty compress entry means none.
  assert (
    masking.build({"kind": "tube", "ratio": 0.75, "compress": {"kind": ""}}, GRID).kind == "tube"
  )


def test_classifier_runs_on_the_kept_tokens_only():
  from flax import nnx

  from mgvm import models
  from mgvm.train.steps import classify

  clf = models.VideoClassifier(
    None,
    dim=32,
    depth=1,
    num_heads=2,
    num_classes=5,
    num_frames=8,
    image_size=32,
    tubelet=TUBELET,
    rngs=nnx.Rngs(0),
  )
  video = jnp.asarray(np.random.default_rng(6).normal(size=(2, 8, 32, 32, 3)), jnp.float32)
  m = masking.build({"kind": "mgtc", "ratio": 0.5}, GRID)
  kept = m(jax.random.key(0), video, None).ids_keep
  # compiled, not eager: one program per call instead of one per op (the test's cost)
  pooled = nnx.jit(lambda model, fn: fn(model)[1]["pooled"], static_argnums=1)  # logits ~1e-5
  got = pooled(clf, lambda c: classify(c, video, m))
  np.testing.assert_allclose(
    got, pooled(clf, lambda c: c(video, ids_keep=kept)), rtol=1e-5, atol=1e-5
  )
  full = pooled(clf, lambda c: c(video))
  assert np.abs(got - full).max() > 1e-2
  np.testing.assert_array_equal(pooled(clf, lambda c: classify(c, video)), full)


def test_frame_selection_picks_the_changing_frames_in_order():
  from mgvm.masking import frames

  # 12-frame window: frame k is constant except at "events" where a new value appears.
  values = np.zeros((2, 12), np.float32)
  values[0, [3, 4, 9]] = [5.0, 5.0, 1.0]  # changes at 3 (+5), 5 (-5), 9 (+1), 10 (-1)
  values[1, 7:] = 2.0  # one change at 7
  video = jnp.asarray(np.broadcast_to(values[:, :, None, None, None], (2, 12, 4, 4, 3)).copy())
  e = np.asarray(frames.frame_energy(video))
  np.testing.assert_array_equal(e[0], [0, 0, 0, 5, 0, 5, 0, 0, 0, 1, 1, 0])
  np.testing.assert_array_equal(e[1], [0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0])
  # segment: 4 segments of 3 -> per segment the highest energy, earliest on ties.
  np.testing.assert_array_equal(
    frames.select_frame_indices(jnp.asarray(e), 4), [[0, 3, 6, 9], [0, 3, 7, 9]]
  )
  # global: frame 0, then the 3 highest others (3, 5, then 9 before 10), in time order.
  np.testing.assert_array_equal(
    frames.select_frame_indices(jnp.asarray(e), 4, "global")[0], [0, 3, 5, 9]
  )
  picked, ids = jax.jit(lambda v: frames.select_frames(v, 4, "global"))(video)
  assert picked.shape == (2, 4, 4, 4, 3)
  np.testing.assert_array_equal(
    picked[:, :, 0, 0, 0], np.take_along_axis(values, np.asarray(ids), 1)
  )
  with pytest.raises(ValueError, match="multiple of num_frames"):
    frames.select_frame_indices(jnp.asarray(e), 5)
