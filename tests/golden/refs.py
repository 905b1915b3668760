"""The references of the golden files: PyTorch, SciPy and mpmath on a case's arrays.

Used by make_golden.py (to write the files) and by tests/test_golden.py (to compare with live
PyTorch where it is installed). Each reference returns named float64-or-native arrays: "value"
for a loss, "grad" and "hess" for a gradient (the Hessian's diagonal).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from golden.cases import POSITIONAL, Call

Arrays = dict[str, np.ndarray]


def input_dtype(call: Call, arrays: Arrays) -> Any:
    return arrays[POSITIONAL[call.func][0]].dtype


def _read(a: np.ndarray, dtype: Any) -> np.ndarray:
    """A float argument as crossent reads it: rounded to the input's precision."""
    return a.astype(dtype) if a.dtype.kind == "f" else a


def torch_outputs(call: Call, arrays: Arrays, upcast: bool = False) -> Arrays:
    """PyTorch's result in the input's dtype (float64 with `upcast`, on the same values)."""
    import torch

    F = torch.nn.functional
    in_dtype = input_dtype(call, arrays)
    compute = np.float64 if upcast else in_dtype

    def t(name: str) -> Any:
        if name not in arrays:
            return None
        a = arrays[name]
        # (np.ascontiguousarray would make a 0-d array 1-d.)
        return torch.from_numpy(np.array(_read(a, in_dtype).astype(compute), order="C"))

    params = call.params
    if call.ref == "torch-kl_div":
        p, q = t("p"), t("q")
        return {"value": F.kl_div(torch.log(q), p, reduction="none").sum(-1).numpy()}
    if call.func.startswith("binary_cross_entropy"):
        x = t("input").requires_grad_(call.func.endswith("_grad"))
        kw: dict[str, Any] = {"weight": t("weight")}
        if "with_logits" in call.func:
            kw["pos_weight"] = t("pos_weight")
            fn = F.binary_cross_entropy_with_logits
        else:
            fn = F.binary_cross_entropy
        loss = fn(x, t("target"), reduction=params["reduction"], **kw)
        if not call.func.endswith("_grad"):
            return {"value": loss.detach().numpy()}
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        # Every element's loss depends on its own logit only: the Hessian is diagonal, and
        # its diagonal is the gradient of the summed gradient.
        (h,) = torch.autograd.grad(g.sum(), x)
        return {"grad": g.detach().numpy(), "hess": h.numpy()}
    # Softmax cross-entropy: torch wants the classes in dimension 1 (0 for one row).
    logits = arrays["logits"]
    target = arrays["target"]
    axis = params.get("axis", -1) % logits.ndim
    cls = min(1, logits.ndim - 1)
    x = torch.from_numpy(np.moveaxis(logits.astype(compute), axis, cls).copy())
    kw = {"weight": t("weight"), "label_smoothing": params.get("label_smoothing", 0.0)}
    if target.dtype.kind == "f":
        y = torch.from_numpy(np.moveaxis(_read(target, in_dtype).astype(compute), axis, cls).copy())
    else:
        y = torch.from_numpy(target.astype(np.int64))
        kw["ignore_index"] = params.get("ignore_index", -100)

    def loss_of(v: Any) -> Any:
        return F.cross_entropy(v, y, reduction=params["reduction"], **kw)

    if not call.func.endswith("_grad"):
        return {"value": loss_of(x).numpy()}
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss_of(xr), xr)
    with warnings.catch_warnings():
        # (torch.func may touch torch.jit, which warns of its own deprecation.)
        warnings.simplefilter("ignore", FutureWarning)
        full = torch.func.hessian(loss_of)(x)
    n = x.numel()
    h = torch.diagonal(full.reshape(n, n)).reshape(x.shape)
    return {
        "grad": np.moveaxis(g.numpy(), cls, axis),
        "hess": np.moveaxis(h.numpy(), cls, axis),
    }


def scipy_outputs(call: Call, arrays: Arrays) -> Arrays:
    """SciPy's definition, in float64, of what crossent's divergence functions compute."""
    import scipy.special
    import scipy.stats
    from scipy.spatial.distance import jensenshannon

    name = call.func
    axis = call.params.get("axis", -1)
    base = call.params.get("base")
    normalize = call.params.get("normalize", True)
    p = arrays["p"].astype(np.float64)
    q = arrays["q"].astype(np.float64) if "q" in arrays else None
    if axis is None:
        p = p.ravel()
        q = None if q is None else q.ravel()
        axis = 0
    log_base = math.log(base) if base is not None else 1.0
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if not normalize:
            if name == "entropy":
                r = scipy.special.entr(p).sum(axis=axis)
            elif name == "kl_divergence":
                r = scipy.special.rel_entr(p, q).sum(axis=axis)
            elif name == "cross_entropy":
                assert q is not None
                r = np.where(p == 0, 0.0, -p * np.log(q)).sum(axis=axis)
            else:
                assert q is not None
                m = (p + q) / 2
                r = (scipy.special.rel_entr(p, m) + scipy.special.rel_entr(q, m)).sum(axis=axis) / 2
            return {"value": np.asarray(r / log_base, dtype=np.float64)}
        if name == "entropy":
            r = scipy.stats.entropy(p, base=base, axis=axis)
        elif name == "kl_divergence":
            r = scipy.stats.entropy(p, q, base=base, axis=axis)
        elif name == "cross_entropy":
            # H(p, q) = H(p) + KL(p || q), both SciPy's.
            r = scipy.stats.entropy(p, base=base, axis=axis) + scipy.stats.entropy(
                p, q, base=base, axis=axis
            )
        else:
            r = jensenshannon(p, q, base=base, axis=axis) ** 2
    return {"value": np.asarray(r, dtype=np.float64)}


# --- mpmath: the exact result of the inputs as crossent reads them ---------------------------


def exact_outputs(call: Call, arrays: Arrays) -> Arrays:
    """The exact loss (or gradient) of the given floating-point inputs, rounded once to
    float64; computed with 60 significant digits."""
    import mpmath

    mp = mpmath.mp
    mp.dps = 60
    in_dtype = input_dtype(call, arrays)
    params = call.params
    reduction = params["reduction"]

    def mpf_array(name: str, shape: tuple[int, ...]) -> np.ndarray:
        a = np.broadcast_to(_read(arrays[name], in_dtype).astype(np.float64), shape)
        return np.asarray(np.vectorize(mp.mpf, otypes=[object])(a), dtype=object)

    def reduce(per: np.ndarray, denominator: Any) -> np.ndarray:
        if reduction == "none":
            return np.asarray(np.vectorize(float, otypes=[np.float64])(per), dtype=np.float64)
        total = mp.fsum(per.ravel())
        return np.asarray(float(total / denominator if reduction == "mean" else total))

    if call.func == "binary_cross_entropy_with_logits":
        shape = arrays["input"].shape
        x, y = mpf_array("input", shape), mpf_array("target", shape)
        w = mpf_array("weight", shape) if "weight" in arrays else np.full(shape, mp.mpf(1))
        c = mpf_array("pos_weight", shape) if "pos_weight" in arrays else np.full(shape, mp.mpf(1))
        per = np.empty(shape, dtype=object)
        for i in np.ndindex(shape):
            lw = 1 + (c[i] - 1) * y[i]
            per[i] = w[i] * ((1 - y[i]) * x[i] + lw * mp.log1p(mp.exp(-x[i])))
        return {"value": reduce(per, max(per.size, 1))}
    assert call.func.startswith("softmax_cross_entropy"), call.func
    axis = params.get("axis", -1)
    logits = np.moveaxis(arrays["logits"].astype(np.float64), axis, -1)
    classes = logits.shape[-1]
    rows = logits.shape[:-1]
    eps = mp.mpf(params.get("label_smoothing", 0.0))
    cw = (
        [mp.mpf(float(v)) for v in _read(arrays["weight"], in_dtype)]
        if "weight" in arrays
        else [mp.mpf(1)] * classes
    )
    target = arrays["target"]
    soft = target.dtype.kind == "f"
    if soft:
        t = np.moveaxis(_read(target, in_dtype).astype(np.float64), axis, -1)
    ignore = params.get("ignore_index", -100)
    loss = np.empty(rows, dtype=object)
    grad = np.empty(logits.shape, dtype=object)
    hess = np.empty(logits.shape, dtype=object)
    denominator = mp.mpf(0)
    for r in np.ndindex(rows):
        xr = [mp.mpf(float(v)) for v in logits[r]]
        top = max(xr)
        # x - max exactly (a difference of two doubles can need more than 60 digits).
        shifted = [mp.fsub(v, top, exact=True) for v in xr]
        log_sum = mp.log(mp.fsum(mp.exp(v) for v in shifted))
        nll = [log_sum - v for v in shifted]  # -log p, exactly lse - x
        prob = [mp.exp(-v) for v in nll]
        if soft:
            s = [(1 - eps) * mp.mpf(float(v)) + eps / classes for v in t[r]]
            sw = [s[j] * cw[j] for j in range(classes)]
            denominator += 1
        else:
            label = int(target[r])
            if label == ignore:
                loss[r] = mp.mpf(0)
                for j in range(classes):
                    grad[(*r, j)] = hess[(*r, j)] = mp.mpf(0)
                continue
            sw = [eps / classes * cw[j] for j in range(classes)]
            sw[label] += (1 - eps) * cw[label]
            denominator += cw[label]
        total = mp.fsum(sw)
        loss[r] = mp.fsum(sw[j] * nll[j] for j in range(classes))
        for j in range(classes):
            grad[(*r, j)] = total * prob[j] - sw[j]
            hess[(*r, j)] = total * prob[j] * (1 - prob[j])
    if reduction == "mean" and denominator == 0:
        # Nothing to average (no rows, or every row ignored): NaN, as PyTorch.
        nan = np.full(logits.shape, math.nan)
        if call.func.endswith("_grad"):
            return {"grad": np.moveaxis(nan, -1, axis), "hess": np.moveaxis(nan, -1, axis)}
        return {"value": np.asarray(math.nan)}
    if not call.func.endswith("_grad"):
        return {"value": reduce(loss, denominator)}
    scale = 1 / denominator if reduction == "mean" else mp.mpf(1)
    to_float = np.vectorize(lambda v: float(v * scale), otypes=[np.float64])
    return {
        "grad": np.moveaxis(to_float(grad), -1, axis),
        "hess": np.moveaxis(to_float(hess), -1, axis),
    }
