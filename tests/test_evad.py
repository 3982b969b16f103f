"""EVAD: RoI extension and action loss by hand, the official-order flag, gradients, train → eval."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import detect  # noqa: E402
from mgvm.evaluate import detection as detection_eval  # noqa: E402
from mgvm.models.evad import EVAD  # noqa: E402
from mgvm.ops import enlarge_boxes  # noqa: E402
from mgvm.run import evaluate as eval_run  # noqa: E402
from mgvm.run import train as train_run  # noqa: E402
from mgvm.train import checkpoint as checkpoint_lib  # noqa: E402
from mgvm.train import detection as detection_lib  # noqa: E402
from mgvm.workdir import checkpoint_dir  # noqa: E402
from tests.helpers import run_on_two_hosts, tiny  # noqa: E402

LOCALIZER = dict(dim=16, num_proposals=4, num_stages=1, num_heads=2, dynamic_dim=4, ffn_dim=32)


def _evad(**kw):
  args = dict(
    dim=32,
    depth=4,
    num_heads=2,
    num_frames=8,
    image_size=32,
    decoder_dim=16,
    decoder_depth=2,
    decoder_heads=2,
    action_hidden=16,
    localizer=LOCALIZER,
    keep_rates={1: 0.7, 2: 0.7},
    drop_path_rate=0.0,
    decoder_drop_path_rate=0.0,
  )
  args.update(kw)
  return EVAD(None, num_classes=5, rngs=nnx.Rngs(0), **args)


def test_enlarge_boxes_by_hand():
  # w + 1 = 11, h + 1 = 21: x +- 0.4 * 11 / 2 = 2.2, y +- 0.2 * 21 / 2 = 2.1; clipped to W-1, H-1
  got = enlarge_boxes(
    jnp.array([[10.0, 10.0, 20.0, 30.0], [0.0, 0.0, 31.0, 31.0]]), (0.4, 0.2), (32, 32)
  )
  np.testing.assert_allclose(got, [[7.8, 7.9, 22.2, 32.1 - 1.1], [0.0, 0.0, 31.0, 31.0]], atol=1e-5)


def test_action_losses_by_hand():
  actions = jnp.array([[[[0.0, 2.0], [1.0, -1.0], [3.0, 3.0]]]])  # L=1, B=1, P=3, C=2
  matches = jnp.array([[2, 0, -1]])  # GT 0 -> proposal 2, GT 1 -> 0, GT 2 unmatched
  gt = jnp.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
  valid = jnp.array([[True, True, False]])
  bce = lambda x, y: np.log1p(np.exp(-x)) if y else np.log1p(np.exp(x))  # noqa: E731
  want = (bce(3, 1) + bce(3, 0) + bce(0, 0) + bce(2, 1)) / 4
  np.testing.assert_allclose(
    detection_lib.action_losses(actions, matches, gt, valid), [want], rtol=1e-6
  )
  none = detection_lib.action_losses(actions, matches, gt, jnp.zeros((1, 3), bool))
  np.testing.assert_array_equal(none, [0.0])


def test_shapes_and_counts_by_tracing_only():
  abstract = nnx.eval_shape(_evad)
  assert abstract.lengths == [16, 12, 9, 9] and abstract.num_kept_tokens == 9
  graphdef, state = nnx.split(abstract)
  forward = lambda s, v: nnx.merge(graphdef, s)(v)  # noqa: E731
  out, aux = jax.eval_shape(forward, state, jax.ShapeDtypeStruct((2, 8, 32, 32, 3), jnp.float32))
  assert out["person_logits"].shape == (1, 2, 4, 2) and out["boxes"].shape == (1, 2, 4, 4)
  assert out["actions"].shape == (2, 2, 4, 5) and aux["kept_ids"].shape == (2, 5)
  with pytest.raises(ValueError, match="built for clips"):
    jax.eval_shape(forward, state, jax.ShapeDtypeStruct((1, 8, 48, 48, 3), jnp.float32))


@pytest.mark.slow  # two EVAD compiles per case
@pytest.mark.parametrize("rates,differs", [({1: 0.7, 2: 0.7}, True), ({}, False)])
def test_the_official_order_flag_moves_features_only_when_pruning(rates, differs):
  video = jax.random.normal(jax.random.key(1), (2, 8, 32, 32, 3))
  boxes = jnp.asarray(
    [
      [
        [0.0, 0.0, 31.0, 31.0],
        [4.0, 2.0, 20.0, 30.0],
        [16.0, 16.0, 31.0, 24.0],
        [1.0, 8.0, 9.0, 12.0],
      ]
    ]
    * 2
  )
  model = nnx.jit(lambda: _evad(keep_rates=rates))()
  refine = nnx.jit(lambda m, v: m.refine(*m.encode(v)[:2], boxes))
  right = refine(model, video)
  model.official_order = True
  wrong = refine(model, video)
  gap = float(jnp.abs(right - wrong).max())
  # pruned: scores order != index order, features land on wrong cells; unpruned: ids ascending
  assert (gap > 1e-4) if differs else (gap < 1e-6), gap


@pytest.mark.slow  # two EVAD compiles
def test_pruning_lowers_encoder_flops():
  video_shape = (8, 32, 32, 3)
  video = jnp.zeros((1,) + video_shape)
  flops = {}
  for name, rates in (("full", {}), ("pruned", {1: 0.6, 2: 0.6})):
    graphdef, params = nnx.split(_evad(keep_rates=rates), nnx.Param)
    flops[name] = detection_eval.encoder_gflops(graphdef, params, video)
  # 16 tokens; ceil(.6 * 16) = 10 from block 1's MLP on, ceil(.6 * 10) = 6 from block 2's
  assert flops["pruned"] < 0.85 * flops["full"]  # measured 0.78 (embedding, explicit attention)


def _detect_config(synthetic_dir):
  config = tiny(
    detect.get_config("runlocal"),
    synthetic_dir,
    total_steps=2,
    log_every_steps=1,
    checkpoint_every_steps=1,
  )
  config.data.synthetic.max_actors = 1  # one actor with one action per keyframe: num_gt is exact
  config.data.synthetic.videos_per_shard = 3  # two test shards (3 + 2 videos): one per host
  config.optim.update(warmup_steps=1, weight_decay=0.0)  # a param moves iff its gradient is not 0
  config.eval.keyframes_per_video = 2
  return config


@pytest.mark.slow
def test_runlocal_detect_train_then_eval(tmp_path, synthetic_dir):
  config = _detect_config(synthetic_dir)
  # the AVA input path (docs/evad.md): 32² videos in a 32 x 64 canvas (content 32 x 32, padded
  # right), SlowFast's normalisation, flip, the position table interpolated from a 2 x 2 grid;
  # frame-mAP in the official port's input order
  config.image_size = (32, 64)
  config.data.update(resize="short_side", normalization="kinetics", flip=True)
  config.model.pos_grid = (2, 2)
  config.eval.frame_order = "input"
  workdir = str(tmp_path / "detect")
  result = train_run.train(config, workdir, log=lambda _: None)
  assert result["step"] == 2 and result["step_cache_size"] == 1
  assert all(np.isfinite(result["metrics"][k]) for k in ("loss", "loss_ce", "loss_action"))
  # every part of the model learns: step 2's update (lr > 0 after the 1-step warmup) moves it
  ckpts = checkpoint_dir(workdir)
  before, after = (checkpoint_lib.load_params(ckpts, step=s) for s in (1, 2))
  for part in (
    "encoder",
    "localizer",
    "decoder_embed",
    "decoder_blocks",
    "action_heads",
    "mask_token",
  ):
    moved = [
      np.abs(np.asarray(x) - np.asarray(y)).max()
      for x, y in zip(jax.tree.leaves(before[part]), jax.tree.leaves(after[part]))
    ]
    assert max(moved) > 0, part
  messages = []
  out = eval_run.evaluate(config, workdir, log=messages.append)
  saved = json.load(open(os.path.join(workdir, "eval", "test.json")))
  assert saved["num_keyframes"] == 10 and saved["num_gt"] == 10  # 5 test videos x 2 keyframes
  assert 0.0 <= saved["frame_map"] <= 1.0 and saved["frame_map"] == out["frame_map"]
  assert saved["frame_order"] == "input" and saved["excluded_keyframes"] == 0
  assert saved["gflops_per_clip"] > saved["encoder_gflops_per_clip"] > 0
  assert "frame-mAP@0.5" in messages[-1]
  # Two hosts, each with its own test shard (3 and 2 videos: 6 and 4 keyframes, so host 1 pads
  # with a fully-masked batch), gather their detections: the same keyframes, ground truth and
  # frame-mAP as one host.
  outputs = run_on_two_hosts(config, workdir, train=False, tag="hosts2")
  both = json.load(open(os.path.join(workdir, "eval", "test.hosts2.json")))
  assert both["hosts"] == 2 and saved["hosts"] == 1
  for key in ("num_keyframes", "num_gt", "num_detections", "truncated_gt_boxes"):
    assert both[key] == saved[key], key
  assert both["frame_map"] == pytest.approx(saved["frame_map"], abs=1e-6)
  assert "frame-mAP@0.5" in outputs[0] and "frame-mAP@0.5" not in outputs[1]  # host 0 reports


def test_flops_per_clip_do_not_depend_on_sharding():
  """Cost analysis of a sharded program counts one device's share: divided by its clips."""
  from mgvm import sharding as sharding_lib

  graphdef, params = nnx.split(_evad(keep_rates={}), nnx.Param)
  mesh = sharding_lib.make_mesh(-1)
  video = sharding_lib.to_global({"video": np.zeros((8, 8, 32, 32, 3), np.float32)}, mesh)["video"]
  assert detection_eval.clips_per_device(video) == 8 // jax.device_count()
  single = detection_eval.encoder_gflops(graphdef, params, jnp.zeros((1, 8, 32, 32, 3)))
  np.testing.assert_allclose(
    detection_eval.encoder_gflops(graphdef, params, video), single, rtol=0.02
  )


def test_study_runs_each_keep_rate_once_without_pruning():
  from benchmarks import evad_study

  assert evad_study.settings([1.0, 0.7, 0.6], [1.0, 4.0]) == [
    (1.0, 1.0),
    (0.7, 1.0),
    (0.7, 4.0),
    (0.6, 1.0),
    (0.6, 4.0),
  ]
  config = evad_study.make_config(0.6, 4.0, 3, 10, "")
  assert (config.evad.keep_rate, config.evad.enhanced_weight, config.seed) == (0.6, 4.0, 3)
