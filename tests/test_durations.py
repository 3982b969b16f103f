"""Durations in epochs (`mgvm.train.durations`) and the LR batch, by hand."""

import ml_collections
import pytest

from mgvm.train import durations


def _config(**top):
  c = ml_collections.ConfigDict(
    dict(
      batch_size=64,
      total_steps=0,
      total_epochs=10,
      data=dict(num_sample=2, num_train_videos=0),
      optim=dict(
        warmup_steps=0, warmup_epochs=1.5, schedule="cosine", decay_steps=(), decay_epochs=()
      ),
    )
  )
  c.update(top)
  return c


def test_epochs_to_steps_by_hand():
  # 64 clips / 2 per video = 32 videos per step; 1000 // 32 = 31 steps per epoch
  c = _config()
  out = durations.resolve(c, 1000)
  assert out.total_steps == 310 and out.optim.warmup_steps == 47  # 46.5 rounds up
  assert c.total_steps == 0  # the given config is left alone
  assert out.total_epochs == 10 and out.optim.warmup_epochs == 1.5
  line = durations.describe(c, out, 1000)
  assert line == (
    "durations: total 10 epochs -> 310 steps; warmup 1.5 epochs -> 47 steps (1000 training "
    "videos // 32 per step = 31 steps per epoch)"
  )


def test_step_schedule_boundaries_in_epochs():
  c = _config(optim=dict(schedule="step", decay_epochs=(5, 8), warmup_epochs=2))
  out = durations.resolve(c, 320)  # 10 steps per epoch
  assert out.optim.decay_steps == (50, 80) and out.optim.warmup_steps == 20
  c.optim.decay_epochs = ()
  with pytest.raises(ValueError, match="neither optim.decay_steps nor optim.decay_epochs"):
    durations.resolve(c, 320)


def test_the_config_count_wins_and_the_source_is_asked_only_for_epochs():
  c = _config(data=dict(num_train_videos=640))
  assert durations.resolve(c, lambda: pytest.fail("not asked")).total_steps == 200
  steps = _config(total_steps=7, total_epochs=0, optim=dict(warmup_steps=1, warmup_epochs=0))
  assert durations.resolve(steps, lambda: pytest.fail("not asked")) is steps


def test_bad_durations_fail_naming_the_keys():
  with pytest.raises(ValueError, match="both total_steps=5 and total_epochs=10"):
    durations.resolve(_config(total_steps=5), 1000)
  with pytest.raises(ValueError, match="neither total_steps nor total_epochs"):
    durations.resolve(_config(total_epochs=0), 1000)
  with pytest.raises(ValueError, match=r"set config.data.num_train_videos \(videos; for det"):
    durations.resolve(_config(), lambda: None)
  with pytest.raises(ValueError, match="less than one step of 32 videos"):
    durations.resolve(_config(), 31)
  with pytest.raises(ValueError, match="multiple of num_sample"):
    durations.resolve(_config(batch_size=63), 1000)


def test_sources_count_their_videos(tmp_path):
  import json

  from mgvm.data import sources

  (tmp_path / "train-00000-of-00001.tfrecord").write_bytes(b"")
  summary = {
    "splits": {"train": {"written": 235, "annotated_frames": 210634}, "val": {"written": 64}}
  }
  (tmp_path / "summary.json").write_text(json.dumps(summary))
  source = sources.resolve(ml_collections.ConfigDict(dict(source="tfrecord", dir=str(tmp_path))))
  assert source.count("train") == 235 and source.count("val") == 64
  assert source.count("train", "keyframes") == 210634 and source.count("val", "keyframes") is None
  assert source.count("test") is None
