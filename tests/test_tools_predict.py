"""python -m mgvm.predict: multi-view probabilities equal to eval.py's rule computed by hand, class
names, and clear errors for a wrong label file, a pre-training checkpoint, unreadable videos."""

import json

import numpy as np
import pytest

from tests import video_files

SIZE, FRAMES = 32, 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """Tiny classifier and pre-training checkpoints (Hugging Face folders), a video, a bad file."""
  from flax import nnx

  from mgvm import models
  from mgvm.weights.hf_export import save_hf

  root = tmp_path_factory.mktemp("predict")
  tiny = dict(dim=32, depth=1, num_heads=2, num_frames=FRAMES, image_size=SIZE, rngs=nnx.Rngs(0))
  clf = models.VideoClassifier(None, num_classes=3, head_init_scale=30.0, **tiny)
  mae = models.VideoMAE(None, decoder_dim=32, decoder_depth=1, decoder_heads=2, **tiny)
  video = video_files.write_video(root / "v.mp4", 30, 25)  # 64 x 128: crops along the width
  (root / "bad.avi").write_bytes(b"\x00garbage" * 100)
  return {
    "clf": save_hf(clf, str(root / "clf"), class_names=("a", "bb", "ccc")),
    "mae": save_hf(mae, str(root / "mae")),
    "video": video,
    "bad": str(root / "bad.avi"),
    "root": root,
  }


def _by_hand(path, model, stride, clips, crops):
  """float [classes]: softmax per view averaged over clips x crops, from `decode`'s frames."""
  import jax
  import jax.numpy as jnp
  import tensorflow as tf

  from mgvm.data import sampling, video_ops
  from mgvm.datasets.decode import decode

  frames = decode(path).frames
  indices = sampling.eval_indices_np(len(frames), stride, FRAMES, clips)
  views = []
  for clip in indices:
    for view in video_ops.spatial_crops(tf.constant(frames[clip]), SIZE, crops):
      views.append(video_ops.normalize(video_ops.to_uint8(view)).numpy())
  logits, _ = model(jnp.asarray(np.stack(views)))
  return np.asarray(jax.nn.softmax(logits, axis=-1)).mean(axis=0)


def test_probabilities_equal_the_multi_view_rule(setup, capsys):
  from mgvm import predict
  from mgvm.weights.checkpoints import load_model

  args = [setup["video"], setup["bad"], "--checkpoint", setup["clf"], "--no-progress"]
  args += ["--stride", "2", "--clips", "2", "--crops", "3", "--batch-size", "8"]
  printed = []
  predict.main([*args, "--json"], out=printed.append)
  report = json.loads(printed[0])
  err = capsys.readouterr().err
  assert "1 video(s) skipped {'unreadable': 1}" in err and "bad.avi: unreadable" in err
  assert report["skipped_by_reason"] == {"unreadable": 1}
  [video] = report["videos"]
  assert video["path"] == setup["video"] and video["views"] == 6
  expected = _by_hand(setup["video"], load_model(setup["clf"], log=None).model, 2, 2, 3)
  assert expected.max() > 0.5  # the scaled-up head makes the classes tell apart
  top = video["top_k"]
  assert [t["class"] for t in top] == np.argsort(-expected, kind="stable").tolist()
  assert [t["label"] for t in top] == [("a", "bb", "ccc")[t["class"]] for t in top]
  np.testing.assert_allclose(
    [t["probability"] for t in top], expected[[t["class"] for t in top]], atol=1e-5
  )

  # --labels FILE and --top-k, as text lines
  labels = setup["root"] / "labels.txt"
  labels.write_text("x\ny\nz\n")
  printed.clear()
  predict.main([*args, "--labels", str(labels), "--top-k", "2"], out=printed.append)
  best = top[:2]
  assert printed == [setup["video"]] + [
    f"  {'xyz'[t['class']]}  {t['probability']:.4f}" for t in best
  ]


def test_errors_name_the_problem(setup, capsys):
  from mgvm import predict

  labels = setup["root"] / "two.txt"
  labels.write_text("x\ny\n")
  cases = (
    (
      ["--checkpoint", setup["clf"], "--labels", str(labels)],
      f"--labels {labels}: 2 class names, but the checkpoint's head has 3 classes",
    ),
    (
      ["--checkpoint", setup["mae"]],
      f"--checkpoint {setup['mae']} is a pre-training (VideoMAE) checkpoint; predict needs a classifier",
    ),
    (["--checkpoint", setup["clf"]], "no video could be read (1 skipped)"),
  )
  for args, message in cases:
    with pytest.raises(SystemExit) as e:
      predict.main([setup["bad"], "--no-progress", *args], out=lambda line: None)
    assert e.value.code == 2
    assert f"error: {message}" in capsys.readouterr().err
