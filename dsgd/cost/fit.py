"""Least-squares fits of time = a + b * bytes, and the alpha and beta they imply."""
from __future__ import annotations

import numpy as np


def fit_line(x, y) -> dict:
    """a, b of the line y = a + b x fitted by relative least squares, and each point's relative error.

    Minimises sum ((a + b x - y) / y)^2, so a 0.3 ms point counts as much as a 30 ms one (plain
    least squares would fit the largest sizes only). Needs two distinct x and every y > 0.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or len(np.unique(x)) < 2:
        raise ValueError(f"a line needs at least two distinct sizes, got {len(np.unique(x))}")
    if not np.all(y > 0):
        raise ValueError("every measured time must be > 0 for a relative fit")
    A = np.column_stack([np.ones_like(x), x]) / y[:, None]
    (a, b), *_ = np.linalg.lstsq(A, np.ones_like(y), rcond=None)
    fitted = a + b * x
    return {"a_s": float(a), "b_s_per_byte": float(b), "relative_error": ((fitted - y) / y).tolist()}


def sparse_link(line: dict) -> dict:
    """alpha, beta of one link class from a fit of gossip time against bytes a rank sends.

    Under traffic.py's rule a rank's concurrent messages pay one alpha and share beta, so the
    intercept is alpha and the slope 1 / beta.
    """
    return {"alpha_s": line["a_s"], "beta_bytes_per_s": 1.0 / line["b_s_per_byte"]}


def allreduce_link(line: dict, size: int) -> dict:
    """alpha, beta from a fit of allreduce time against the buffer's bytes M on SIZE ranks.

    The ring formula 2 (p - 1) alpha + 2 (p - 1) / p * M / beta gives a = 2 (p - 1) alpha and
    b = 2 (p - 1) / (p beta).
    """
    rounds = 2 * (size - 1)
    return {"alpha_s": line["a_s"] / rounds, "beta_bytes_per_s": rounds / (size * line["b_s_per_byte"])}
