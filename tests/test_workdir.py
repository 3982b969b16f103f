"""`mgvm.workdir`: one training run per workdir (the lock) and the recorded config of a resume."""

import json
import os
import socket
import subprocess

import pytest

from configs import finetune, pretrain
from mgvm import workdir as workdir_lib
from mgvm.run import train as train_run


def _dead_pid() -> int:
  proc = subprocess.Popen(["true"])
  proc.wait()
  return proc.pid


def test_the_lock_is_exclusive_names_its_holder_and_is_released(tmp_path):
  path = workdir_lib.lock_path(str(tmp_path))
  with workdir_lib.lock(str(tmp_path), log=None):
    holder = json.loads(open(path).read())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    with pytest.raises(workdir_lib.WorkdirLockedError, match=f"pid {os.getpid()}, since"):
      with workdir_lib.lock(str(tmp_path), log=None):
        pass
    assert os.path.exists(path)  # the failed attempt leaves the holder's lock alone
  assert not os.path.exists(path)
  with pytest.raises(KeyError):  # released on an exception too
    with workdir_lib.lock(str(tmp_path), log=None):
      raise KeyError("crash")
  assert not os.path.exists(path)


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
  path = workdir_lib.lock_path(str(tmp_path))
  gone = {"host": socket.gethostname(), "pid": _dead_pid(), "started": "earlier"}
  with open(path, "w") as f:
    json.dump(gone, f)
  messages = []
  with workdir_lib.lock(str(tmp_path), log=messages.append):
    assert json.loads(open(path).read())["pid"] == os.getpid()
  assert "stale lock" in messages[0] and str(gone["pid"]) in messages[0]
  open(path, "w").close()  # empty: another run is still writing it (younger than 10 s)
  with pytest.raises(workdir_lib.WorkdirLockedError, match="writing its lock file now"):
    with workdir_lib.lock(str(tmp_path), log=None):
      pass
  os.utime(path, (0, 0))  # an empty lock from long ago is stale
  with workdir_lib.lock(str(tmp_path), log=None):
    pass
  other_host = dict(gone, host="elsewhere")  # cannot tell whether it is alive: refused
  with open(path, "w") as f:
    json.dump(other_host, f)
  with pytest.raises(workdir_lib.WorkdirLockedError, match="host elsewhere"):
    with workdir_lib.lock(str(tmp_path), log=None):
      pass


def test_train_refuses_a_workdir_another_live_run_holds(tmp_path):
  holder = {"host": socket.gethostname(), "pid": os.getppid(), "started": "now"}
  (tmp_path / workdir_lib.LOCK_FILE).write_text(json.dumps(holder))
  with pytest.raises(workdir_lib.WorkdirLockedError, match=f"pid {os.getppid()}"):
    train_run.train(pretrain.get_config("runlocal"), str(tmp_path), log=lambda _: None)
  assert sorted(os.listdir(tmp_path)) == [workdir_lib.LOCK_FILE]  # nothing else was written


def test_config_changes_name_each_field_that_would_change_the_run():
  recorded = pretrain.get_config("runlocal").to_dict()
  now = pretrain.get_config("runlocal")
  now.optim.base_lr = 1.0
  now.model.dim = 48
  now.total_steps += 100  # may grow
  now.log_every_steps, now.eval.batch_size, now.init_from = 1, 2, "/elsewhere"  # harmless
  assert workdir_lib.config_changes(recorded, now.to_dict()) == [
    f"model.dim: {recorded['model']['dim']!r} -> 48",
    f"optim.base_lr: {recorded['optim']['base_lr']!r} -> 1.0",
  ]
  now = pretrain.get_config("runlocal")
  now.total_steps -= 1
  assert workdir_lib.config_changes(recorded, now.to_dict()) == [
    f"total_steps: {recorded['total_steps']} -> {recorded['total_steps'] - 1}"
  ]
  other = finetune.get_config("runlocal").to_dict()
  assert "task: 'pretrain' -> 'finetune'" in workdir_lib.config_changes(recorded, other)


def test_record_config_refuses_a_changed_resume_unless_allowed(tmp_path):
  workdir = str(tmp_path)
  config = pretrain.get_config("runlocal")
  workdir_lib.record_config(workdir, config, resuming=False, log=None)
  assert json.loads(open(workdir_lib.config_path(workdir)).read()) == json.loads(
    json.dumps(config.to_dict())
  )
  config.seed = 7
  with pytest.raises(workdir_lib.ConfigChangedError, match="seed: 0 -> 7") as e:
    workdir_lib.record_config(workdir, config, resuming=True, log=None)
  assert "allow_config_change=True" in str(e.value)
  config.allow_config_change = True
  messages = []
  workdir_lib.record_config(workdir, config, resuming=True, log=messages.append)
  assert "seed: 0 -> 7" in messages[0]
  assert json.loads(open(workdir_lib.config_path(workdir)).read())["seed"] == 7  # now recorded


def test_reading_params_of_a_mistyped_workdir_creates_nothing(tmp_path):
  missing = tmp_path / "typo"
  with pytest.raises(FileNotFoundError, match="no train.py run wrote to .*typo"):
    workdir_lib.latest_params(str(missing))
  assert not missing.exists()
  missing.mkdir()
  with pytest.raises(FileNotFoundError, match="No checkpoint found"):
    workdir_lib.latest_params(str(missing))
  assert list(missing.iterdir()) == []


def test_eval_names_carry_what_differs_from_the_recorded_run(tmp_path):
  workdir = str(tmp_path)
  config = finetune.get_config("runlocal")
  assert workdir_lib.eval_settings(workdir, config) == {}  # nothing recorded: nothing differs
  workdir_lib.record_config(workdir, config, resuming=False, log=None)
  config.eval.batch_size = 3  # batching does not change a result
  config.optim.base_lr = 1.0  # nor does an optimizer setting
  assert workdir_lib.eval_settings(workdir, config) == {}
  assert workdir_lib.eval_name("test", {}) == "test"
  config.masking = finetune.common.compressor("mgtc", 0.4)
  config.data.target_fps = (4.0, 8.0)
  settings = workdir_lib.eval_settings(workdir, config)
  assert settings == {
    "data.target_fps": [4.0, 8.0],
    "masking.compensate_camera": "",
    "masking.first": "keep",
    "masking.kind": "mgtc",
    "masking.metric": "l1",
    "masking.motion": "pixels",
    "masking.ratio": 0.4,
    "masking.sub_blocks": 1,
  }  # runlocal fine-tunes on all tokens: every compressor key is new
  name = workdir_lib.eval_name("test", {"masking.ratio": 0.4, "data.target_fps": [4.0, 8.0]})
  assert name == "test.masking.ratio=0.4,data.target_fps=[4.0,8.0]"
  long = workdir_lib.eval_name("test", settings, checkpoint="/w/vit_b_k400.pth")
  assert long.startswith("test.settings-") and len(long) == len("test.settings-") + 8
  assert workdir_lib.eval_name("val", {}, checkpoint="/w/vit_b.pth") == "val.ckpt=vit_b.pth"
  assert workdir_lib.eval_name("val", settings, tag="keep0.6") == "val.keep0.6"
  with pytest.raises(ValueError, match="--tag='a/b'"):
    workdir_lib.eval_name("val", {}, tag="a/b")
