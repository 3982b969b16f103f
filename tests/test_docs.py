"""The README's promises: its usage example runs as written, CI runs its test command."""

import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang):
  return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


@pytest.mark.slow
def test_readme_usage_example_runs_and_its_comments_hold():
  example = next(b for b in _blocks("python") if "masking.build" in b)
  assert len([line for line in example.splitlines() if line.strip()]) <= 12
  scope = {}
  exec(compile(example, "README.md", "exec"), scope)
  m, pred, logits = scope["m"], scope["pred"], scope["logits"]
  assert scope["mae"].grid == (4, 4, 4)
  assert m.ids_keep.shape == (2, 8) and m.ids_target.shape == (2, 56)
  assert pred.shape == (2, 56, 3 * 2 * 16 * 16)
  assert logits.shape == (2, 10)
  assert 0.1 < float(scope["loss"]) < 10


def test_quick_start_has_two_commands_and_ci_runs_the_second():
  section = README.split("## Quick start", 1)[1]
  block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1).strip().splitlines()
  assert len(block) == 2
  assert "pytest" in block[1] and "requirements-test.txt" in block[1]
  script = ROOT / ".ci" / "run"
  extracted = subprocess.run(
    ["bash", "-c", re.search(r"^cmd=\$\((.*)\)$", script.read_text(), flags=re.M).group(1)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
  ).stdout.strip()
  assert extracted == block[1]


def test_quick_start_main_job_chains_pretrain_finetune_eval_on_runlocal_configs():
  section = README.split("## Quick start", 1)[1]
  first = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1).strip().splitlines()[0]
  runs = re.findall(
    r"python (train|eval)\.py --config (configs/\w+\.py):runlocal --workdir (\S+)", first
  )
  assert [(s, c) for s, c, _ in runs] == [
    ("train", "configs/pretrain.py"),
    ("train", "configs/finetune.py"),
    ("eval", "configs/finetune.py"),
  ]
  pretrain_dir = runs[0][2]
  assert f"--config.init_from={pretrain_dir}" in first and runs[1][2] == runs[2][2]
  for _, config, _ in runs:
    text = (ROOT / config).read_text()
    assert text.lstrip('"').startswith(f"python train.py --config {config}")


def _layout(text):
  return re.search(r"## Layout\n\n.*?```\n(.*?)```", text, flags=re.S).group(1)


def test_the_layout_tree_lists_every_module_and_the_readme_shows_the_same_tree():
  tree = _layout((ROOT / "docs" / "development.md").read_text())
  assert _layout(README) == tree
  named = set(re.findall(r"[\w.]+\.py", tree))
  modules = {
    p.name
    for folder in ("mgvm", "configs", "benchmarks")
    for p in (ROOT / folder).rglob("*.py")
    if p.name != "__init__.py"
  }
  assert not modules - named, f"modules missing from the layout: {sorted(modules - named)}"
  assert not named - modules - {"train.py", "eval.py"} - {p.name for p in ROOT.glob("tests/*.py")}
  folders = {p.name for p in (ROOT / "mgvm").iterdir() if p.is_dir() and p.name != "__pycache__"}
  assert all(f"  {f}/" in tree for f in folders), folders


def test_the_readme_demo_figure_is_the_one_docs_training_reports():
  """README command 1's stated accuracy = the last measured row of docs/training.md, and its
  "× chance" is that accuracy over 1/15 (the synthetic set's 15 classes)."""
  top1, chance = re.search(r"top-1 (\d+\.\d) %, (\d+\.\d)× chance", README).groups()
  training = (ROOT / "docs" / "training.md").read_text()
  row = next(line for line in training.splitlines() if line.startswith("| **the README command**"))
  assert f"test top-1 {top1} %" in row and f"{chance}× chance" in row
  measured = [line for line in training.splitlines() if re.match(r"\| 20\d\d-\d\d-\d\d \|", line)]
  assert f"**{top1} %" in measured[-1] and f"{chance}× chance" in measured[-1]
  assert chance == f"{float(top1) / (100 / 15):.1f}"
