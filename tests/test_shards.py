"""Shards and hosts: atomic shards, stale and partial clean-up, decode_or_skip, multi-process launch."""

import os

import pytest
import tensorflow as tf

from mgvm.datasets import decode as dec
from mgvm.datasets import shards


def _records(path):
  return [r.numpy() for r in tf.data.TFRecordDataset(path)]


def test_a_shard_appears_whole_or_not_at_all(tmp_path):
  out = str(tmp_path)
  name = shards.shard_name("train", 0, 2)
  assert name == "train-00000-of-00002.tfrecord"
  with shards.write_shard(out, name) as writer:
    writer.write(b"a")
    assert not os.path.exists(tmp_path / name)  # only the hidden temporary file so far
    assert os.path.exists(tmp_path / f".{name}.tmp")
    writer.write(b"b")
  assert _records(str(tmp_path / name)) == [b"a", b"b"]
  with pytest.raises(RuntimeError, match="decoder died"):
    with shards.write_shard(out, name) as writer:
      writer.write(b"c")
      raise RuntimeError("decoder died")
  assert _records(str(tmp_path / name)) == [b"a", b"b"]  # the old shard is untouched
  assert sorted(os.listdir(out)) == [name]  # and no temporary file is left


def test_stale_and_partial_shards_go_with_their_sidecars(tmp_path):
  out = str(tmp_path)
  os.makedirs(tmp_path / ".shards")
  old = [shards.shard_name("train", k, 3) for k in range(3)]
  new = [shards.shard_name("train", k, 2) for k in range(2)]
  for name in old + new + [shards.shard_name("val", 0, 1)]:
    (tmp_path / name).write_bytes(b"")
    (tmp_path / ".shards" / f"{name}.json").write_text("{}")
  for partial in (".train-00001-of-00002.tfrecord.tmp", ".val-00000-of-00001.tfrecord.tmp"):
    (tmp_path / partial).write_bytes(b"")
  assert shards.remove_stale(out, "train", new, sidecar_dirs=(".shards",)) == old
  assert [os.path.basename(p) for p in shards.split_shards(out, "train")] == new
  assert sorted(os.listdir(tmp_path / ".shards")) == sorted(
    f"{n}.json" for n in new + ["val-00000-of-00001.tfrecord"]
  )
  removed = shards.remove_partial(out, "train")  # another split may be writing: left alone
  assert [os.path.basename(p) for p in removed] == [".train-00001-of-00002.tfrecord.tmp"]
  assert os.path.exists(tmp_path / ".val-00000-of-00001.tfrecord.tmp")
  assert len(shards.remove_partial(out)) == 1 and shards.split_shards(out, "val")


def test_decode_or_skip_returns_the_skip_record(tmp_path):
  empty = tmp_path / "empty.mp4"
  empty.write_bytes(b"")
  skipped = [
    dec.decode_or_skip(str(tmp_path / "missing.mp4")),
    dec.decode_or_skip(str(empty)),
    dec.decode_or_skip(str(empty)),
  ]
  assert skipped[0] == {"path": str(tmp_path / "missing.mp4"), "reason": "missing", "detail": ""}
  assert skipped[1]["reason"] == "empty"
  assert dec.skip_counts(skipped) == {"empty": 2, "missing": 1}


def test_a_launch_without_a_cluster_names_a_bad_process_count(monkeypatch):
  """`JAX_COORDINATOR_ADDRESS` marks a multi-process run; the count and id come from the
  environment too, and a malformed one is named before anything connects."""
  from mgvm import sharding

  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
  with pytest.raises(ValueError, match=r"JAX_NUM_PROCESSES='two' is not an integer"):
    sharding.maybe_initialize_distributed()
  monkeypatch.setenv("JAX_NUM_PROCESSES", "1")  # one process: nothing to join
  sharding.maybe_initialize_distributed()
  import jax

  assert jax.process_count() == 1


def test_the_motion_field_round_trips_and_its_absence_is_named():
  import numpy as np
  import tensorflow as tf

  from mgvm.data import format as fmt

  n, gh, gw = 3, 2, 4
  rng = np.random.default_rng(0)
  vectors = rng.normal(size=(n, gh, gw, 2)).astype(np.float32)
  valid = rng.random((n, gh, gw)) > 0.5
  motion = dict(vectors=vectors, valid=valid, frame_types=[0, 1, 2], block=16)
  common = dict(video_id="a", fps=10.0, jpeg_frames=[b"x"] * n, height=32, width=64)
  out = fmt.parse_example(
    tf.constant(fmt.encode_example(**common, motion=motion)), with_motion=True
  )
  np.testing.assert_array_equal(out["motion"].numpy(), vectors)
  np.testing.assert_array_equal(out["motion_valid"].numpy(), valid)
  assert out["motion_frame_type"].numpy().tolist() == [0, 1, 2] and int(out["motion_block"]) == 16
  with pytest.raises(ValueError, match=r"motion vectors must be \[3, gh, gw, 2\]"):
    fmt.encode_example(**common, motion=dict(motion, vectors=vectors[:2]))
  bare = tf.constant(fmt.encode_example(**common))
  with pytest.raises(tf.errors.InvalidArgumentError, match="no motion field .* --motion-vectors"):
    fmt.parse_example(bare, with_motion=True)
