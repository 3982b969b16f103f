"""The accelerator's share of the input pipeline equals the TensorFlow ops it replaces."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from mgvm.data import augment, device_ops, video_ops


def _clip(seed=0, shape=(2, 3, 8, 10, 3)):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_normalize_and_flip_equal_the_tensorflow_ops_exactly():
  video = _clip()
  expected = np.stack([video_ops.normalize(tf.constant(v)).numpy() for v in video])
  np.testing.assert_array_equal(np.asarray(jax.jit(device_ops.normalize)(video)), expected)
  flags = np.array([True, False])
  flipped = np.asarray(device_ops.flip(video, flags))
  np.testing.assert_array_equal(flipped[0], tf.reverse(video[0], [2]).numpy())
  np.testing.assert_array_equal(flipped[1], video[1])


def test_erase_equals_random_erasing_given_its_boxes_and_noise():
  """The host draws the box (`random_erasing_boxes`), the accelerator fills it: with the noise
  TensorFlow's `random_erasing` draws, the result is the same to the bit."""
  clips = [video_ops.normalize(tf.constant(v)).numpy() for v in _clip(1, (3, 4, 16, 20, 3))]
  seeds = [tf.constant([s, 11], tf.int64) for s in range(3)]
  boxes = np.stack(
    [augment.random_erasing_boxes([4, 16, 20], s, prob=0.9)[0].numpy() for s in seeds]
  )
  noise = np.stack(
    [
      tf.random.stateless_normal(
        [4, 16, 20, 3], tf.random.experimental.stateless_split(s, 6)[5], dtype=tf.float32
      ).numpy()
      for s in seeds
    ]
  )
  expected = np.stack(
    [augment.random_erasing(c, s, prob=0.9).numpy() for c, s in zip(clips, seeds)]
  )
  got = np.asarray(device_ops.erase(np.stack(clips), boxes, noise))
  np.testing.assert_array_equal(got, expected)
  assert (boxes[:, 2] > 0).any()  # something was erased


def test_model_video_does_flip_normalise_erase_in_that_order_and_passes_floats_through():
  video = _clip(2)
  batch = {
    "video": video,
    "flip": np.array([True, False]),
    "erase_box": np.array([[1, 2, 3, 4], [0, 0, 0, 0]]),
  }
  key = jax.random.key(3)
  got = np.asarray(jax.jit(device_ops.model_video)(batch, key))
  expected = device_ops.normalize(device_ops.flip(video, batch["flip"]))
  noise = jax.random.normal(key, video.shape, jnp.float32)
  expected = np.asarray(device_ops.erase(expected, batch["erase_box"], noise))
  np.testing.assert_array_equal(got, expected)
  assert np.all(got[0, :, 1:4, 2:6] == np.asarray(noise)[0, :, 1:4, 2:6])
  np.testing.assert_array_equal(got[1], np.asarray(device_ops.normalize(video[1])))
  floats = np.zeros((1, 2, 4, 4, 3), np.float32)
  assert device_ops.model_video({"video": floats}) is floats
  with pytest.raises(ValueError, match="needs a key"):
    device_ops.model_video(batch)


def test_decoding_only_the_crop_window_gives_the_same_pixels():
  """Exact for 4:4:4 JPEGs (what mgvm writes); with subsampled chroma the window's edge pixels
  are upsampled from fewer neighbours and may differ (docs/data.md)."""
  from mgvm.datasets.synthetic import encode_jpeg

  rng = np.random.default_rng(4)
  frames = encode_jpeg(rng.integers(0, 256, (4, 37, 53, 3), dtype=np.uint8), quality=80)
  jpegs = tf.stack(frames)
  indices = tf.constant([2, 0, 2, 3])
  assert [int(v) for v in video_ops.jpeg_size(jpegs)] == [37, 53]
  for box in [(0, 0, 37, 53), (5, 7, 20, 31), (17, 1, 20, 52)]:
    whole = video_ops.decode_frames(jpegs, indices)
    window = video_ops.decode_frames(jpegs, indices, box=box)
    y, x, h, w = box
    np.testing.assert_array_equal(window.numpy(), whole[:, y : y + h, x : x + w].numpy())
    resized = video_ops.resize(window, 16)
    np.testing.assert_array_equal(resized.numpy(), video_ops.crop_and_resize(whole, box, 16))
    pixels = video_ops.to_uint8(resized).numpy()
    assert pixels.dtype == np.uint8
    assert np.abs(pixels - resized.numpy()).max() <= 0.5  # the one rounding on the host


@pytest.mark.slow  # a fresh interpreter
def test_model_masker_step_and_device_code_import_without_tensorflow():
  """The GPU image has no TensorFlow: everything the accelerator runs, and the configs, must
  import without it."""
  import subprocess
  import sys

  code = (
    "import sys; sys.modules['tensorflow'] = None\n"
    "import mgvm.models, mgvm.masking, mgvm.train.steps, mgvm.train.losses\n"
    "import mgvm.data.device_ops, mgvm.evaluate.classification, mgvm.evaluate.reconstruction\n"
    "from configs import finetune, pretrain\n"
    "assert 'move_left' in pretrain.get_config('runlocal').data.synthetic.classes\n"
  )
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
