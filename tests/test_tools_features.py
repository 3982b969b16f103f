"""python -m mgvm.features: windows of the documented rule, equal to running the model by hand on
`decode`'s frames; timestamps, skips, token maps, and a reader that holds at most T frames."""

import json
import os
import weakref

import numpy as np
import pytest

from tests import video_files

WINDOW, SIZE = 4, 32


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """A tiny classifier as a Hugging Face folder, and a folder with a list of videos."""
  from flax import nnx

  from mgvm import models
  from mgvm.weights.hf_export import save_hf

  root = tmp_path_factory.mktemp("features")
  model = models.VideoClassifier(
    None,
    dim=32,
    depth=1,
    num_heads=2,
    num_classes=3,
    num_frames=WINDOW,
    image_size=SIZE,
    rngs=nnx.Rngs(0),
  )
  checkpoint = save_hf(model, str(root / "clf"))
  videos = root / "videos"
  videos.mkdir()
  video_files.write_video(videos / "long.mp4", 40, 25)  # 20 sampled frames at stride 2
  video_files.write_video(videos / "short.mp4", 5, 25)  # 3 sampled: shorter than a window
  (videos / "bad.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
  (videos / "list.txt").write_text("long.mp4\nshort.mp4\n\n# a comment\nbad.mp4\ngone.mp4\n")
  return root, checkpoint


def _by_hand(path, stride, hop, model):
  """(windows [W, T, S, S, 3] normalized, frame timestamps [W, T]) by the documented rule on
  `decode`'s frames, and the model's encoder tokens [W, N, D] of them."""
  import jax.numpy as jnp
  import tensorflow as tf

  from mgvm.data import video_ops
  from mgvm.datasets.decode import decode

  d = decode(path)
  sampled = np.arange(0, len(d.frames), stride)  # floor(j * stride + 0.5) for an integer stride
  n = len(sampled)
  starts = list(range(0, n - WINDOW + 1, hop)) or [0]
  frames = np.stack([np.minimum(s + np.arange(WINDOW), n - 1) for s in starts])
  clips = d.frames[sampled[frames]]  # [W, T, H, W, 3]
  views = [
    video_ops.normalize(video_ops.to_uint8(video_ops.resize_center_crop(tf.constant(c), SIZE)))
    for c in clips
  ]
  video = jnp.asarray(np.stack([v.numpy() for v in views]))
  tokens = np.asarray(model.encoder(video))
  return d.timestamps[sampled[frames]], tokens


def test_features_equal_the_model_on_decoded_frames(setup, tmp_path, capsys, monkeypatch):
  from mgvm import features
  from mgvm.datasets import stream
  from mgvm.weights.checkpoints import load_model

  root, checkpoint = setup
  # long.mp4's packets "stop matching" its frames at frame 10, after windows were batched (as a
  # file whose packets are not its frames one to one): its partial output is dropped and it is
  # read again from a plan made by decoding; the results must not change.
  plans, plan = [], stream.plan

  def mismatching_plan(path, **kwargs):
    p = plan(path, **kwargs)
    plans.append((os.path.basename(path), p.by_pts))
    if path.endswith("long.mp4") and p.by_pts:
      p.keys = p.keys.copy()
      p.keys[10:] += 1
    return p

  monkeypatch.setattr(stream, "plan", mismatching_plan)
  out = tmp_path / "out"
  args = ["--checkpoint", checkpoint, "--videos", str(root / "videos" / "list.txt")]
  args += ["--stride", "2", "--hop", "3", "--batch-size", "8", "--no-progress"]
  index = features.main([*args, "--out", str(out)])
  err = capsys.readouterr().err
  assert "2 video(s) skipped {'missing': 1, 'unreadable': 1}" in err and "bad.mp4" in err
  on_disk = json.loads((out / "index.json").read_text())
  assert on_disk == json.loads(json.dumps(index))
  assert on_disk["skipped_by_reason"] == {"missing": 1, "unreadable": 1}
  assert sorted(os.path.basename(s["path"]) for s in on_disk["skipped_files"]) == [
    "bad.mp4",
    "gone.mp4",
  ]
  assert sorted(os.listdir(out)) == ["index.json", "long.npy", "short.npy"]
  assert plans == [("long.mp4", True), ("long.mp4", False), ("short.mp4", True)]

  model = load_model(checkpoint, log=None).model
  videos = {os.path.basename(v["path"]): v for v in on_disk["videos"]}
  for name, num_windows in (("long.mp4", 6), ("short.mp4", 1)):
    entry = videos[name]
    times, tokens = _by_hand(entry["path"], 2, 3, model)
    expected = np.asarray(model.fc_norm(tokens.mean(axis=1)))
    got = np.load(entry["output"])
    assert got.dtype == np.float32 and got.shape == (num_windows, 32) == tuple(entry["shape"])
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert [w["frame_times"] for w in entry["windows"]] == times.tolist()
    assert [(w["start_time"], w["end_time"]) for w in entry["windows"]] == [
      (t[0], t[-1]) for t in times.tolist()
    ]
    assert entry["source_fps"] == 25 and entry["sampling"]["stride"] == 2
  # the written video is constant-rate 25 fps: sampled frame j is source frame 2j at 2j / 25 s
  assert videos["long.mp4"]["windows"][1]["frame_times"] == pytest.approx([0.24, 0.32, 0.40, 0.48])
  assert [w["start"] for w in videos["long.mp4"]["windows"]] == [0, 3, 6, 9, 12, 15]
  assert videos["short.mp4"]["padded"] and videos["short.mp4"]["windows"][0]["padded"]
  assert videos["short.mp4"]["windows"][0]["frame_times"] == pytest.approx([0, 0.08, 0.16, 0.16])

  # --pool tokens: the encoder's token map [windows, T', h, w, D]
  index = features.main([*args, "--pool", "tokens", "--out", str(tmp_path / "tokens")])
  short = next(v for v in index["videos"] if v["path"].endswith("short.mp4"))
  got = np.load(short["output"])
  assert got.shape == (1, 2, 2, 2, 32)
  _, tokens = _by_hand(short["path"], 2, 3, model)
  np.testing.assert_allclose(got.reshape(1, 8, 32), tokens, atol=1e-5, rtol=0)


def test_reader_holds_at_most_one_window_of_frames(tmp_path):
  """Frames are converted only where a window uses them, and at most T converted frames are
  alive at any time (a reader that kept the video would hold all of them)."""
  from mgvm.datasets import stream

  path = video_files.write_video(tmp_path / "v.mp4", 60, 25)
  live, made = set(), []

  def convert(rgb):
    image = rgb.copy()
    key = len(made)
    made.append(video_files.index_of(rgb))
    live.add(key)
    weakref.finalize(image, live.discard, key)
    return image

  for window, hop in ((4, 1), (3, 7)):
    live.clear()
    made.clear()
    plan = stream.plan(path, stride=2)  # 30 sampled frames: source frames 0, 2, ..., 58
    windows = stream.WindowStream(plan, window, hop, convert)
    most = 0
    for w in windows:  # reference counting frees a dropped frame at once
      most = max(most, len(live))
      first = w.start * 2
      assert [video_files.index_of(f) for f in w.frames] == list(
        range(first, first + 2 * window, 2)
      )
    starts = list(range(0, 30 - window + 1, hop))
    assert [windows.starts, most, windows.max_held] == [starts, window, window]
    used = sorted({2 * (s + i) for s in starts for i in range(window)})
    assert made == used  # converted once each, only where a window uses it


def test_fps_plans_and_the_decoding_fallback(tmp_path):
  """`--fps` samples floor(j · src / fps + 0.5); planning from decoded frames (files whose
  packets do not map to frames) gives the same plan as from the packets."""
  from mgvm.datasets import stream
  from mgvm.datasets.decode import decode

  path = video_files.write_video(tmp_path / "v.mp4", 23, 25)
  plan = stream.plan(path, fps=10)
  assert plan.stride == 2.5
  assert plan.sampled.tolist() == [0, 3, 5, 8, 10, 13, 15, 18, 20]
  assert plan.sampled_times.tolist() == decode(path).timestamps[plan.sampled].tolist()
  fallback = stream.plan(path, fps=10, by_decoding=True)
  assert not fallback.by_pts
  for key in ("times", "grid", "sampled"):
    np.testing.assert_array_equal(getattr(fallback, key), getattr(plan, key))
  windows = stream.WindowStream(fallback, 4, 4)
  assert [[video_files.index_of(f) for f in w.frames] for w in windows] == [
    [0, 3, 5, 8],
    [10, 13, 15, 18],
  ]


def test_bad_inputs_fail_naming_them(tmp_path, capsys):
  from mgvm import features

  for args, message in (
    (["--videos", str(tmp_path / "no.txt")], f"--videos {tmp_path}/no.txt: no such file or folder"),
    (["--videos", str(tmp_path), "--hop", "0"], "--hop must be > 0"),
    (["--videos", str(tmp_path)], f"{tmp_path}: no video files"),
  ):
    with pytest.raises(SystemExit) as e:
      features.main(["--checkpoint", str(tmp_path), "--out", str(tmp_path / "o"), *args])
    assert e.value.code == 2
    assert f"error: {message}" in capsys.readouterr().err
