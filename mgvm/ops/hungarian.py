"""Hungarian matching in JAX: static shapes, `lax` loops, jit- and vmap-able (no host callback).

`linear_sum_assignment` is the O(n²m) shortest-augmenting-path algorithm with potentials
(Jonker–Volgenant; the e-maxx formulation): rows are added one at a time, each by a Dijkstra
search over reduced costs vectorised over the columns, then the path is augmented. For cost
matrices without ties it returns exactly what `scipy.optimize.linear_sum_assignment` returns.
Costs must be finite (no NaN / inf checks under jit). Float32 inputs are solved in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.jit
def _solve(cost: jax.Array) -> jax.Array:
  """cost [n, m] float, n <= m → col_for_row [n] int32 (minimum total cost)."""
  n, m = cost.shape
  dtype = cost.dtype
  a = jnp.zeros((n + 1, m + 1), dtype).at[1:, 1:].set(cost)  # 1-based; column 0 is virtual
  inf = jnp.asarray(jnp.inf, dtype)
  cols = jnp.arange(m + 1, dtype=jnp.int32)

  def add_row(i, state):
    u, v, p, way = state
    p = p.at[0].set(i)

    def searching(s):
      return p[s[-1]] != 0

    def dijkstra_step(s):
      used, minv, way, u, v, j0 = s
      used = used.at[j0].set(True)
      i0 = p[j0]
      cur = a[i0] - u[i0] - v
      better = ~used & (cur < minv)
      minv = jnp.where(better, cur, minv)
      way = jnp.where(better, j0, way)
      free = jnp.where(used, inf, minv)
      j1 = jnp.argmin(free).astype(jnp.int32)
      delta = free[j1]
      u = u.at[jnp.where(used, p, n + 1)].add(delta, mode="drop")
      v = jnp.where(used, v - delta, v)
      minv = jnp.where(used, minv, minv - delta)
      return used, minv, way, u, v, j1

    init = (jnp.zeros(m + 1, bool), jnp.full(m + 1, inf), way, u, v, jnp.int32(0))
    _, _, way, u, v, j0 = jax.lax.while_loop(searching, dijkstra_step, init)

    def augment(s):
      p, j0 = s
      j1 = way[j0]
      return p.at[j0].set(p[j1]), j1

    p, _ = jax.lax.while_loop(lambda s: s[1] != 0, augment, (p, j0))
    return u, v, p, way

  state = (
    jnp.zeros(n + 1, dtype),
    jnp.zeros(m + 1, dtype),
    jnp.zeros(m + 1, jnp.int32),
    jnp.zeros(m + 1, jnp.int32),
  )
  _, _, p, _ = jax.lax.fori_loop(1, n + 1, add_row, state)
  row = jnp.where(p[1:] > 0, p[1:] - 1, n)  # row of each real column, n = unassigned
  return jnp.zeros(n, jnp.int32).at[row].set(cols[:-1], mode="drop")


def linear_sum_assignment(cost: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Minimum-cost assignment of cost [N, M] → (row_ind, col_ind), each [min(N, M)] int32.

  As scipy: rows ascending (all rows when N <= M; N > M is solved on the transpose).
  """
  cost = jnp.asarray(cost)
  if cost.ndim != 2:
    raise ValueError(f"cost must be a [N, M] matrix, got shape {cost.shape}")
  cost = cost.astype(jnp.result_type(cost.dtype, jnp.float32))
  n, m = cost.shape
  if min(n, m) == 0:
    empty = jnp.zeros((0,), jnp.int32)
    return empty, empty
  if n <= m:
    return jnp.arange(n, dtype=jnp.int32), _solve(cost)
  row_for_col = _solve(cost.T)
  order = jnp.argsort(row_for_col).astype(jnp.int32)
  return row_for_col[order], order


def match(cost: jax.Array, gt_valid: jax.Array) -> jax.Array:
  """Set-prediction matching with padded ground truth: cost [G, P], gt_valid [G] → [G] int32.

  Returns the proposal matched to each ground-truth row, −1 for padding rows. Padding rows get
  a constant (zero) cost row, which adds the same amount to every complete assignment, so the
  valid rows' optimum is that of the valid sub-matrix (needs G <= P).
  """
  cost, gt_valid = jnp.asarray(cost), jnp.asarray(gt_valid)
  if cost.ndim != 2 or cost.shape[0] > cost.shape[1]:
    raise ValueError(
      f"cost must be [G, P] with G (padded ground truth) <= P (proposals), got shape {cost.shape}"
    )
  if gt_valid.shape != cost.shape[:1]:
    raise ValueError(f"gt_valid must be [G] = {cost.shape[:1]}, got shape {gt_valid.shape}")
  valid = gt_valid.astype(bool)
  cost = jnp.where(valid[:, None], cost, jnp.zeros((), cost.dtype))
  _, col = linear_sum_assignment(cost)
  return jnp.where(valid, col, -1).astype(jnp.int32)
