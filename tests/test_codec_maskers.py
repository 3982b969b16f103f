"""Maskers and compressors driven by codec motion (issue #17): camera compensation, codec
scores for MGTC / EVEREST / RLT, RLT's static rule and threshold form, MGM, the plumbing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgvm import masking
from mgvm.masking import motion

# one compiled program per call (eager ops compile one by one: the test's cost)
compensate = jax.jit(motion.compensate_camera, static_argnums=2)
GRID = (4, 4, 4)  # 8 frames of 64 x 64, tubelet (2, 16, 16): motion on the 4 x 4 token grid
PAN = (3.0, -1.0)
PATHS = ([(0, 0), (1, 1), (2, 2), (1, 2)], [(2, 1), (2, 0), (1, 0), (0, 0)])  # per sample


def planted(velocity=(0.0, 2.0), pan=PAN, paths=PATHS):
  """motion [B, 8, 4, 4, 2]: every block moves by `pan` from frame 1 on (entry 0 is zero); a
  2x2-block mover at `paths[b][t]` (top-left block) in both frames of slice t moves by
  pan + velocity. Returns (motion, the mover's token ids per sample and slice)."""
  m = np.zeros((len(paths), 8, 4, 4, 2), np.float32)
  m[:, 1:] = pan
  ids = []
  for b, path in enumerate(paths):
    ids.append([])
    for t, (r, c) in enumerate(path):
      m[b, 2 * t : 2 * t + 2, r : r + 2, c : c + 2] = np.add(pan, velocity)
      ids[-1].append(sorted(t * 16 + (r + i) * 4 + (c + j) for i in (0, 1) for j in (0, 1)))
  m[:, 0] = 0.0
  return jnp.asarray(m), ids


_RUNNERS = {}


def _run(config, mo, key=0):
  """(masker, its output on `mo` with `key`); one masker and one jitted call per config."""
  name = repr(sorted(config.items()))
  if name not in _RUNNERS:
    m = masking.build(config, GRID)
    _RUNNERS[name] = m, jax.jit(lambda k, x: m(k, None, None, motion=x))
  m, run = _RUNNERS[name]
  return m, run(jax.random.key(key), mo)


# ----------------------------------------------------------------------------- the field


def test_median_compensation_removes_the_pan_exactly_over_valid_blocks():
  mo, _ = planted()
  valid = np.ones(mo.shape[:-1], np.float32)
  garbage = np.asarray(mo).copy()
  garbage[:, :, 3, 3] = 100.0  # one uncovered block per frame with a filled-in vector
  valid[:, :, 3, 3] = 0.25  # below VALID_SHARE: not used for the fit
  got = np.asarray(compensate(jnp.asarray(garbage), jnp.asarray(valid), "median"))
  expected = np.asarray(mo) - np.where(np.arange(8)[None, :, None, None, None] > 0, PAN, 0.0)
  expected[:, :, 3, 3] = 100.0 - np.where(np.arange(8) > 0, 1, 0)[None, :, None] * np.asarray(PAN)
  np.testing.assert_array_equal(got, expected)  # background 0, the mover its own velocity
  # an even count takes the mean of the two middle values; no valid block: unchanged
  field = np.zeros((1, 2, 1, 4, 2), np.float32)
  field[0, :, 0, :, 0] = [1.0, 2.0, 4.0, 8.0]
  ok = np.ones((1, 2, 1, 4), np.float32)
  ok[0, 1] = 0.0
  out = np.asarray(compensate(jnp.asarray(field), jnp.asarray(ok), "median"))
  np.testing.assert_array_equal(out[0, 0, 0, :, 0], [-2.0, -1.0, 1.0, 5.0])  # median 3
  np.testing.assert_array_equal(out[0, 1], field[0, 1])


def test_affine_compensation_removes_an_affine_field_median_does_not():
  h = w = 4
  ys, xs = np.meshgrid(16.0 * np.arange(h) + 7.5, 16.0 * np.arange(w) + 7.5, indexing="ij")
  zoom = np.stack([0.05 * xs - 0.02 * ys + 1.5, 0.01 * xs + 0.04 * ys - 2.0], axis=-1)
  field = np.broadcast_to(zoom, (2, 8, h, w, 2)).astype(np.float32).copy()
  valid = np.ones(field.shape[:-1], np.float32)
  field[1, :, 0, 0] = [40.0, -40.0]  # an outlier block, marked uncovered
  valid[1, :, 0, 0] = 0.0
  out = np.asarray(compensate(jnp.asarray(field), jnp.asarray(valid), "affine"))
  np.testing.assert_allclose(out[0], 0.0, atol=1e-4)
  np.testing.assert_allclose(out[1][valid[1] > 0], 0.0, atol=1e-4)
  assert np.abs(out[1, :, 0, 0] - (np.array([40.0, -40.0]) - zoom[0, 0])).max() < 1e-3
  median = np.asarray(compensate(jnp.asarray(field[:1]), None, "median"))
  assert np.abs(median).max() > 0.3  # a zoom is no translation
  with pytest.raises(ValueError, match="mode must be one of"):
    motion.compensate_camera(jnp.asarray(field), None, "homography")


def test_tubelet_motion_sums_the_frames_of_each_tubelet():
  mo = jnp.arange(1 * 6 * 1 * 1 * 2, dtype=jnp.float32).reshape(1, 6, 1, 1, 2)
  got = np.asarray(masking.tubelet_motion(mo, 2))[0, :, 0, 0]
  np.testing.assert_array_equal(got, [[0 + 2, 1 + 3], [4 + 6, 5 + 7], [8 + 10, 9 + 11]])
  scores = np.asarray(motion.codec_scores(mo, None, (3, 1, 1)))[0]
  np.testing.assert_allclose(scores, [np.hypot(2, 4), np.hypot(10, 12), np.hypot(18, 20)])


# ----------------------------------------------------------------------------- compressors


@pytest.mark.parametrize(
  "config, first_slice",
  [
    ({"kind": "mgtc", "ratio": 0.5625}, True),  # keeps int(0.4375 * 64) = 28 = 16 + 3 * 4
    ({"kind": "rlt", "ratio": 0.5625}, True),
    ({"kind": "everest", "ratio": 0.75}, False),  # keeps 16 = 4 slices * 4 mover tokens
  ],
)
def test_codec_compressors_keep_the_mover_under_a_camera_pan(config, first_slice):
  codec_config = {**config, "motion": "codec", "compensate_camera": "median"}
  for velocity in ((0.0, 2.0), (-PAN[0], -PAN[1])):  # the second cancels the pan in the image
    mo, mover = planted(velocity)
    m, out = _run(codec_config, mo)
    assert m.needs_motion and m.num_target == 0
    for b in range(2):
      rest = [i for t in range(int(first_slice), 4) for i in mover[b][t]]
      expected = sorted(([*range(16)] if first_slice else []) + rest)
      np.testing.assert_array_equal(out.ids_keep[b], expected)
  # Without compensation the mover that cancels the pan looks static and the pan moves.
  _, out = _run({**config, "motion": "codec"}, mo)
  assert not set(np.asarray(out.ids_keep[0])) & set(mover[0][2] + mover[0][3])
  with pytest.raises(ValueError, match="reads the codec motion field"):
    masking.build(codec_config, GRID)(jax.random.key(0), jnp.zeros((2, 8, 64, 64, 3)))
  with pytest.raises(ValueError, match="set motion='codec'"):
    masking.build({**config, "compensate_camera": "median"}, GRID)


def test_codec_grid_and_frames_must_fit():
  m = masking.build({"kind": "mgtc", "ratio": 0.5, "motion": "codec"}, GRID)
  with pytest.raises(ValueError, match="2x2 block grid but the token grid is 4x4"):
    m(jax.random.key(0), None, None, motion=jnp.zeros((1, 8, 2, 2, 2)))
  with pytest.raises(ValueError, match="not a multiple of the grid's 4 slices"):
    m(jax.random.key(0), None, None, motion=jnp.zeros((1, 6, 4, 4, 2)))
  with pytest.raises(ValueError, match=r"video \[B, T\] = \(1, 16\)"):
    m(jax.random.key(0), jnp.zeros((1, 16, 64, 64, 3)), None, motion=jnp.zeros((1, 8, 4, 4, 2)))


def _rlt_clip():
  """6 frames of 32 x 32 (grid (3, 2, 2)); per patch the value of each frame (all channels):
  A (0, 0): 2 on its top-left quarter from frame 3; B (0, 1): 0.05 at frame 5 only;
  C (1, 0): 0.5 from frame 1; D (1, 1): 0.25 from frame 3."""
  v = np.zeros((1, 6, 32, 32, 3), np.float32)
  v[0, 3:, 0:8, 0:8] = 2.0
  v[0, 5, 0:16, 16:32] = 0.05
  v[0, 1:, 16:32, 0:16] = 0.5
  v[0, 3:, 16:32, 16:32] = 0.25
  return jnp.asarray(v)


def test_rlt_static_rule_by_hand_on_pixels():
  # RLT compares the last frame of tubelet t with the first of tubelet t - 1 (frames 3 vs 0,
  # 5 vs 2), mean |diff| over the patch's pixels and channels; the first tubelet is kept.
  grid = (3, 2, 2)
  scores = np.asarray(jax.jit(motion.rlt_scores, static_argnums=1)(_rlt_clip(), grid))
  scores = scores.reshape(grid)
  assert np.isinf(scores[0]).all()
  np.testing.assert_allclose(scores[1], [[0.5, 0.0], [0.5, 0.25]], rtol=1e-6)  # C: 0.5 − 0
  np.testing.assert_allclose(scores[2], [[0.5, 0.05], [0.0, 0.25]], rtol=1e-6)
  # Threshold form, tau = 0.25 (strictly above: D is static), no cap: slice 0, A1, C1, A2.
  m = masking.build({"kind": "rlt", "ratio": 0.0, "form": "threshold", "threshold": 0.25}, grid)
  assert (m.num_keep, m.variable_length, m.needs_motion) == (12, True, False)
  out = jax.jit(m)(jax.random.key(0), _rlt_clip(), None)
  assert int(masking.kept_lengths(out)[0]) == 7
  np.testing.assert_array_equal(out.ids_keep[0, :7], [0, 1, 2, 3, 4, 6, 8])
  np.testing.assert_array_equal(np.flatnonzero(~np.asarray(out.mask[0])), [0, 1, 2, 3, 4, 6, 8])
  np.testing.assert_array_equal(out.ids_keep[0, 7:], [5, 7, 9, 10, 11])  # padding, ascending
  # Top-K form: int(0.5 * 12) = 6: slice 0 and the two best (A1, C1 beat A2 on the index tie).
  top = jax.jit(masking.build({"kind": "rlt", "ratio": 0.5}, grid))(
    jax.random.key(0), _rlt_clip(), None
  )
  np.testing.assert_array_equal(top.ids_keep[0], [0, 1, 2, 3, 4, 6])
  with pytest.raises(ValueError, match="keeps the whole first slice"):
    masking.build({"kind": "rlt", "ratio": 0.8}, grid)  # 2 tokens < the 4 of slice 0
  with pytest.raises(ValueError, match="a fixed count"):
    masking.build(
      {
        "kind": "tube",
        "ratio": 0.5,
        "compress": {"kind": "rlt", "ratio": 0.0, "form": "threshold"},
      },
      GRID,
    )


def test_rlt_threshold_lengths_budget_and_padding_leave_kept_outputs_unchanged():
  from flax import nnx

  from mgvm import models
  from mgvm.train.steps import classify

  # Sample 0: one mover (4 tokens per slice); sample 1: a fast mover and a slow one.
  mo, mover = planted()
  m1 = np.asarray(mo).copy()
  m1[1, 2:, 0:2, 3] = np.add(PAN, (0.0, 0.5))  # the slow one: blocks (0, 3), (1, 3), slices 1-3
  config = {"kind": "rlt", "ratio": 0.5, "form": "threshold", "threshold": 0.1}
  config.update(motion="codec", compensate_camera="median")
  m, out = _run(config, jnp.asarray(m1))
  lengths = np.asarray(masking.kept_lengths(out))
  # sample 0: slice 0 + 12 mover tokens = 28 <= the budget int(0.5 * 64) = 32;
  # sample 1: 16 + 12 + 6 = 34 non-static > 32: the first slice, the fast mover, then the
  # slow one's 4 lowest ids (ties to the lower index).
  assert m.num_keep == 32 and lengths.tolist() == [28, 32]
  slow = [t * 16 + i * 4 + 3 for t in (1, 2, 3) for i in (0, 1)]
  fast = [i for t in (1, 2, 3) for i in mover[1][t]]
  np.testing.assert_array_equal(out.ids_keep[1], sorted([*range(16), *fast, *slow[:4]]))
  assert np.all(np.diff(out.ids_keep[0, :28]) > 0) and np.all(np.diff(out.ids_keep[0, 28:]) > 0)

  clf = models.VideoClassifier(
    None, dim=16, depth=1, num_heads=2, num_classes=5, num_frames=8, image_size=64,
    rngs=nnx.Rngs(0),
  )  # fmt: skip
  video = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 64, 64, 3)), jnp.float32)
  pooled = nnx.jit(lambda c, fn: fn(c)[1]["pooled"], static_argnums=1)
  got = pooled(clf, lambda c: classify(c, video, m, motion=jnp.asarray(m1)))
  # Clip 0 (4 padded tokens) equals the encoder on its 28 real tokens alone; clip 1 has no
  # padding: its pooled output is the plain classifier's on its 32 tokens.
  alone = pooled(clf, lambda c: c(video[:1], ids_keep=out.ids_keep[:1, :28]))
  np.testing.assert_allclose(got[0], alone[0], rtol=2e-5, atol=2e-5)
  other = out.ids_keep.at[0, 28:].set(jnp.asarray([63, 62, 61, 60]))  # other padding tokens
  both = pooled(clf, lambda c: c(video, ids_keep=other))  # no kv_lengths: padding counts
  np.testing.assert_allclose(got[1], both[1], rtol=2e-5, atol=2e-5)
  assert np.abs(both[0] - got[0]).max() > 1e-3  # ...so clip 0 differs there


# ----------------------------------------------------------------------------- MGM


def test_mgm_slice_centres_by_hand():
  mag = np.zeros((2, 5, 4), np.float32)
  mag[0, 1, 3] = 2.0
  mag[0, 3, [1, 2]] = 5.0  # a tie: the lower index
  got = np.asarray(jax.jit(motion.slice_centres)(jax.random.key(0), jnp.asarray(mag)))
  np.testing.assert_array_equal(got[0], [3, 3, 3, 1, 1])  # leading from the first, gaps carry
  assert len(set(got[1].tolist())) == 1  # no motion: one random centre for every slice


def test_mgm_masks_the_mover_in_every_slice_under_a_pan():
  # 12 of 16 masked per slice, 4 visible; sigma 0.1 x 4 tokens: the Gaussian dominates the
  # draw, so the blocks within sqrt(2) of the centre are always masked
  config = {"kind": "mgm", "ratio": 0.75, "sigma": 0.1}
  for velocity in ((0.0, 2.0), (-PAN[0], -PAN[1])):
    mo, mover = planted(velocity)
    for key in range(3):
      m, out = _run(config, mo, key=key)
      assert (m.num_keep, m.num_target, m.needs_motion) == (16, 48, True)
      for b in range(2):
        target = set(np.asarray(out.ids_target[b]).tolist())
        assert all(set(mover[b][t]) <= target for t in range(4)), (velocity, key, b)
        keep = np.asarray(out.ids_keep[b])
        np.testing.assert_array_equal(np.bincount(keep // 16, minlength=4), [4, 4, 4, 4])
        np.testing.assert_array_equal(np.flatnonzero(~np.asarray(out.mask[b])), keep)
        assert not set(keep.tolist()) & target
  # Uncompensated, the mover that cancels the pan is static in the image: the centre goes to
  # the first background block and the mover is not masked whole.
  _, out = _run({**config, "compensate_camera": ""}, mo)
  target = set(np.asarray(out.ids_target[0]).tolist())
  assert not all(set(mover[0][t]) <= target for t in range(4))
  with pytest.raises(ValueError, match="sigma must be a number > 0"):
    masking.build({**config, "sigma": 0}, GRID)


def test_one_trace_and_the_same_masks_on_8_devices_as_on_1():
  from jax.sharding import Mesh, NamedSharding, PartitionSpec

  assert jax.device_count() == 8
  paths = [PATHS[b % 2] for b in range(8)]
  mo, _ = planted(paths=paths)
  valid = jnp.ones(mo.shape[:-1], jnp.float32)
  m = masking.build({"kind": "mgm", "ratio": 0.75, "compensate_camera": "affine"}, GRID)
  traces = []

  @jax.jit
  def run(key, x, ok):
    traces.append(1)
    return m(key, None, None, motion=x, motion_valid=ok)

  one = [run(jax.random.key(i), mo, valid) for i in range(3)]
  assert len(traces) == 1
  assert len({np.asarray(o.mask).tobytes() for o in one}) > 1  # new keys, new draws
  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  shard = NamedSharding(mesh, PartitionSpec("data"))
  eight = run(jax.random.key(0), jax.device_put(mo, shard), jax.device_put(valid, shard))
  assert len(eight.mask.sharding.device_set) == 8
  for a, b in zip(one[0], eight):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------------------- plumbing


def test_the_steps_align_motion_with_the_flip_and_the_tasks_ask_for_it(monkeypatch):
  import sys
  import types

  import mgvm.data
  from configs import common, finetune, pretrain
  from mgvm.tasks import common as task_common
  from mgvm.train.steps import batch_motion

  mo, _ = planted()
  motion, valid = batch_motion({"motion": mo, "flip": np.asarray([True, False])})
  np.testing.assert_array_equal(motion[0], np.asarray(mo)[0, :, :, ::-1] * [-1.0, 1.0])
  np.testing.assert_array_equal(motion[1], mo[1])
  assert valid.shape == mo.shape[:-1] and bool(jnp.all(valid == 1))
  assert batch_motion({"video": mo}) == (None, None)

  config = finetune.get_config("runlocal")
  assert task_common.motion_arguments(config) == {"motion": False, "motion_block": 16}
  config.masking = common.compressor("rlt", 0.0, form="threshold")
  assert not task_common.needs_motion(config)
  config.masking.motion = "codec"
  assert task_common.needs_motion(config)
  seen = {}
  fake = types.ModuleType("mgvm.data.pipeline")  # the real one imports TensorFlow (seconds)
  fake.make_dataset = lambda files, **kw: seen.update(kw)
  monkeypatch.setitem(sys.modules, "mgvm.data.pipeline", fake)
  monkeypatch.setattr(mgvm.data, "pipeline", fake, raising=False)

  class Source:
    split = staticmethod(lambda name: [name])
    parse_fn = None

  task_common.train_clips(config, Source, local_batch=2, start_step=0, augment=False)
  assert (seen["motion"], seen["motion_block"]) == (True, 16)
  assert task_common.needs_motion(pretrain.get_config("runlocal,masker=mgm"))
  assert not task_common.needs_motion(pretrain.get_config("runlocal,compress=rlt"))
  mgmae = pretrain.get_config("runlocal,masker=mgmae")
  mgmae.masking.flow = "codec"
  assert task_common.needs_motion(mgmae)


@pytest.mark.slow  # several seconds of compiling; the full suite runs it
def test_a_finetune_step_reads_the_batch_motion_through_micro_batches():
  """The step with a codec-motion RLT compressor (threshold form) over 2 micro-batches: its
  loss is the mean cross entropy of `classify` on the batch's motion, flipped with the clip."""
  from flax import nnx

  from configs import common, finetune
  from mgvm import sharding, tasks
  from mgvm.data.device_ops import model_video
  from mgvm.train import mixup, optim, steps
  from mgvm.train import state as state_lib
  from tests.helpers import tiny

  config = tiny(finetune.get_config("runlocal"), num_frames=8, accum_steps=2)
  config.image_size = 64
  config.model.update(dim=16, num_heads=2, depth=1, drop_path_rate=0.0, dtype="float32")
  config.masking = common.compressor(
    "rlt", 0.5, form="threshold", motion="codec", compensate_camera="median"
  )
  task = tasks.get("finetune")
  model_fn = lambda: task.build_model(config, num_classes=3)  # noqa: E731
  abstract = nnx.eval_shape(model_fn)
  tx, schedule = optim.make_optimizer(
    config.optim, nnx.state(abstract, nnx.Param), global_batch_size=2, total_steps=10, num_layers=1
  )
  mesh = sharding.make_mesh(1)
  graphdef, state, shardings = state_lib.create(model_fn, tx, mesh, seed=0)
  step = task.train_step(config, graphdef, abstract, tx, schedule, num_classes=3)
  mo, _ = planted()
  rng = np.random.default_rng(0)
  batch = {
    "video": rng.integers(0, 256, (2, 8, 64, 64, 3), dtype=np.uint8),
    "flip": np.asarray([True, False]),
    "label": np.asarray([0, 2], np.int32),
    "motion": np.asarray(mo)[:, :, :, ::-1] * [-1.0, 1.0],  # un-flipped by the step for clip 0
    "motion_valid": np.ones((2, 8, 4, 4), np.float32),
  }
  batch["motion"][1] = np.asarray(mo)[1]
  params = nnx.state(nnx.merge(graphdef, state["params"]), nnx.Param)
  model = nnx.merge(graphdef, params)
  squeeze = masking.build(config.masking, (4, 4, 4))
  video = model_video(batch)
  logits, aux = nnx.jit(lambda m: steps.classify(m, video, squeeze, motion=mo))(model)
  assert aux["tokens"].tolist() == [28, 28]
  expected = mixup.soft_cross_entropy(logits, jax.nn.one_hot(batch["label"], 3))
  _, metrics = steps.compile_step(step, shardings, mesh)(state, batch)
  np.testing.assert_allclose(float(metrics["loss"]), float(expected), rtol=1e-5)


# ----------------------------------------------------------------------------- random baseline


def test_random_drop_keeps_k_uniform_tokens_per_clip_and_its_config_builds():
  from configs import common

  m = masking.build(common.compressor("random_drop", 0.75), GRID)
  assert (m.num_keep, m.num_target, m.needs_motion) == (16, 0, False)  # int(0.25 · 64)
  run = jax.jit(lambda k, v: m(k, v, None))
  video = jnp.zeros((2, 8, 64, 64, 3))
  out = run(jax.random.key(0), video)
  ids, mask = np.asarray(out.ids_keep), np.asarray(out.mask)
  assert ids.shape == (2, 16) and out.ids_target.shape == (2, 0)
  for b in range(2):
    assert len(set(ids[b])) == 16 and list(ids[b]) == sorted(ids[b])
    assert sorted(np.flatnonzero(~mask[b])) == list(ids[b])
  assert set(ids[0]) != set(ids[1])  # a draw per clip
  np.testing.assert_array_equal(np.asarray(run(jax.random.key(0), video).ids_keep), ids)
  assert set(np.asarray(run(jax.random.key(1), video).ids_keep)[0]) != set(ids[0])
  with pytest.raises(ValueError, match="random_drop"):
    masking.build({"kind": "random_drop", "ratio": 0.999}, GRID)  # keeps 0


def test_codec_motion_study_helpers_on_a_toy_clip():
  from benchmarks import codec_motion as study

  np.testing.assert_array_equal(study.sample_indices(10, 12.0, 4, 6.0), [0, 2, 4, 6])
  np.testing.assert_array_equal(study.sample_indices(5, 12.0, 4, 6.0), [0, 2, 4, 4])
  vectors = np.arange(1, 7, dtype=np.float32)[:, None, None, None] * np.ones((6, 1, 1, 2))
  valid = np.ones((6, 1, 1), bool)
  valid[3] = False
  motion, ok = study.clip_motion(vectors, valid, np.asarray([0, 2, 4, 4]))
  np.testing.assert_array_equal(motion[:, 0, 0, 0], [0, 2 + 3, 4 + 5, 0])  # (p_k-1, p_k]
  np.testing.assert_array_equal(ok[:, 0, 0], [0, 1, 0, 1])  # frame 3 invalid; a repeat is valid
  boxes = np.zeros((4, 1, 4), np.float32)
  boxes[:2, 0] = [0.0, 0.0, 0.2, 0.2]  # frames 0-1: 12.8 px, the top-left token only
  boxes[2:, 0] = [0.3, 0.5, 0.55, 0.55]  # frames 2-3: x 19.2-35.2, y 32-35.2
  cover = study.token_cover(boxes, 64, 16, 2)
  assert cover.shape == (2, 4, 4)
  assert np.argwhere(cover[0]).tolist() == [[0, 0]]
  assert np.argwhere(cover[1]).tolist() == [[2, 1], [2, 2]]
  truth = np.asarray([[1, 1, 0, 0], [0, 0, 0, 0]], bool)
  kept = np.asarray([[1, 0, 1, 0], [1, 1, 1, 1]], bool)
  got = study.recall(kept, truth)
  assert got[0] == 0.5 and np.isnan(got[1])
