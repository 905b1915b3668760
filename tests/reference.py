"""Independent float64 NumPy implementations of the PyTorch loss formulas, for the tests."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def bce(p: npt.ArrayLike, y: npt.ArrayLike, weight: npt.ArrayLike | None = None) -> F64:
    """Per-element ``torch.nn.functional.binary_cross_entropy`` in float64."""
    p64 = np.asarray(p, dtype=np.float64)
    y64 = np.asarray(y).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.maximum(np.log(p64), -100.0)
        log_q = np.maximum(np.log1p(-p64), -100.0)
    loss = (y64 - 1.0) * log_q - y64 * log_p
    if weight is not None:
        loss = loss * np.asarray(weight, dtype=np.float64)
    return np.asarray(loss, dtype=np.float64)


def bce_with_logits(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    weight: npt.ArrayLike | None = None,
    pos_weight: npt.ArrayLike | None = None,
) -> F64:
    """Per-element ``torch.nn.functional.binary_cross_entropy_with_logits`` in float64."""
    x64 = np.asarray(x, dtype=np.float64)
    y64 = np.asarray(y).astype(np.float64)
    log_sigmoid = np.minimum(x64, 0.0) - np.log1p(np.exp(-np.abs(x64)))
    log_weight: float | F64 = 1.0
    if pos_weight is not None:
        log_weight = (np.asarray(pos_weight, dtype=np.float64) - 1.0) * y64 + 1.0
    loss = (1.0 - y64) * x64 - log_weight * log_sigmoid
    if weight is not None:
        loss = loss * np.asarray(weight, dtype=np.float64)
    return np.asarray(loss, dtype=np.float64)


def reduce(loss: F64, reduction: str) -> float | F64:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return float(loss.sum())
    return float(loss.mean()) if loss.size else float("nan")
