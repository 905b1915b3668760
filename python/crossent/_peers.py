"""Peer formulas: each crossent function written with NumPy, SciPy and PyTorch.

One table, read by ``crossent bench``, the scripts in ``benches/`` and the test references
(``tests/reference.py``, ``tests/registry.py``): :func:`formulas` gives, for one library, a
dict from crossent function name to a formula that computes what that crossent function
computes, on the library's own arrays (NumPy arrays for NumPy and SciPy, tensors for
PyTorch), in their dtype. A formula takes the crossent function's positional arrays and those
of its keyword parameters the library's formula supports (``reduction`` where the crossent
function has one, with the same default). The per-distribution functions work along the last
axis and normalise each row. :func:`prepare` binds a formula to NumPy arrays (converted to
the library's arrays up front, outside the call), for timing.

None of the peers' formulas calls crossent: they are the independent formulas crossent is
checked and timed against (``formulas("crossent")`` holds crossent's own functions, so that a
comparison calls all alike).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

Formula = Callable[..., Any]
Thunk = Callable[[], Any]

#: The libraries with a table, in the order the benchmark shows them.
LIBRARIES = ("numpy", "scipy", "torch")


def reduce(loss: Any, reduction: str, denominator: Any = None) -> Any:
    """``loss`` reduced as crossent's ``reduction`` says: ``"none"`` leaves it, ``"sum"``
    adds it up, ``"mean"`` divides the sum by ``denominator`` (default: the element count;
    NaN for no elements, as PyTorch)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction != "mean":
        raise ValueError(f"unknown reduction {reduction!r}")
    if denominator is None:
        return loss.sum() / loss.size if loss.size else np.float64(np.nan)
    return loss.sum() / denominator


def _weighted(loss: Any, weight: Any) -> Any:
    return loss if weight is None else loss * np.asarray(weight, dtype=loss.dtype)


# --------------------------------------------------------------------------------------------
# NumPy: the straightforward formulas, in the input's dtype
# --------------------------------------------------------------------------------------------


def _np_bce(p: Any, y: Any, *, weight: Any = None, reduction: str = "mean") -> Any:
    """PyTorch's formula: logarithms clamped at -100."""
    log_p = np.maximum(np.log(p), -100)
    log_q = np.maximum(np.log1p(-p), -100)
    return reduce(_weighted((y - 1) * log_q - y * log_p, weight), reduction)


def _log_sigmoid(x: Any) -> Any:
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def _np_bce_logits(
    x: Any, y: Any, *, weight: Any = None, pos_weight: Any = None, reduction: str = "mean"
) -> Any:
    log_weight: Any = 1
    if pos_weight is not None:
        log_weight = (np.asarray(pos_weight, dtype=x.dtype) - 1) * y + 1
    loss = (1 - y) * x - log_weight * _log_sigmoid(x)
    return reduce(_weighted(loss, weight), reduction)


def _np_norm(a: Any) -> Any:
    return a / a.sum(axis=-1, keepdims=True)


def _np_entropy(p: Any) -> Any:
    pn = _np_norm(p)
    return -np.sum(pn * np.log(pn), axis=-1)


def _np_kl(p: Any, q: Any) -> Any:
    pn, qn = _np_norm(p), _np_norm(q)
    return np.sum(pn * np.log(pn / qn), axis=-1)


def _np_cross(p: Any, q: Any) -> Any:
    """With crossent's convention 0 log 0 = 0 where ``p`` is 0."""
    pn, qn = _np_norm(p), _np_norm(q)
    return np.sum(np.where(pn == 0, 0, -pn * np.log(qn)), axis=-1)


def _np_js(p: Any, q: Any) -> Any:
    pn, qn = _np_norm(p), _np_norm(q)
    m = (pn + qn) / 2
    return (np.sum(pn * np.log(pn / m), axis=-1) + np.sum(qn * np.log(qn / m), axis=-1)) / 2


def _softmax_ce(log_softmax: Callable[[Any], Any]) -> Formula:
    """PyTorch's ``cross_entropy`` (classes along the last axis) with the log-probabilities
    that ``log_softmax`` gives: class indices (ignored rows give 0, and "mean" divides by the
    weight of the others) or class probabilities."""

    def softmax_cross_entropy(
        logits: Any,
        target: Any,
        *,
        weight: Any = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> Any:
        logp = log_softmax(logits)
        classes = logp.shape[-1]
        eps = label_smoothing
        w = np.ones(classes, logp.dtype) if weight is None else np.asarray(weight, logp.dtype)
        t = np.asarray(target)
        if t.dtype.kind == "f":
            soft = (1 - eps) * t.astype(logp.dtype) + (eps / classes if classes else 0.0)
            return reduce(-(soft * w * logp).sum(axis=-1), reduction)
        valid = t != ignore_index
        idx = np.where(valid, t, 0)
        nll = -np.take_along_axis(logp, idx[..., None], axis=-1)[..., 0] * w[idx]
        loss = (1 - eps) * nll
        if eps:
            loss = loss - eps / classes * (logp * w).sum(axis=-1)
        loss = np.where(valid, loss, 0)
        denominator = np.where(valid, w[idx], 0).sum() if reduction == "mean" else None
        return reduce(loss, reduction, denominator)

    return softmax_cross_entropy


def _np_log_softmax(x: Any) -> Any:
    """The row's maximum shifted out; a row holding +inf is NaN, as in PyTorch (inf - inf)."""
    m = np.max(x, axis=-1, keepdims=True, initial=-np.inf)
    shift = np.where(np.isfinite(m), m, 0)
    logp = x - (shift + np.log(np.exp(x - shift).sum(axis=-1, keepdims=True)))
    return np.where(np.isposinf(m), np.nan, logp)


def _np_bce_logits_grad(x: Any, y: Any) -> tuple[Any, Any]:
    """The closed forms a custom boosting objective writes: ``(sigmoid(x) - y, s (1 - s))``."""
    s = 1 / (1 + np.exp(-x))
    return s - y, s * (1 - s)


def _np_softmax_ce_grad(logits: Any, labels: Any) -> tuple[Any, Any]:
    """``(softmax - onehot, p (1 - p))`` per element (crossent's ``reduction="sum"``)."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    g = p.copy()
    np.put_along_axis(g, labels[..., None], np.take_along_axis(p, labels[..., None], -1) - 1, -1)
    return g, p * (1 - p)


def _numpy() -> dict[str, Formula]:
    return {
        "binary_cross_entropy": _np_bce,
        "binary_cross_entropy_with_logits": _np_bce_logits,
        "entropy": _np_entropy,
        "kl_divergence": _np_kl,
        "cross_entropy": _np_cross,
        "jensen_shannon": _np_js,
        "softmax_cross_entropy": _softmax_ce(_np_log_softmax),
        "binary_cross_entropy_with_logits_grad": _np_bce_logits_grad,
        "softmax_cross_entropy_grad": _np_softmax_ce_grad,
    }


# --------------------------------------------------------------------------------------------
# SciPy: its own functions where it has one
# --------------------------------------------------------------------------------------------


def _scipy() -> dict[str, Formula]:
    import scipy.spatial.distance
    import scipy.special
    import scipy.stats

    special, stats = scipy.special, scipy.stats
    jensenshannon = scipy.spatial.distance.jensenshannon

    def bce(p: Any, y: Any, *, reduction: str = "mean") -> Any:
        return reduce(-(special.xlogy(y, p) + special.xlogy(1 - y, 1 - p)), reduction)

    def bce_logits(x: Any, y: Any, *, reduction: str = "mean") -> Any:
        le = special.log_expit
        return reduce(-(y * le(x) + (1 - y) * le(-x)), reduction)

    def log_softmax(x: Any) -> Any:
        logp = x - special.logsumexp(x, axis=-1, keepdims=True)
        # PyTorch's log_softmax is NaN across a row holding +inf (inf - inf).
        return np.where(np.isposinf(x).any(axis=-1, keepdims=True), np.nan, logp)

    return {
        "binary_cross_entropy": bce,
        "binary_cross_entropy_with_logits": bce_logits,
        "entropy": lambda p: stats.entropy(p, axis=-1),
        "kl_divergence": lambda p, q: stats.entropy(p, q, axis=-1),
        "cross_entropy": lambda p, q: stats.entropy(p, axis=-1) + stats.entropy(p, q, axis=-1),
        "jensen_shannon": lambda p, q: jensenshannon(p, q, axis=-1) ** 2,
        "softmax_cross_entropy": _softmax_ce(log_softmax),
    }


# --------------------------------------------------------------------------------------------
# PyTorch (CPU): torch.nn.functional and torch.special, on tensors
# --------------------------------------------------------------------------------------------


def _torch() -> dict[str, Formula]:
    import torch

    f = torch.nn.functional

    def norm(a: Any) -> Any:
        return a / a.sum(dim=-1, keepdim=True)

    def bce(p: Any, y: Any, *, reduction: str = "mean") -> Any:
        return f.binary_cross_entropy(p, y, reduction=reduction)

    def bce_logits(x: Any, y: Any, *, reduction: str = "mean") -> Any:
        return f.binary_cross_entropy_with_logits(x, y, reduction=reduction)

    def entropy(p: Any) -> Any:
        return torch.special.entr(norm(p)).sum(dim=-1)

    def kl(p: Any, q: Any) -> Any:
        return f.kl_div(norm(q).log(), norm(p), reduction="none").sum(dim=-1)

    def cross(p: Any, q: Any) -> Any:
        return -(norm(p) * norm(q).log()).sum(dim=-1)

    def js(p: Any, q: Any) -> Any:
        pn, qn = norm(p), norm(q)
        lm = ((pn + qn) / 2).log()
        kp = f.kl_div(lm, pn, reduction="none").sum(dim=-1)
        kq = f.kl_div(lm, qn, reduction="none").sum(dim=-1)
        return (kp + kq) / 2

    def softmax_ce(logits: Any, labels: Any, *, reduction: str = "mean") -> Any:
        x = logits.reshape(-1, logits.shape[-1])
        loss = f.cross_entropy(x, labels.reshape(-1), reduction=reduction)
        return loss.reshape(logits.shape[:-1]) if reduction == "none" else loss

    def bce_logits_grad(x: Any, y: Any) -> tuple[Any, Any]:
        s = torch.sigmoid(x)
        return s - y, s * (1 - s)

    def softmax_ce_grad(logits: Any, labels: Any) -> tuple[Any, Any]:
        p = torch.softmax(logits, dim=-1)
        g = p.clone()
        g.scatter_add_(-1, labels[..., None], torch.full_like(p[..., :1], -1.0))
        return g, p * (1 - p)

    return {
        "binary_cross_entropy": bce,
        "binary_cross_entropy_with_logits": bce_logits,
        "entropy": entropy,
        "kl_divergence": kl,
        "cross_entropy": cross,
        "jensen_shannon": js,
        "softmax_cross_entropy": softmax_ce,
        "binary_cross_entropy_with_logits_grad": bce_logits_grad,
        "softmax_cross_entropy_grad": softmax_ce_grad,
    }


def _crossent() -> dict[str, Formula]:
    """crossent's own functions, so that the subject of a comparison is called as its peers
    are."""
    import crossent

    return {name: getattr(crossent, name) for name in crossent.__all__}


_TABLES: dict[str, Callable[[], dict[str, Formula]]] = {
    "crossent": _crossent,
    "numpy": _numpy,
    "scipy": _scipy,
    "torch": _torch,
}


def formulas(library: str) -> dict[str, Formula]:
    """The formulas of ``library`` (one of :data:`LIBRARIES`, or ``"crossent"`` for crossent's
    own functions), by crossent function name;
    ``ImportError`` if the library is not installed (looked up anew on each call, so that a
    library hidden from ``sys.modules`` counts as missing)."""
    return _TABLES[library]()


def installed(libraries: Iterable[str] = LIBRARIES) -> dict[str, dict[str, Formula]]:
    """The tables of those of ``libraries`` that are installed, by library."""
    tables = {}
    for library in libraries:
        with contextlib.suppress(ImportError):
            tables[library] = formulas(library)
    return tables


def _native(library: str) -> Callable[[Any], Any]:
    """How a NumPy array becomes the library's own array (without a copy)."""
    if library == "torch":
        import torch

        return lambda a: torch.from_numpy(a) if isinstance(a, np.ndarray) else a
    return lambda a: a


def prepare(
    table: dict[str, Formula], library: str, function: str, *arrays: Any, **params: Any
) -> Thunk | None:
    """A call of ``table[function]`` (``table`` from :func:`formulas` of ``library``) on
    NumPy ``arrays`` and ``params``, converted to the library's arrays up front; ``None``
    where the library has no formula for ``function``."""
    formula = table.get(function)
    if formula is None:
        return None
    native = _native(library)
    args = [native(a) for a in arrays]
    kwargs = {k: native(v) for k, v in params.items()}
    return functools.partial(formula, *args, **kwargs)
