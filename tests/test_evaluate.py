"""Multi-view aggregation (softmax averaged over views), top-k, padding, reconstruction PSNR."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mgvm import masking, models
from mgvm.evaluate import classification, reconstruction


def test_views_average_probabilities_not_logits_and_padding_is_ignored():
  agg = classification.ViewAggregator(num_classes=3)
  # video 0 (label 2): view A is confidently class 0, views B and C mildly class 2.
  probs = np.array(
    [
      [0.9, 0.0, 0.1],
      [0.3, 0.0, 0.7],
      [0.3, 0.0, 0.7],
      [0.0, 1.0, 0.0],  # video 1 (label 1)
      [0.0, 0.0, 1.0],
    ]
  )  # padding row: must not count
  agg.add(probs[:3], np.array([0, 0, 0]), np.array([2, 2, 2]))
  agg.add(probs[3:], np.array([1, 7]), np.array([1, 0]), mask=np.array([True, False]))
  result = agg.result(ks=(1, 2))
  # video 0 mean = [0.5, 0, 0.5]: tie broken towards class 0 -> wrong at top-1, right at top-2.
  assert result["top1"] == 0.5 and result["top2"] == 1.0
  assert result["num_videos"] == 2 and result["num_views"] == 4
  assert result["views_per_video"] == -1 and result["chance"] == pytest.approx(1 / 3)


def test_views_with_different_labels_for_one_video_fail():
  agg = classification.ViewAggregator(num_classes=2)
  with pytest.raises(ValueError, match="video 4"):
    agg.add(np.eye(2), np.array([4, 4]), np.array([0, 1]))


def test_topk_accuracy_by_hand():
  probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.2, 0.5, 0.3]])
  labels = np.array([2, 1, 0])
  assert classification.topk_accuracy(probs, labels, 1) == pytest.approx(1 / 3)
  assert classification.topk_accuracy(probs, labels, 2) == pytest.approx(2 / 3)
  assert classification.topk_accuracy(probs, labels, 3) == 1.0


def test_reconstruction_of_a_perfect_prediction_has_zero_loss_and_high_psnr():
  """Feeding the exact normalized targets back maps to the true pixels (PSNR ~ float precision)."""
  from mgvm.train import losses

  video = jax.random.normal(jax.random.key(0), (2, 4, 32, 32, 3)) * 0.5
  masker = masking.build({"kind": "tube", "ratio": 0.75}, (2, 2, 2))
  m = masker(jax.random.key(1), video, None)
  targets = jnp.take_along_axis(
    losses.pixel_targets(video, (2, 16, 16)), m.ids_target[..., None], 1
  )
  recon, truth = reconstruction.reconstruct_pixels(video, targets, m, (2, 16, 16))
  truth_clipped = jnp.clip(truth, 0, 1)
  np.testing.assert_allclose(recon, truth_clipped, atol=1e-5)
  noisy, _ = reconstruction.reconstruct_pixels(video, targets + 0.3, m, (2, 16, 16))
  assert float(jnp.mean((noisy - truth_clipped) ** 2)) > 1e-3


def test_per_clip_metrics_shapes_and_consistency_with_mae_loss():
  from mgvm.train.steps import reconstruction_loss

  mae = models.VideoMAE(
    None,
    dim=32,
    depth=1,
    num_heads=2,
    decoder_dim=16,
    decoder_depth=1,
    decoder_heads=2,
    num_frames=4,
    image_size=32,
    rngs=nnx.Rngs(0),
  )
  masker = masking.build({"kind": "tube", "ratio": 0.5}, mae.grid)
  video = jax.random.normal(jax.random.key(0), (3, 4, 32, 32, 3))
  out = nnx.jit(lambda m, v: reconstruction.per_clip_metrics(m, masker, v, jax.random.key(5)))(
    mae, video
  )
  assert out["loss"].shape == (3,) and out["psnr"].shape == (3,)
  batch_loss, _ = nnx.jit(lambda m, v: reconstruction_loss(m, masker, v, jax.random.key(5)))(
    mae, video
  )
  # equal target counts per clip, so the batch loss is the mean of the per-clip losses
  np.testing.assert_allclose(out["loss"].mean(), batch_loss, rtol=1e-5)
  assert np.all(np.isfinite(out["psnr"])) and np.all(out["psnr"] > 0)
