"""Test setup: 8 host CPU devices for sharding tests, offline hubs, GPU-only tests skipped on CPU,
the shared synthetic sets (`synthetic_dir`), XLA's fast-compile mode, one JAX compilation cache.

The environment variables are set before jax / transformers are imported by any test.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
# XLA compiles the suite's tiny models several times faster without most optimizations and runs
# them a little slower: compiling dominates nearly every test (subprocesses inherit this).
# Tests whose run time dominates opt out with @pytest.mark.xla_optimized.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")


def _run_directory(variable: str, prefix: str) -> str:
  """A directory for the whole test run, in `variable`: made by the run's first process (the
  xdist workers and the tests' subprocesses inherit the variable) and removed at its exit."""
  if variable not in os.environ:
    import atexit
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix=prefix)
    os.environ[variable] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)
  return os.environ[variable]


# Many tests (and their subprocesses) compile the same tiny programs: JAX's persistent cache serves
# the repeats. XLA keys it on the program and the compile options, so a test that turns the
# optimizations on compiles its own.
_run_directory("JAX_COMPILATION_CACHE_DIR", "mgvm-test-jax-cache-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# The synthetic sets the tests read (`synthetic_dir`): written once per run, whichever worker
# asks first (`ensure_dataset` locks a set while one process writes it).
_SYNTHETIC = _run_directory("MGVM_TEST_SYNTHETIC_DIR", "mgvm-test-synthetic-")

import pytest  # noqa: E402


def pytest_configure(config):
  """PyPI's torchvision (requirements-test.txt) is a CUDA build: beside the CPU torch its import,
  and transformers' model imports, which import it, fail until the op schemas it registers
  exist (`mgvm.flow.raft_weights.import_torchvision`)."""
  try:
    from mgvm.flow.raft_weights import import_torchvision

    import_torchvision()
  except ImportError:
    pass


def pytest_collection_modifyitems(config, items):
  import jax

  if any(d.platform == "gpu" for d in jax.devices()):
    return
  skip = pytest.mark.skip(reason="needs a GPU (jax sees none)")
  for item in items:
    if "gpu" in item.keywords:
      item.add_marker(skip)


@pytest.fixture(scope="session")
def synthetic_dir():
  """Where the shared tiny synthetic sets live (`helpers.tiny(config, synthetic_dir)`), one
  directory for every worker of the run; the first test that reads a set generates it, every
  later one reuses it."""
  import pathlib

  return pathlib.Path(_SYNTHETIC)


@pytest.fixture(autouse=True)
def _xla_optimizations(request):
  """XLA's optimizations back on for a test marked `xla_optimized` (run time dominates it)."""
  if "xla_optimized" not in request.keywords:
    yield
    return
  import jax

  before = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", False)
  yield
  jax.config.update("jax_disable_most_optimizations", before)
