"""Test setup: 8 host CPU devices for sharding tests, offline hubs, GPU-only tests skipped on CPU.

The environment variables are set before jax / transformers are imported by any test.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
  import jax
  if any(d.platform == "gpu" for d in jax.devices()):
    return
  skip = pytest.mark.skip(reason="needs a GPU (jax sees none)")
  for item in items:
    if "gpu" in item.keywords:
      item.add_marker(skip)
