"""Optimizer recipe: schedule values, decay mask, layer ids, one AdamW step by hand."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mgvm.models.classifier import VideoClassifier
from mgvm.models.mae import VideoMAE
from mgvm.train import optim


def _names(tree):
  return {"/".join(optim.path_names(p)): v for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def _abstract_classifier():
  """A depth-2 VideoClassifier with ShapeDtypeStruct params (no init compute)."""
  return nnx.eval_shape(
    lambda: VideoClassifier(
      None,
      num_classes=3,
      dim=16,
      depth=2,
      num_heads=2,
      num_frames=4,
      image_size=32,
      rngs=nnx.Rngs(0),
    )
  )


# ---------------------------------------------------------------------------- schedule


def test_schedule_hand_values():
  # base 1.5e-4 x 2048 / 256 = 1.2e-3 peak; min 1e-5 x 8 = 8e-5 end.
  sched = optim.lr_schedule(
    base_lr=1.5e-4, min_lr=1e-5, global_batch_size=2048, warmup_steps=5, total_steps=15
  )
  peak, end = 1.2e-3, 8e-5
  expect = {
    0: 0.0,
    2: peak * 2 / 4,  # linspace(0, peak, 5)[2]
    4: peak,  # warmup reaches the peak at its last step
    5: peak,  # cosine i = 0
    10: end + 0.5 * (peak - end),  # i = 5 of 10: cos(pi / 2) = 0
    14: end + 0.5 * (peak - end) * (1 + math.cos(math.pi * 9 / 10)),
    15: end,
    1000: end,
  }
  for step, value in expect.items():
    np.testing.assert_allclose(float(sched(step)), value, rtol=1e-6, atol=1e-12, err_msg=str(step))


def test_schedule_matches_reference_table():
  base, final, warmup, total = 3e-4, 1e-6, 7, 40
  # The reference builds the whole per-step table with numpy.
  table = np.concatenate(
    [
      np.linspace(0, base, warmup),
      final
      + 0.5 * (base - final) * (1 + np.cos(np.pi * np.arange(total - warmup) / (total - warmup))),
    ]
  )
  sched = optim.lr_schedule(
    base_lr=base, min_lr=final, global_batch_size=256, warmup_steps=warmup, total_steps=total
  )
  got = jax.jit(jax.vmap(sched))(jnp.arange(total))
  np.testing.assert_allclose(np.asarray(got), table, rtol=1e-5, atol=1e-12)


def test_schedule_no_warmup_and_bad_args():
  sched = optim.lr_schedule(
    base_lr=1e-3, min_lr=0.0, global_batch_size=512, warmup_steps=0, total_steps=4
  )
  np.testing.assert_allclose(float(sched(0)), 2e-3, rtol=1e-6)
  with pytest.raises(ValueError, match="warmup_steps"):
    optim.lr_schedule(base_lr=1e-3, min_lr=0.0, global_batch_size=8, warmup_steps=5, total_steps=5)
  with pytest.raises(ValueError, match="global_batch_size"):
    optim.lr_schedule(base_lr=1e-3, min_lr=0.0, global_batch_size=0, warmup_steps=0, total_steps=5)


def test_describe_lr():
  text = optim.describe_lr(
    {"base_lr": 1.5e-4, "min_lr": 1e-5, "warmup_steps": 40, "weight_decay": 0.05}, 2048
  )
  assert text.startswith("peak lr 1.2e-3 = base_lr 1.5e-4 x 2048 videos per step / 256"), text
  assert "min lr 8e-5" in text
  text = optim.describe_lr(
    dict(CFG, base_lr=4e-4, warmup_from=4e-5, schedule="step", decay_steps=(50, 80)), 16
  )
  assert "peak lr 2.5e-5" in text and "warmup from 2.5e-6" in text, text
  assert text.endswith("x0.1 at steps 50, 80"), text


def test_warmup_from_a_floor_cosine():
  # linspace(start, peak, W) as the reference's start_warmup_value: 1e-4 .. 1e-3 at batch 256
  sched = optim.lr_schedule(
    base_lr=1e-3,
    min_lr=0.0,
    global_batch_size=256,
    warmup_steps=4,
    total_steps=10,
    warmup_from=1e-4,
  )
  want = np.linspace(1e-4, 1e-3, 4)
  got = [float(sched(s)) for s in range(4)]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_step_schedule_hand_values():
  """EVAD's schedule at batch 16: peak 4e-4 x 16 / 256 = 2.5e-5, warmup from 2.5e-6 over 10 steps
  (SlowFast: start + (lr(W) - start) * s / W), x0.1 at steps 50 and 80."""
  sched = optim.lr_schedule(
    base_lr=4e-4,
    min_lr=1.0,  # unused by "step"
    global_batch_size=16,
    warmup_steps=10,
    total_steps=120,
    warmup_from=4e-5,
    schedule="step",
    decay_steps=(50, 80),
  )
  peak, start = 2.5e-5, 2.5e-6
  expect = {
    0: start,
    5: start + (peak - start) * 5 / 10,
    9: start + (peak - start) * 9 / 10,
    10: peak,
    49: peak,
    50: peak * 0.1,
    79: peak * 0.1,
    80: peak * 0.01,
    500: peak * 0.01,
  }
  for step, value in expect.items():
    np.testing.assert_allclose(float(sched(step)), value, rtol=1e-5, err_msg=str(step))
  with pytest.raises(ValueError, match="ascending"):
    optim.lr_schedule(
      base_lr=1e-3, min_lr=0.0, global_batch_size=8, warmup_steps=0, total_steps=9,
      schedule="step", decay_steps=(5, 3),
    )  # fmt: skip
  with pytest.raises(ValueError, match="schedule='linear'"):
    optim.lr_schedule(
      base_lr=1e-3, min_lr=0.0, global_batch_size=8, warmup_steps=0, total_steps=9,
      schedule="linear",
    )  # fmt: skip


def test_lr_batch_size_counts_videos_or_clips():
  import ml_collections

  c = ml_collections.ConfigDict(
    dict(batch_size=768, data=dict(num_sample=2), optim=dict(lr_scale_by="videos"))
  )
  assert optim.lr_batch_size(c) == 384  # VideoMAE 1600e fine-tuning: 384 videos x 2 clips
  c.optim.lr_scale_by = "clips"
  assert optim.lr_batch_size(c) == 768
  c.optim.lr_scale_by = "video"
  with pytest.raises(ValueError, match="lr_scale_by='video'"):
    optim.lr_batch_size(c)


# ------------------------------------------------------------------------- decay mask


def test_decay_mask_videomae():
  model = nnx.eval_shape(
    lambda: VideoMAE(
      None,
      dim=16,
      depth=1,
      num_heads=2,
      decoder_depth=1,
      num_frames=4,
      image_size=32,
      rngs=nnx.Rngs(0),
    )
  )
  _, params = nnx.split(model, nnx.Param)
  mask = _names(optim.decay_mask(params))
  decayed = {k for k, v in mask.items() if v}
  assert decayed == {
    "encoder/patch_embed/proj/kernel",
    "encoder/blocks/0/attn/qkv/kernel",
    "encoder/blocks/0/attn/proj/kernel",
    "encoder/blocks/0/mlp/fc1/kernel",
    "encoder/blocks/0/mlp/fc2/kernel",
    "encoder_to_decoder/kernel",
    "decoder/blocks/0/attn/qkv/kernel",
    "decoder/blocks/0/attn/proj/kernel",
    "decoder/blocks/0/mlp/fc1/kernel",
    "decoder/blocks/0/mlp/fc2/kernel",
    "decoder/head/kernel",
  }
  # The mask token is 3-D but never decayed; biases and norms are 1-D.
  assert mask["mask_token"] is False
  assert mask["encoder/blocks/0/attn/q_bias"] is False
  assert mask["encoder/norm/scale"] is False


def test_decay_mask_names():
  tree = {
    "pos_embed": jnp.zeros((1, 8, 4)),
    "cls_token": jnp.zeros((1, 1, 4)),
    "proj": {"kernel": jnp.zeros((4, 4)), "bias": jnp.zeros((4,))},
    "rel_bias": jnp.zeros((3, 3)),
    "gamma": jnp.zeros((4,)),
  }
  assert _names(optim.decay_mask(tree)) == {
    "pos_embed": False,
    "cls_token": False,
    "proj/kernel": True,
    "proj/bias": False,
    "rel_bias": False,
    "gamma": False,
  }


# ------------------------------------------------------------------------ layer decay


def test_layer_ids_tiny_classifier():
  _, params = nnx.split(_abstract_classifier(), nnx.Param)
  ids = {
    k: optim.layer_index(p, 2)
    for p, _ in jax.tree_util.tree_leaves_with_path(params)
    for k in ["/".join(optim.path_names(p))]
  }
  assert ids["encoder/patch_embed/proj/kernel"] == 0
  assert ids["encoder/patch_embed/proj/bias"] == 0
  assert ids["encoder/blocks/0/attn/qkv/kernel"] == 1
  assert ids["encoder/blocks/0/norm1/scale"] == 1
  assert ids["encoder/blocks/1/mlp/fc2/bias"] == 2
  assert ids["fc_norm/scale"] == 3
  assert ids["head/kernel"] == 3
  assert set(ids.values()) == {0, 1, 2, 3}
  scales = _names(optim.layer_decay_scales(params, 2, 0.5))
  assert scales["encoder/patch_embed/proj/kernel"] == 0.125
  assert scales["encoder/blocks/0/attn/qkv/kernel"] == 0.25
  assert scales["encoder/blocks/1/attn/qkv/kernel"] == 0.5
  assert scales["head/kernel"] == 1.0


def test_layer_ids_reference_names():
  assert optim.layer_index(("mask_token",), 4) == 0
  assert optim.layer_index(("pos_embed",), 4) == 0
  assert optim.layer_index(("blocks", "3", "attn", "qkv", "kernel"), 4) == 4
  assert optim.layer_index(("decoder", "blocks", "0", "norm1", "scale"), 4) == 5
  assert optim.layer_index(("encoder", "norm", "scale"), 4) == 5
  with pytest.raises(ValueError, match="num_layers=4"):
    optim.layer_index(("encoder", "blocks", "4", "norm1", "scale"), 4)


# ---------------------------------------------------------------------- one AdamW step


CFG = dict(
  base_lr=1e-3,
  min_lr=0.0,
  warmup_steps=0,
  weight_decay=0.05,
  b1=0.9,
  b2=0.95,
  eps=1e-8,
  layer_decay=1.0,
  clip_grad_norm=0.0,
)


def _tree():
  params = {
    "encoder": {
      "patch_embed": {"kernel": jnp.array([[1.0, -2.0], [0.5, 3.0]])},
      "blocks": {
        "0": {"kernel": jnp.array([[0.3, 0.1], [-0.2, 0.4]]), "bias": jnp.array([0.1, -0.1])}
      },
    },
    "head": {"kernel": jnp.array([[2.0], [-1.0]]), "bias": jnp.array([0.25])},
  }
  grads = {
    "encoder": {
      "patch_embed": {"kernel": jnp.array([[0.1, 0.2], [-0.3, 0.4]])},
      "blocks": {
        "0": {"kernel": jnp.array([[1.0, -0.5], [0.2, 0.0]]), "bias": jnp.array([0.3, 0.6])}
      },
    },
    "head": {"kernel": jnp.array([[-0.7], [0.05]]), "bias": jnp.array([2.0])},
  }
  return params, grads


@pytest.mark.parametrize("layer_decay,clip", [(1.0, 0.0), (0.5, 0.0), (0.5, 1.0)])
def test_adamw_steps_by_hand(layer_decay, clip):
  cfg = dict(CFG, layer_decay=layer_decay, clip_grad_norm=clip)
  params, grads = _tree()
  grads2 = jax.tree.map(lambda g: -0.5 * g + 0.1, grads)
  tx, sched = optim.make_optimizer(cfg, params, global_batch_size=512, total_steps=10, num_layers=1)
  lr = 1e-3 * 512 / 256  # no warmup, cosine at i = 0 and i = 1 (of 10)
  lrs = [float(sched(0)), float(sched(1))]
  np.testing.assert_allclose(lrs[0], lr, rtol=1e-6)
  state = tx.init(params)
  p = params
  for g in (grads, grads2):
    updates, state = jax.jit(tx.update)(g, state, p)
    p = optax.apply_updates(p, updates)
  # num_layers=1: patch_embed -> 0, blocks/0 -> 1, head -> 2.
  scales = {
    "encoder/patch_embed/kernel": layer_decay**2,
    "encoder/blocks/0/kernel": layer_decay,
    "encoder/blocks/0/bias": layer_decay,
    "head/kernel": 1.0,
    "head/bias": 1.0,
  }
  hand = _hand_adamw(params, (grads, grads2), lrs, cfg, scales, clip)
  for k, value in _names(p).items():
    np.testing.assert_allclose(np.asarray(value), hand[k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_lr_multipliers_by_hand():
  """`lr_multipliers={"head": 8}` (EVAD's detection-head LR) scales the head's whole update."""
  cfg = dict(CFG, layer_decay=0.5, lr_multipliers={"head": 8.0})
  params, grads = _tree()
  tx, sched = optim.make_optimizer(cfg, params, global_batch_size=512, total_steps=10, num_layers=1)
  state = tx.init(params)
  updates, state = tx.update(grads, state, params)
  p = optax.apply_updates(params, updates)
  scales = {
    "encoder/patch_embed/kernel": 0.25,
    "encoder/blocks/0/kernel": 0.5,
    "encoder/blocks/0/bias": 0.5,
    "head/kernel": 8.0,
    "head/bias": 8.0,
  }
  hand = _hand_adamw(params, (grads,), [float(sched(0))], cfg, scales, 0.0)
  for k, value in _names(p).items():
    np.testing.assert_allclose(np.asarray(value), hand[k], rtol=1e-5, atol=1e-7, err_msg=k)
  with pytest.raises(ValueError, match=r"patterns \['localizer'\] match no param"):
    optim.make_optimizer(
      dict(CFG, lr_multipliers={"localizer": 8.0}),
      params,
      global_batch_size=8,
      total_steps=10,
      num_layers=1,
    )
  with pytest.raises(ValueError, match="must be > 0"):
    optim.make_optimizer(
      dict(CFG, lr_multipliers=(("head", 0.0),)),
      params,
      global_batch_size=8,
      total_steps=10,
      num_layers=1,
    )


def test_lr_multiplier_patterns():
  """Patterns match '/'-joined paths whole or up to a '/'; the first match wins."""
  rules = optim.multiplier_rules(
    (("localizer/heads", 8.0), ("decoder_.*", 4.0), ("mask_token", 8.0), ("localizer", 2.0))
  )
  assert optim.multiplier_of("localizer/heads/0/linear1/kernel", rules) == 8.0
  assert optim.multiplier_of("localizer/fpn/lateral/0/kernel", rules) == 2.0
  assert optim.multiplier_of("localizer/heads_extra/kernel", rules) == 2.0  # not at a '/'
  assert optim.multiplier_of("decoder_blocks/1/mlp/kernel", rules) == 4.0
  assert optim.multiplier_of("mask_token", rules) == 8.0
  assert optim.multiplier_of("encoder/blocks/0/mask_token", rules) == 1.0  # anchored at the start
  with pytest.raises(ValueError, match="unterminated|missing"):
    optim.multiplier_rules((("head(", 2.0),))
  with pytest.raises(ValueError, match="not a .regex, factor. pair"):
    optim.multiplier_rules(("head",))


def _hand_adamw(params, grads_list, lrs, cfg, scales, clip):
  """numpy AdamW, torch semantics: p -= lr*scale*(mhat/(sqrt(vhat)+eps) + wd*p) (wd on >=2-D)."""
  p = {k: np.asarray(v, np.float64) for k, v in _names(params).items()}
  m = {k: np.zeros_like(v) for k, v in p.items()}
  v = {k: np.zeros_like(x) for k, x in p.items()}
  b1, b2, eps, wd = cfg["b1"], cfg["b2"], cfg["eps"], cfg["weight_decay"]
  for t, (grads, lr) in enumerate(zip(grads_list, lrs), start=1):
    g = {k: np.asarray(x, np.float64) for k, x in _names(grads).items()}
    if clip:
      norm = math.sqrt(sum(float((x**2).sum()) for x in g.values()))
      g = {k: x * min(1.0, clip / norm) for k, x in g.items()}
    for k in p:
      m[k] = b1 * m[k] + (1 - b1) * g[k]
      v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
      mhat, vhat = m[k] / (1 - b1**t), v[k] / (1 - b2**t)
      decay = wd * p[k] if p[k].ndim >= 2 else 0.0
      p[k] = p[k] - lr * scales[k] * (mhat / (np.sqrt(vhat) + eps) + decay)
  return p


class _Encoder(nnx.Module):
  def __init__(self, rngs):
    self.patch_embed = nnx.Linear(4, 8, rngs=rngs)
    self.blocks = nnx.List([nnx.Linear(8, 8, rngs=rngs), nnx.Linear(8, 8, rngs=rngs)])


class _TinyNet(nnx.Module):
  """Same param paths as a depth-2 classifier: encoder/{patch_embed, blocks/k}, fc_norm, head."""

  def __init__(self, rngs):
    self.encoder = _Encoder(rngs)
    self.fc_norm = nnx.LayerNorm(8, rngs=rngs)
    self.head = nnx.Linear(8, 3, rngs=rngs)

  def __call__(self, x):
    x = self.encoder.patch_embed(x)
    for block in self.encoder.blocks:
      x = x + jax.nn.gelu(block(x))
    return self.head(self.fc_norm(x))


def test_make_optimizer_on_nnx_state():
  graphdef, params = nnx.split(_TinyNet(nnx.Rngs(0)), nnx.Param)
  cfg = dict(CFG, layer_decay=0.75, clip_grad_norm=1.0, warmup_steps=2)
  tx, _ = optim.make_optimizer(cfg, params, global_batch_size=8, total_steps=5, num_layers=2)
  opt_state = tx.init(params)
  x = jnp.linspace(-1, 1, 8).reshape(2, 4)

  @jax.jit
  def step(params, opt_state):
    def loss_fn(p):
      return jnp.mean(nnx.merge(graphdef, p)(x) ** 2)

    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  for _ in range(3):
    params, opt_state = step(params, opt_state)
  assert isinstance(params, nnx.State)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))
  # The scale of each update follows its layer (embedding 0.75^3 ... head 1).
  scales = _names(optim.layer_decay_scales(params, 2, 0.75))
  assert scales["encoder/patch_embed/kernel"] == pytest.approx(0.75**3)
  assert scales["encoder/blocks/1/bias"] == pytest.approx(0.75)
  assert scales["fc_norm/scale"] == 1.0


def test_config_errors():
  params, _ = _tree()
  bad = dict(CFG)
  del bad["base_lr"]
  with pytest.raises(KeyError, match="base_lr"):
    optim.make_optimizer(bad, params, global_batch_size=8, total_steps=5, num_layers=1)
  with pytest.raises(ValueError, match="layer_decay"):
    optim.make_optimizer(
      dict(CFG, layer_decay=1.5), params, global_batch_size=8, total_steps=5, num_layers=1
    )
  with pytest.raises(ValueError, match="num_layers=0"):
    optim.make_optimizer(
      dict(CFG, layer_decay=0.5), params, global_batch_size=8, total_steps=5, num_layers=0
    )
