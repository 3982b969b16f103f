"""benchmarks/masking_study.py: seed statistics, the configs of each arm, the cached quick run."""

import json

import pytest

from benchmarks import masking_study as study
from benchmarks import study_runs
from mgvm.tasks.common import needs_motion


def test_compare_calls_a_difference_only_when_the_seed_ranges_do_not_overlap():
  assert study_runs.compare([0.30, 0.35], [0.20, 0.29]) == "ahead"
  assert study_runs.compare([0.10, 0.12], [0.20, 0.29]) == "behind"
  assert study_runs.compare([0.30, 0.35], [0.20, 0.30]) == "within the seed spread"
  s = study_runs.spread([0.2, 0.5, 0.35])
  assert s["mean"] == pytest.approx(0.35) and s["spread"] == pytest.approx(0.3)
  assert s["std"] == pytest.approx((0.045 / 3) ** 0.5) and s["runs"] == [0.2, 0.5, 0.35]


def test_a_claimed_run_is_busy_until_its_holder_lets_go(tmp_path):
  run = str(tmp_path / "runs" / "ft-tube-tube-s0-0123abcd")
  with study_runs.claim(run):
    with pytest.raises(study_runs.RunBusy, match="ft-tube-tube-s0-0123abcd"):
      with study_runs.claim(run):
        pass
  with study_runs.claim(run):  # released: the next process takes it
    assert (tmp_path / "runs" / "ft-tube-tube-s0-0123abcd" / study_runs.CLAIM_FILE).exists()


def test_each_lists_a_missing_or_busy_run_once(tmp_path):
  s = study.Study(study.parse(["--out", str(tmp_path)]))

  def missing():
    raise study.NotRun(str(tmp_path / "runs" / "pre-tube-s0-0123abcd"))

  def busy():
    raise study_runs.RunBusy(str(tmp_path / "runs" / "pre-random-s0-0123abcd"))

  assert [s.each(f) for f in (missing, missing, busy, busy)] == [None] * 4
  assert s.each(lambda: 3) == 3
  assert s.missing == ["pre-tube-s0-0123abcd"] and s.busy == ["pre-random-s0-0123abcd"]


def test_arms_differ_only_in_what_the_study_compares():
  keep = study.finetune_config(1, 600, "/x", False, compress=("mgtc", 0.25))
  base = study.finetune_config(1, 600, "/x", False, compress=("random", 0.25))
  assert (keep.masking.kind, base.masking.kind) == ("mgtc", "random_drop")
  assert keep.masking.ratio == base.masking.ratio == 0.75
  for c in (keep, base):
    c.masking = None
  assert keep.to_dict() == base.to_dict()  # same seed, steps, data, init, model
  assert (keep.seed, keep.total_steps, keep.optim.warmup_steps, keep.init_from) == (
    1,
    600,
    50,
    "/x",
  )
  fps2 = study.finetune_config(0, 600, "", False, fps_scale=2)
  fps2_random = study.finetune_config(0, 600, "", False, fps_scale=2, compress=("random", 0.5))
  assert fps2.num_frames == fps2_random.num_frames == 16
  assert (fps2.masking.kind, fps2.masking.ratio) == ("mgtc", 0.5)
  assert (fps2_random.masking.kind, fps2_random.masking.ratio) == ("random_drop", 0.5)
  everest = study.pretrain_config("everest", 2, 24_000, False)
  assert (everest.masking.kind, everest.masking.compress.kind) == ("random", "everest")
  assert everest.masking.compress.ratio == 0.5 and everest.seed == 2
  assert study.pretrain_config("mgmae_lk", 0, 100, False).masking.flow == "lk"
  codec = study.pretrain_config("mgmae_codec", 0, 100, False)
  assert codec.masking.flow == "codec" and needs_motion(codec)
  for name, kind in (("mgtc_codec", "mgtc"), ("rlt_codec", "rlt")):
    on_codec = study.finetune_config(1, 600, "/x", False, compress=(name, 0.25))
    on_pixels = study.finetune_config(1, 600, "/x", False, compress=(kind, 0.25))
    assert (on_codec.masking.motion, on_pixels.masking.motion) == ("codec", "pixels")
    assert needs_motion(on_codec) and not needs_motion(on_pixels)
    on_codec.masking.motion = "pixels"
    assert on_codec.to_dict() == on_pixels.to_dict()
  assert study.pretrain_config("tube", 0, 100, True).data.synthetic.num_train == 16


def test_bad_arguments_name_what_is_wrong(capsys):
  for argv, message in (
    (["--maskers", "tube,tub"], "unknown maskers ['tub']"),
    (["--keeps", "0.3"], "--keeps [0.3]"),
    (["--parts", "fps,speed"], "unknown parts ['speed']"),
  ):
    with pytest.raises(SystemExit):
      study.parse(["--out", "/tmp/x", *argv])
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_quick_study_caches_runs_and_a_rerun_trains_only_what_is_new(tmp_path, monkeypatch):
  from mgvm.run import train as train_run

  monkeypatch.setenv("MGVM_DATA_DIR", str(tmp_path / "data"))
  out = tmp_path / "study"
  argv = ["--out", str(out), "--quick", "--compressors", "mgtc", "--keeps", "0.5"]
  result = study.main([*argv, "--maskers", "tube,mgmae_raft", "--parts", "maskers,compressors"])
  maskers = result["maskers"]
  assert list(maskers["table"]) == ["tube"]  # no RAFT weights: reported, not run
  assert "--raft-weights" in maskers["skipped"]["mgmae_raft"]
  (tube,) = [r for r in maskers["rows"] if r["name"] == "tube"]
  assert tube["pretrain_loss"] == maskers["curves"]["tube"][0][-1][1]  # the curve's last point
  assert [s for s, _ in maskers["curves"]["tube"][0]] == [1, 2, 3, 4]
  table = result["compressors"]["table"]
  assert [(s["compressor"], s["tokens"]) for s in table] == [("random", 32), ("mgtc", 32)]
  mgtc = table[1]
  assert mgtc["delta_vs_random"]["runs"] == [mgtc["runs"][0] - table[0]["runs"][0]]
  saved = json.loads((out / "results.json").read_text())
  assert saved["compressors"]["table"] == table
  text = (out / "study.md").read_text()
  assert "| 0.5 (32) | mgtc |" in text and "| mgmae_raft | not run:" in text
  assert sorted(p.rsplit("/", 1)[1] for p in result["plots"]) == [
    "masking_study_compressors.png",
    "masking_study_maskers.png",
    "masking_study_pretrain_loss.png",
  ]

  trained = []
  real = train_run.train
  monkeypatch.setattr(
    train_run,
    "train",
    lambda c, w, log=None: trained.append(w.rsplit("/", 1)[1]) or real(c, w, log),
  )
  listed = study.main(
    [*argv, "--maskers", "scratch,tube", "--parts", "maskers,fps", "--cached-only"]
  )
  assert trained == [] and list(listed["maskers"]["table"]) == ["tube"]
  assert list(listed["fps"]["table"]) == ["fps1_all"]  # the tube fine-tuning, reused
  assert listed["fps"]["table"]["fps1_all"]["runs"] == [tube["top1"]]
  assert [name.rsplit("-", 1)[0] for name in listed["missing"]] == [
    "ft-scratch-scratch-s0",
    "ft-fps2_mgtc-tube-s0",
    "ft-fps2_random-tube-s0",
  ]
  assert "Not run yet (3; --cached-only): ft-scratch-scratch-s0-" in (out / "study.md").read_text()
  # another study process holds the two 16-frame runs: this one skips them, trains the rest
  fps2 = [out / "runs" / name for name in listed["missing"][1:]]
  with study_runs.claim(str(fps2[0])), study_runs.claim(str(fps2[1])):
    again = study.main([*argv, "--maskers", "scratch,tube", "--parts", "maskers,fps"])
  assert [name.rsplit("-", 1)[0] for name in trained] == ["ft-scratch-scratch-s0"]
  assert again["busy"] == [p.name for p in fps2] and again["missing"] == []
  assert list(again["fps"]["table"]) == ["fps1_all"]
  busy = f"another study process is training them: {fps2[0].name}, {fps2[1].name}"
  assert busy in (out / "study.md").read_text()
  assert again["maskers"]["table"]["tube"]["runs"] == maskers["table"]["tube"]["runs"]
  assert again["maskers"]["table"]["tube"]["vs_scratch"] in (
    "ahead",
    "behind",
    "within the seed spread",
  )


def test_a_pretraining_saves_checkpoints_to_resume_from_under_its_cached_name(
  tmp_path, monkeypatch
):
  """Pre-trainings checkpoint every `CHECKPOINT_EVERY` steps (a stopped study process resumes
  them), but are named by the config as given, so runs cached before still count."""
  import os

  from mgvm.run import train as train_run

  seen = {}

  def fake_train(config, workdir, log):
    seen["config"] = config
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
      f.write(json.dumps({"step": 24000, "loss": 0.5}) + "\n")

  monkeypatch.setattr(train_run, "train", fake_train)
  result = study.Study(study.parse(["--out", str(tmp_path)])).pretrain("tube", 1)
  named = study.pretrain_config("tube", 1, 24_000, False)
  assert named.checkpoint_every_steps == 24_000
  assert seen["config"].checkpoint_every_steps == study.CHECKPOINT_EVERY == 2000
  assert os.path.basename(result["workdir"]) == study_runs.run_name("pre-tube-s1", named)
  seen["config"].checkpoint_every_steps = 24_000
  assert seen["config"].to_dict() == named.to_dict() and result["loss"] == 0.5
