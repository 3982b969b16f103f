"""The tree is formatted and linted as `pyproject.toml`'s [tool.ruff] says (docs/development.md)."""

import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("ruff")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _ruff(*args):
  return subprocess.run(
    [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
  )


def test_ruff_check_finds_nothing():
  proc = _ruff("check", "--no-cache", ".")
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]


def test_ruff_format_would_change_nothing():
  proc = _ruff("format", "--check", "--no-cache", ".")
  assert proc.returncode == 0, f"run `ruff format .`: {proc.stdout[-3000:]}{proc.stderr[-1000:]}"
