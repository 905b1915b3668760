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


def softmax_cross_entropy(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    weight: npt.ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> F64:
    """Per-row ``torch.nn.functional.cross_entropy`` (class dimension last) in float64:
    class indices (0 for ignored rows) or class probabilities."""
    import scipy.special

    x = np.asarray(logits, dtype=np.float64)
    classes = x.shape[-1]
    eps = label_smoothing
    w = np.ones(classes) if weight is None else np.asarray(weight, np.float64)
    with np.errstate(invalid="ignore"):
        logp = x - scipy.special.logsumexp(x, axis=-1, keepdims=True)
    # PyTorch's log_softmax is NaN across a row holding +inf (inf - inf).
    logp = np.where(np.isposinf(x).any(axis=-1, keepdims=True), np.nan, logp)
    t = np.asarray(target)
    if t.dtype.kind == "f":
        soft = (1 - eps) * t.astype(np.float64) + (eps / classes if classes else 0.0)
        return np.asarray(-(soft * w * logp).sum(axis=-1))
    valid = t != ignore_index
    idx = np.where(valid, t, 0)
    nll = -np.take_along_axis(logp, idx[..., None], axis=-1)[..., 0] * w[idx]
    loss = (1 - eps) * nll
    if eps:
        loss = loss - eps / classes * (logp * w).sum(axis=-1)
    return np.asarray(np.where(valid, loss, 0.0))


def reduce(loss: F64, reduction: str) -> float | F64:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return float(loss.sum())
    return float(loss.mean()) if loss.size else float("nan")
