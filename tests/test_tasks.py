"""`mgvm.tasks`: one module per task, found by name; a new task is one new module."""

import pathlib

import pytest
from flax import nnx

from configs import detect, finetune, pretrain
from mgvm import models, tasks
from mgvm.models.evad import EVAD

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_three_tasks_and_what_each_builds():
  assert tasks.names() == ["detect", "finetune", "pretrain"]
  built = {
    name: nnx.eval_shape(lambda get=get: tasks.build_model(get("runlocal"), num_classes=3))
    for name, get in (
      ("pretrain", pretrain.get_config),
      ("finetune", finetune.get_config),
      ("detect", detect.get_config),
    )
  }
  assert type(built["pretrain"]) is models.VideoMAE
  assert type(built["finetune"]) is models.VideoClassifier and built["finetune"].num_classes == 3
  assert type(built["detect"]) is EVAD
  assert tasks.get("finetune").PLOT_KEYS == ("loss", "accuracy")


def test_an_unknown_task_fails_naming_the_known_ones():
  with pytest.raises(
    ValueError, match=r"one of \['detect', 'finetune', 'pretrain'\], got 'pretrian'"
  ):
    tasks.get("pretrian")
  with pytest.raises(ValueError, match="needs num_classes"):
    tasks.build_model(finetune.get_config("runlocal"))


def test_a_new_task_is_one_new_module(tmp_path, monkeypatch):
  """A module with the required names in the package's path is a task; one without them fails."""
  body = "\n".join(f"{name} = None" for name in tasks.REQUIRED)
  (tmp_path / "toy.py").write_text(body + "\n")
  (tmp_path / "broken.py").write_text(body.replace("summary = None\n", "") + "\n")
  monkeypatch.setattr(tasks, "__path__", [*tasks.__path__, str(tmp_path)])
  assert tasks.names() == ["broken", "detect", "finetune", "pretrain", "toy"]
  assert tasks.get("toy").__name__ == "mgvm.tasks.toy"
  with pytest.raises(TypeError, match=r"mgvm.tasks.broken lacks \['summary'\]"):
    tasks.get("broken")


def test_the_runners_and_viz_never_branch_on_the_task():
  for path in ("mgvm/run/train.py", "mgvm/run/evaluate.py", "mgvm/viz.py"):
    text = (ROOT / path).read_text()
    assert "config.task ==" not in text and "config.task !=" not in text, path


def test_a_classifier_needs_two_classes_and_top5_is_shown_only_when_measured():
  from mgvm.data.sources import Source

  config = finetune.get_config("runlocal")
  with pytest.raises(ValueError, match="at least 2 classes, got num_classes=1"):
    tasks.get("finetune").num_classes(config, Source("/data", {}, ("only",)))
  assert tasks.get("finetune").num_classes(config, Source("/data", {}, ("a", "b"))) == 2
  result = dict(top1=0.5, chance=0.5, num_videos=4, split="val", views="1 clips x 1 crops")
  summary = tasks.get("finetune").summary
  assert summary(result) == "top-1 0.500 on 4 val videos, 1 clips x 1 crops: 1.0x chance (0.500)"
  assert "(top-5 0.750)" in summary(dict(result, top5=0.75))
