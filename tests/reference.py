"""Float64 references for the tests: the peer formulas of ``crossent._peers`` (PyTorch's loss
formulas written in NumPy, SciPy's divergences), called on float64 copies of the arguments
with one result per element (per distribution along the last axis)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from crossent import _peers

F64 = npt.NDArray[np.float64]


def _f64(a: npt.ArrayLike | None) -> F64 | None:
    return None if a is None else np.asarray(a).astype(np.float64)


def _peer(library: str, function: str, *arrays: Any, **params: Any) -> F64:
    with np.errstate(divide="ignore", invalid="ignore"):
        result = _peers.formulas(library)[function](*arrays, **params)
    return np.asarray(result, dtype=np.float64)


def bce(p: npt.ArrayLike, y: npt.ArrayLike, weight: npt.ArrayLike | None = None) -> F64:
    """Per-element ``torch.nn.functional.binary_cross_entropy`` in float64."""
    return _peer(
        "numpy", "binary_cross_entropy", _f64(p), _f64(y), weight=_f64(weight), reduction="none"
    )


def bce_with_logits(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    weight: npt.ArrayLike | None = None,
    pos_weight: npt.ArrayLike | None = None,
) -> F64:
    """Per-element ``torch.nn.functional.binary_cross_entropy_with_logits`` in float64."""
    return _peer(
        "numpy",
        "binary_cross_entropy_with_logits",
        _f64(x),
        _f64(y),
        weight=_f64(weight),
        pos_weight=_f64(pos_weight),
        reduction="none",
    )


def softmax_cross_entropy(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    weight: npt.ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> F64:
    """Per-row ``torch.nn.functional.cross_entropy`` (class dimension last) in float64, with
    SciPy's ``logsumexp``: class indices (0 for ignored rows) or class probabilities."""
    return _peer(
        "scipy",
        "softmax_cross_entropy",
        _f64(logits),
        np.asarray(target),
        weight=_f64(weight),
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction="none",
    )


def entropy(p: npt.ArrayLike) -> F64:
    """``scipy.stats.entropy`` of each row, in float64."""
    return _peer("scipy", "entropy", _f64(p))


def kl_divergence(p: npt.ArrayLike, q: npt.ArrayLike) -> F64:
    """``scipy.stats.entropy(p, q)`` of each pair of rows, in float64."""
    return _peer("scipy", "kl_divergence", _f64(p), _f64(q))


def cross_entropy(p: npt.ArrayLike, q: npt.ArrayLike) -> F64:
    """``-sum(p log q)`` of each pair of normalised rows (0 where ``p`` is 0), in float64."""
    return _peer("numpy", "cross_entropy", _f64(p), _f64(q))


def jensen_shannon(p: npt.ArrayLike, q: npt.ArrayLike) -> F64:
    """The square of ``scipy.spatial.distance.jensenshannon`` of each pair of rows."""
    return _peer("scipy", "jensen_shannon", _f64(p), _f64(q))


def reduce(loss: F64, reduction: str) -> float | F64:
    if reduction == "none":
        return loss
    return float(_peers.reduce(loss, reduction))
