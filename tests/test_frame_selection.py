"""Frame selection (docs/algorithms.md §3.4): the JAX rule, its tf twin, and the data option."""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from mgvm.data import format as fmt
from mgvm.data import pipeline, sampling
from mgvm.masking import frames

SIZE = 16  # frames are SIZE x SIZE, so the clips need no resize


def _planted(num, jumps, seed=0):
  """uint8 [num, SIZE, SIZE, 3]: a still textured background and a 4x4 square that stays put
  except at `jumps` {frame: (row, col)}, where it moves to (row, col) and stays there."""
  rng = np.random.default_rng(seed)
  background = rng.integers(0, 100, size=(SIZE, SIZE, 3), dtype=np.uint8)
  pos, out = (0, 0), []
  for i in range(num):
    pos = jumps.get(i, pos)
    f = background.copy()
    f[pos[0] : pos[0] + 4, pos[1] : pos[1] + 4] = 255
    out.append(f)
  return np.stack(out)


# Window of 16 frames: the square moves only inside pair (4, 5) (at frame 5, far) and at the
# start of pair (14, 15) (frame 14, a little); every other frame repeats its predecessor.
JUMPS = {5: (8, 8), 14: (9, 9)}


@pytest.mark.parametrize(
  "mode, group, num_frames, expected",
  [
    ("segment", 2, 4, [4, 5, 14, 15]),  # one pair per half: pair 2, pair 7
    ("global", 2, 4, [0, 1, 4, 5]),  # pair 0, then the strongest pair
    ("global", 2, 6, [0, 1, 4, 5, 14, 15]),
    ("segment", 1, 2, [5, 14]),  # single frames: the frames that changed
  ],
)
def test_planted_motion_is_selected_in_pairs(mode, group, num_frames, expected):
  video = jnp.asarray(_planted(16, JUMPS)[None])
  change = np.asarray(frames.frame_change(video))[0]
  assert change.dtype == np.int32
  assert set(np.flatnonzero(change)) == {5, 14} and change[5] > change[14] > 0
  picked, ids = frames.select_frames(video, num_frames, mode, group=group)
  np.testing.assert_array_equal(ids[0], expected)
  np.testing.assert_array_equal(picked[0], np.asarray(video)[0, expected])
  tf_ids = sampling.select_frame_positions(
    sampling.frame_change(tf.constant(np.asarray(video))), num_frames, mode, group
  )
  np.testing.assert_array_equal(tf_ids[0], expected)


@pytest.mark.slow  # several seconds of compiling; the full suite runs it
def test_tf_equals_jax_on_random_input():
  rng = np.random.default_rng(0)
  clips = rng.integers(0, 256, size=(5, 16, 6, 5, 3), dtype=np.uint8)
  change = sampling.frame_change(tf.constant(clips)).numpy()
  np.testing.assert_array_equal(change, frames.frame_change(jnp.asarray(clips)))
  np.testing.assert_allclose(  # the float energy is the mean change: the same order
    frames.frame_energy(jnp.asarray(clips)), change / (6 * 5 * 3), rtol=1e-6
  )
  ties = rng.integers(0, 3, size=(64, 16))  # many ties: both take the earlier frames
  for scores, mode, (group, num_frames) in itertools.product(
    (change, ties), frames.MODES, ((2, 4), (1, 4))
  ):
    got = sampling.select_frame_positions(tf.constant(scores), num_frames, mode, group).numpy()
    ref = frames.select_frame_indices(jnp.asarray(scores, jnp.int32), num_frames, mode, group=group)
    np.testing.assert_array_equal(got, ref, err_msg=f"{mode} {group} {num_frames}")
    assert (np.diff(got, axis=1) > 0).all()
    if group == 2:  # tubelet pairs stay adjacent and aligned
      assert (got[:, 0::2] % 2 == 0).all() and (got[:, 1::2] == got[:, 0::2] + 1).all()


def _shard(path, video):
  """(shard path, the frames as decoded): one record of `video`'s frames as JPEGs."""
  jpegs = [tf.io.encode_jpeg(f, quality=100).numpy() for f in video]
  with tf.io.TFRecordWriter(str(path)) as writer:
    writer.write(
      fmt.encode_example(
        video_id="planted", fps=30.0, jpeg_frames=jpegs, height=SIZE, width=SIZE, label=0
      )
    )
  return str(path), np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs])


@pytest.mark.parametrize("mode", ["finetune", "eval"])
def test_pipeline_keeps_the_planted_pairs(tmp_path, mode):
  # 16 frames, window 4 x 4 at stride 1: the window is the whole video (start 0), and the
  # decoded frames of a still scene are identical, so only the planted changes count.
  path, decoded = _shard(tmp_path / "train-00.tfrecord", _planted(16, JUMPS))
  kwargs = dict(mode=mode, num_frames=4, image_size=SIZE, frame_stride=1, target_fps=None)
  if mode == "eval":  # 3 crops (the same square frame)
    kwargs.update(batch_size=3, num_crops=3)
  else:  # 2 views, whole frames
    kwargs.update(batch_size=2, num_sample=2, crop_scale=(1.0, 1.0), flip=False)
  ds = pipeline.make_dataset(
    path, frame_selection="segment", frame_selection_window=4, frame_selection_group=2, **kwargs
  )
  batch = next(pipeline.numpy_batches(ds))
  rows = kwargs["batch_size"]
  assert batch["video"].shape == (rows, 4, SIZE, SIZE, 3)
  np.testing.assert_array_equal(batch["frame_indices"], [[4, 5, 14, 15]] * rows)
  np.testing.assert_array_equal(batch["video"], np.stack([decoded[[4, 5, 14, 15]]] * rows))


def test_errors_name_the_key(tmp_path):
  args = dict(mode="eval", num_frames=4, image_size=SIZE, batch_size=1)
  for key, value, match in (
    ("frame_selection", "best", "frame_selection must be one of"),
    ("frame_selection_window", 1, "frame_selection_window must be an integer >= 2"),
    ("frame_selection_group", 3, "frame_selection_group"),
  ):
    options = {"frame_selection": "segment", key: value}
    with pytest.raises(ValueError, match=match):
      pipeline.make_dataset(str(tmp_path / "none-*"), **args, **options)
  with pytest.raises(ValueError, match="multiple of num_frames"):
    frames.select_frame_indices(jnp.zeros((1, 10)), 4)
  with pytest.raises(ValueError, match="multiples of 2"):
    frames.select_frame_indices(jnp.zeros((1, 12)), 3, group=2)
