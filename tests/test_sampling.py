"""FPS-aware frame sampling: hand-checked indices, and the tf versions equal the numpy ones."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mgvm.data import sampling as s


def test_stride_from_fps_or_fixed():
  assert s.stride_for_np(30.0, 10.0) == 3.0
  assert s.stride_for_np(25.0, 10.0) == 2.5
  assert s.stride_for_np(25.0, None, frame_stride=4) == 4.0
  assert s.stride_for_np(25.0, 0, frame_stride=2) == 2.0
  assert s.stride_for_np(29.97, 10.0) == pytest.approx(2.997, abs=1e-6)
  assert float(s.stride_for(tf.constant(25.0), 10.0)) == 2.5
  assert float(s.stride_for(tf.constant(25.0), None, 3)) == 3.0


@pytest.mark.parametrize(
  "target_fps, frame_stride, match",
  [(-1.0, 4, "target_fps"), (None, 0, "frame_stride"), (None, 2.5, "frame_stride")],
)
def test_bad_stride_arguments_name_the_value(target_fps, frame_stride, match):
  with pytest.raises(ValueError, match=match):
    s.stride_for_np(25.0, target_fps, frame_stride)
  with pytest.raises(ValueError, match=match):
    s.stride_for(tf.constant(25.0), target_fps, frame_stride)


def test_hand_computed_indices():
  # 30 fps -> 10 fps: every third frame.
  np.testing.assert_array_equal(s.clip_indices_np(100, 3.0, 4, start=5), [5, 8, 11, 14])
  # 25 fps -> 10 fps: i * 2.5 + 0.5 = 0.5, 3, 5.5, 8, 10.5, 13, 15.5, 18 -> floor.
  np.testing.assert_array_equal(
    s.clip_indices_np(100, 2.5, 8, start=10), [10, 13, 15, 18, 20, 23, 25, 28]
  )
  # Upsampling (target fps above the source): frames repeat.
  np.testing.assert_array_equal(s.clip_indices_np(100, 0.5, 6), [0, 1, 1, 2, 2, 3])
  # A 5-frame video shorter than the span (7) wraps around.
  np.testing.assert_array_equal(s.clip_indices_np(5, 2.0, 4), [0, 2, 4, 1])
  np.testing.assert_array_equal(s.clip_indices_np(5, 1.0, 8, start=2), [2, 3, 4, 0, 1, 2, 3, 4])


def test_span_and_start_ranges():
  assert s.clip_span_np(2.5, 16) == 39  # floor(15 * 2.5 + .5) + 1
  assert s.clip_span_np(3.0, 1) == 1
  assert s.max_start_np(100, 2.5, 16) == 61
  assert s.max_start_np(5, 2.0, 4) == 0
  rng = np.random.default_rng(0)
  starts = {s.train_start_np(50, 3.0, 16, rng) for _ in range(500)}  # span 46
  assert starts == set(range(5))


def test_eval_starts_by_hand():
  # n=100, stride 3, 16 frames: span 46, max start 54.
  np.testing.assert_array_equal(s.eval_starts_np(100, 3.0, 16, 1), [27])
  # round(k * 54 / 4) = 0, 13.5, 27, 40.5, 54 -> half to even: 14, 40.
  np.testing.assert_array_equal(s.eval_starts_np(100, 3.0, 16, 5), [0, 14, 27, 40, 54])
  np.testing.assert_array_equal(s.eval_starts_np(10, 3.0, 16, 3), [0, 0, 0])
  np.testing.assert_array_equal(s.eval_indices_np(5, 2.0, 4, 2), [[0, 2, 4, 1], [0, 2, 4, 1]])
  np.testing.assert_array_equal(s.eval_indices_np(100, 3.0, 2, 2), [[0, 3], [96, 99]])


def test_tf_equals_numpy_on_a_grid():
  rng = np.random.default_rng(1)
  for _ in range(60):
    n = int(rng.integers(1, 120))
    fps = float(rng.choice([12.0, 15.0, 23.976, 25.0, 29.97, 30.0, 50.0, 60.0]))
    target = rng.choice([None, 5.0, 7.5, 10.0, 30.0])
    target = None if target is None else float(target)
    num_out, clips = int(rng.integers(1, 17)), int(rng.integers(1, 6))
    stride_np = s.stride_for_np(fps, target, 4)
    stride_tf = s.stride_for(tf.constant(fps, tf.float32), target, 4)
    assert float(stride_tf) == stride_np
    start = int(rng.integers(0, 2 * n))
    np.testing.assert_array_equal(
      s.clip_indices(n, stride_tf, num_out, start).numpy(),
      s.clip_indices_np(n, stride_np, num_out, start),
    )
    assert int(s.clip_span(stride_tf, num_out)) == s.clip_span_np(stride_np, num_out)
    assert int(s.max_start(n, stride_tf, num_out)) == s.max_start_np(n, stride_np, num_out)
    np.testing.assert_array_equal(
      s.eval_starts(n, stride_tf, num_out, clips).numpy(),
      s.eval_starts_np(n, stride_np, num_out, clips),
    )
    np.testing.assert_array_equal(
      s.eval_indices(n, stride_tf, num_out, clips).numpy(),
      s.eval_indices_np(n, stride_np, num_out, clips),
    )


def test_tf_train_start_uniform_deterministic_and_graph_equal():
  seeds = tf.stack([tf.zeros(400, tf.int64), tf.range(400, dtype=tf.int64)], axis=1)
  draw = lambda seed: s.train_start(50, 3.0, 16, seed)
  eager = np.array([int(draw(seed)) for seed in seeds])
  graph = np.array(list(tf.data.Dataset.from_tensor_slices(seeds).map(draw).as_numpy_iterator()))
  np.testing.assert_array_equal(eager, graph)
  assert set(eager.tolist()) == set(range(5))  # [0, 50 - 46]
  assert int(s.train_start(5, 2.0, 4, [3, 4])) == 0


def test_bad_counts_raise():
  with pytest.raises(ValueError, match="num_out"):
    s.clip_indices_np(10, 2.0, 0)
  with pytest.raises(ValueError, match="num_frames"):
    s.clip_indices_np(0, 2.0, 4)
  with pytest.raises(ValueError, match="num_clips"):
    s.eval_starts(10, 2.0, 4, 0)


def _videomae_ssv2_test_indices(n, num_segment, chunk):
  """The reference's SSv2 test sampling, transcribed: both index lists sorted, then [chunk::2]."""
  tick = n / float(num_segment)
  both = [int(tick / 2.0 + tick * x) for x in range(num_segment)] + [
    int(tick * x) for x in range(num_segment)
  ]
  return np.sort(np.array(both))[chunk::2]


def test_segment_eval_by_hand_and_against_the_reference_rule():
  # n = 30, T = 4: tick 7.5 -> first frames 0, 7, 15, 22; middles 3.75, 11.25, 18.75, 26.25.
  np.testing.assert_array_equal(
    s.segment_eval_indices_np(30, 4, 2), [[0, 7, 15, 22], [3, 11, 18, 26]]
  )
  for n in range(1, 90):
    got = s.segment_eval_indices_np(n, 16, 2)
    for chunk in (0, 1):
      np.testing.assert_array_equal(got[chunk], _videomae_ssv2_test_indices(n, 16, chunk))
    np.testing.assert_array_equal(s.segment_eval_indices(n, 16, 2).numpy(), got)
  np.testing.assert_array_equal(
    s.segment_eval_indices(31, 5, 3).numpy(), s.segment_eval_indices_np(31, 5, 3)
  )


def test_segment_train_one_frame_per_segment():
  # n = 35, T = 4: segments of 35 // 4 = 8 frames: [0, 8), [8, 16), [16, 24), [24, 32).
  seen = np.zeros((4, 35), bool)
  rng = np.random.default_rng(0)
  for i in range(200):
    for idx in (
      s.segment_train_indices(35, 4, [0, i]).numpy(),
      s.segment_train_indices_np(35, 4, rng),
    ):
      assert idx.dtype == np.int32 and idx.shape == (4,)
      assert np.all(idx // 8 == np.arange(4)), idx
      seen[np.arange(4), idx] = True
  np.testing.assert_array_equal(seen.sum(1), [8, 8, 8, 8])  # every frame of a segment is drawn
  # Shorter than the clip: floor(i * n / T) (the reference would repeat frame 0).
  np.testing.assert_array_equal(s.segment_train_indices_np(3, 6, rng), [0, 0, 1, 1, 2, 2])
  np.testing.assert_array_equal(s.segment_train_indices(3, 6, [1, 2]).numpy(), [0, 0, 1, 1, 2, 2])


def test_target_fps_choices():
  assert s.check_target_fps_choices(None) is None and s.check_target_fps_choices(0) is None
  assert s.check_target_fps_choices(8) == (8.0,)
  assert s.check_target_fps_choices([4, 8.0, 16]) == (4.0, 8.0, 16.0)
  for bad in ([], [8.0, 0.0], -2.0):
    with pytest.raises(ValueError, match="target_fps"):
      s.check_target_fps_choices(bad)
  draws = [float(s.draw_target_fps((4.0, 8.0, 16.0), [7, i])) for i in range(600)]
  counts = {f: draws.count(f) for f in (4.0, 8.0, 16.0)}
  assert sum(counts.values()) == 600 and min(counts.values()) > 150, counts  # ~200 each
  assert float(s.stride_from_fps(tf.constant(30.0), 8.0)) == 3.75
