"""Worker processes for the data writers (synthetic set, `prepare`)."""

from __future__ import annotations

import multiprocessing


def pool(workers: int):
  """A `multiprocessing` pool started by forkserver (spawn where there is none).

  Not "fork": the caller may already run JAX / TensorFlow threads, which a forked child
  would inherit in an unusable state.
  """
  methods = multiprocessing.get_all_start_methods()
  return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn").Pool(
    workers
  )
