"""mgvm.ops.hungarian: equal to scipy's linear_sum_assignment (jit, vmap, rectangular both
ways), padded matching, one trace per shape."""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_lsa

from mgvm import ops

lsa = jax.jit(ops.linear_sum_assignment)
match = jax.jit(ops.match)


# Few shapes (one compile each), many matrices: square, wide, tall, single row / column.
SHAPES = [(1, 1), (1, 7), (7, 1), (3, 12), (12, 3), (5, 9), (9, 5), (12, 12), (11, 10), (2, 2)]


def test_equals_scipy_on_random_matrices():
  rng = np.random.default_rng(1)
  checked = 0
  for n, m in SHAPES:
    for _ in range(6):
      cost = rng.normal(0, 1, (n, m)).astype(np.float32) * rng.choice([1.0, 100.0])
      rows, cols = lsa(cost)
      want_rows, want_cols = scipy_lsa(cost)
      assert rows.shape == cols.shape == (min(n, m),) and rows.dtype == np.int32
      np.testing.assert_array_equal(rows, want_rows, err_msg=f"{n}x{m}")
      np.testing.assert_array_equal(cols, want_cols, err_msg=f"{n}x{m}")
      checked += 1
  assert checked >= 50


@pytest.mark.parametrize("shape", [(6, 10), (10, 6)])
def test_vmap_over_a_batch(shape):
  costs = np.random.default_rng(2).uniform(0, 1, (16, *shape)).astype(np.float32)
  rows, cols = jax.jit(jax.vmap(ops.linear_sum_assignment))(costs)
  for r, c, cost in zip(rows, cols, costs):
    want_r, want_c = scipy_lsa(cost)
    np.testing.assert_array_equal(r, want_r)
    np.testing.assert_array_equal(c, want_c)


def test_one_trace_per_shape_and_integer_costs():
  solve = jax.jit(chex.assert_max_traces(ops.linear_sum_assignment, n=2))
  rng = np.random.default_rng(3)
  for _ in range(4):
    for shape in [(4, 6), (6, 4)]:
      cost = rng.permutation(24).reshape(shape).astype(np.float32)  # distinct values: no ties
      np.testing.assert_array_equal(np.stack(solve(cost)), np.stack(scipy_lsa(cost)))
  ints = rng.permutation(30).reshape(5, 6)
  np.testing.assert_array_equal(np.stack(lsa(ints)), np.stack(scipy_lsa(ints)))
  empty_rows, empty_cols = ops.linear_sum_assignment(np.zeros((0, 3), np.float32))
  assert empty_rows.shape == empty_cols.shape == (0,)
  with pytest.raises(ValueError, match=r"\[N, M\]"):
    ops.linear_sum_assignment(np.zeros(3))


def test_match_with_padded_ground_truth():
  rng = np.random.default_rng(4)
  n_gt, n_prop = 20, 100
  batched = jax.jit(jax.vmap(ops.match))
  costs = rng.normal(0, 1, (4, n_gt, n_prop)).astype(np.float32)
  valid = np.arange(n_gt)[None] < np.array([0, 3, 20, 0])[:, None]
  valid[3] = rng.random(n_gt) < 0.6  # valid rows need not come first
  costs[~valid] = np.nan  # padded rows may hold anything (e.g. GIoU of empty boxes)
  cols = np.asarray(batched(costs, valid))
  assert cols.shape == (4, n_gt) and cols.dtype == np.int32
  for c, cost, v in zip(cols, costs, valid):
    assert np.all(c[~v] == -1)
    if v.any():
      want_rows, want_cols = scipy_lsa(cost[v])
      np.testing.assert_array_equal(want_rows, np.arange(v.sum()))
      np.testing.assert_array_equal(c[v], want_cols)
  one = match(costs[2], valid[2])
  np.testing.assert_array_equal(one, cols[2])
  with pytest.raises(ValueError, match="G .* <= P"):
    ops.match(np.zeros((5, 3)), np.ones(5, bool))
  with pytest.raises(ValueError, match="gt_valid"):
    ops.match(np.zeros((3, 5)), np.ones(4, bool))
