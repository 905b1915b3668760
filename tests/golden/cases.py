"""The case tables of the golden files, one per family.

`make_golden.py` runs PyTorch, SciPy and mpmath on these cases and stores inputs and outputs;
`tests/test_golden.py` compares crossent with the stored outputs always, and with live PyTorch
where it is installed, and checks that the files still hold exactly these cases. The PyTorch
parity tests live there: a case added here is checked against the golden file and live torch.

Everything here is plain NumPy, built from fixed seeds: no reference library is imported.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

F32, F64 = np.float32, np.float64
FLOATS: tuple[Any, ...] = (F32, F64)
REDUCTIONS = ("none", "sum", "mean")
GRAD_REDUCTIONS = ("sum", "mean")
# Target dtypes that BCE accepts besides floats (labels 0 / 1).
LABEL_TARGETS: tuple[Any, ...] = (np.bool_, np.uint8, np.int8, np.int32, np.int64)
# Class-index dtypes of softmax_cross_entropy.
CLASS_INDEX_DTYPES: tuple[Any, ...] = (
    np.int64,
    np.int32,
    np.int16,
    np.int8,
    np.uint8,
    np.uint16,
    np.uint32,
)

# Array arguments passed by position, per crossent function.
POSITIONAL: dict[str, tuple[str, ...]] = {
    "binary_cross_entropy": ("input", "target"),
    "binary_cross_entropy_with_logits": ("input", "target"),
    "binary_cross_entropy_with_logits_grad": ("input", "target"),
    "softmax_cross_entropy": ("logits", "target"),
    "softmax_cross_entropy_grad": ("logits", "target"),
    "entropy": ("p",),
    "cross_entropy": ("p", "q"),
    "kl_divergence": ("p", "q"),
    "jensen_shannon": ("p", "q"),
}
DIVERGENCES = ("entropy", "cross_entropy", "kl_divergence", "jensen_shannon")

# Tags that tell the golden test how to treat a call (see tests/test_golden.py).
#   targets-outside-01: a BCE-with-logits target outside [0, 1], which PyTorch accepts;
#   softmax-huge-logits: the loss's error follows the loss, not the size of the logits
#     (checked against mpmath, more tightly than the family's tolerance);
#   kl-overflow: no overflow of p/q where the normalised divergence is finite (SciPy).
TAGS = ("targets-outside-01", "softmax-huge-logits", "kl-overflow")
_HUGE = ("softmax-huge-logits",)


@dataclass(frozen=True)
class Call:
    """One crossent call on a case's arrays, and which reference judges it.

    ref: "torch" (torch.nn.functional, or torch.autograd for gradients, on the same arrays),
    "torch-kl_div" (sum over the last axis of torch's kl_div(log q, p)), or "scipy".
    exact: the generator also stores an mpmath reference, and the test compares crossent with it
    instead of with PyTorch: crossent is meant to be more accurate than PyTorch there.
    expect: "reference" (crossent gives the reference's result), "ValueError" (crossent refuses
    the value, a documented difference), or "nan" (crossent gives NaN where PyTorch raises).
    """

    label: str
    func: str
    params: dict[str, Any] = field(default_factory=dict)
    ref: str = "torch"
    exact: bool = False
    expect: str = "reference"
    tags: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Case:
    id: str
    arrays: dict[str, np.ndarray]
    calls: tuple[Call, ...]


def _reductions(
    func: str, tags: tuple[str, ...] = (), exact: bool = False, **params: Any
) -> tuple[Call, ...]:
    grad = func.endswith("_grad")
    return tuple(
        Call(r, func, {**params, "reduction": r}, exact=exact, tags=tags)
        for r in (GRAD_REDUCTIONS if grad else REDUCTIONS)
    )


def _name(dtype: Any) -> str:
    return str(np.dtype(dtype).name)


# --- binary cross-entropy: probabilities and logits -----------------------------------------


def _make(shape: tuple[int, ...], dtype: Any, target_dtype: Any, seed: int) -> tuple[Any, Any]:
    """Probabilities and targets as the BCE tests draw them."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.0, 1.0, size=shape).astype(dtype)
    if np.issubdtype(target_dtype, np.floating):
        y = rng.uniform(0.0, 1.0, size=shape).astype(target_dtype)
    else:
        y = (rng.uniform(size=shape) < 0.5).astype(target_dtype)
    return p, y


def bce_cases() -> list[Case]:
    out: list[Case] = []
    bce, logits = "binary_cross_entropy", "binary_cross_entropy_with_logits"
    for dtype in FLOATS:
        d = _name(dtype)
        # Soft targets with a class weight, and a logit version with pos_weight (formerly
        # test_bce.py's torch comparison).
        p, y = _make((64, 10), dtype, dtype, seed=7)
        w = np.random.default_rng(8).uniform(0.5, 2, size=(10,)).astype(dtype)
        out.append(
            Case(f"soft-weight-{d}", {"input": p, "target": y, "weight": w}, _reductions(bce))
        )
        x = (p - dtype(0.5)) * dtype(30)
        out.append(
            Case(
                f"logits-soft-weight-pos_weight-{d}",
                {"input": x, "target": y, "weight": w, "pos_weight": w},
                _reductions(logits),
            )
        )
        # Every target dtype, without weights; mixed float precisions (read in the input's).
        for t in (*LABEL_TARGETS, F32, F64):
            p, y = _make((6, 7), dtype, t, seed=11)
            out.append(Case(f"target-{_name(t)}-{d}", {"input": p, "target": y}, _reductions(bce)))
            x = (p - dtype(0.5)) * dtype(20)
            out.append(
                Case(
                    f"logits-target-{_name(t)}-{d}", {"input": x, "target": y}, _reductions(logits)
                )
            )
        # Each weight / pos_weight combination, shapes that broadcast.
        rng = np.random.default_rng(12)
        x = (rng.standard_normal((8, 5)) * 4).astype(dtype)
        soft = rng.uniform(0, 1, (8, 5)).astype(dtype)
        hard = (rng.uniform(size=(8, 5)) < 0.5).astype(np.int8)
        w_el = rng.uniform(0.2, 3, (8, 5)).astype(dtype)
        w_row = rng.uniform(0.2, 3, (8, 1)).astype(dtype)
        pw = np.array([0.1, 0.5, 1.0, 3.0, 30.0], dtype=dtype)
        combos: dict[str, dict[str, np.ndarray]] = {
            "none": {},
            "weight": {"weight": w_el},
            "pos_weight": {"pos_weight": pw},
            "both": {"weight": w_row, "pos_weight": pw},
        }
        for (tname, y), (cname, extra) in itertools.product(
            (("soft", soft), ("int8", hard)), combos.items()
        ):
            out.append(
                Case(
                    f"logits-{tname}-{cname}-{d}",
                    {"input": x, "target": y, **extra},
                    _reductions(logits),
                )
            )
        out.append(
            Case(
                f"weight-row-{d}",
                {"input": soft, "target": hard, "weight": w_row},
                _reductions(bce),
            )
        )
        # Edge probabilities: 0, 1, subnormals, 1 - ulp, -0.0, with targets 0, 1 and 0.25; the
        # log clamp at -100.
        tiny = np.finfo(dtype).smallest_subnormal
        pe = np.array([0.0, 1.0, tiny, 1e-45, 1.0 - np.finfo(dtype).epsneg, 0.5, 1e-8, -0.0], dtype)
        ye = np.repeat(np.array([0.0, 1.0, 0.25], dtype), pe.size)
        out.append(
            Case(
                f"edge-probabilities-{d}", {"input": np.tile(pe, 3), "target": ye}, _reductions(bce)
            )
        )
        # Edge logits: huge, past exp's overflow, tiny, zero, with targets 0, 1 and 0.3.
        xe = np.array([1e4, -1e4, 88.0, -88.0, 710.0, -710.0, 0.0, 1e-30, -1e-30, -0.0], dtype)
        ye = np.repeat(np.array([0.0, 1.0, 0.3], dtype), xe.size)
        pwe = np.array([2.5], dtype)
        out.append(
            Case(f"edge-logits-{d}", {"input": np.tile(xe, 3), "target": ye}, _reductions(logits))
        )
        out.append(
            Case(
                f"edge-logits-pos_weight-{d}",
                {"input": np.tile(xe, 3), "target": ye, "pos_weight": pwe},
                _reductions(logits),
            )
        )
        # Where (1 - y) x and log_sigmoid(x) cancel (x far below 0, y small; x far above 0, y
        # near 1): PyTorch's formula loses digits there; crossent is compared with mpmath.
        xc = np.array([-50.0, -30.0, -20.0, -88.0, -8.0, 50.0, 30.0, 20.0], dtype)
        yc = np.array([1e-3, 1e-6, 0.999, 1 - 2**-20, 0.5], dtype)
        xx, yy = (a.ravel() for a in np.meshgrid(xc, yc))
        for cname, extra in {
            "none": {},
            "weight": {"weight": np.linspace(0.25, 4, xx.size).astype(dtype)},
            "pos_weight": {"pos_weight": np.array([1e-3], dtype)},
            "both": {"weight": np.array([3.0], dtype), "pos_weight": np.array([40.0], dtype)},
        }.items():
            out.append(
                Case(
                    f"logits-cancellation-{cname}-{d}",
                    {"input": xx, "target": yy, **extra},
                    _reductions(logits, exact=True),
                )
            )
        # Empty and 0-d inputs.
        for shape in ((0,), (0, 3)):
            e = np.zeros(shape, dtype)
            sname = "x".join(map(str, shape))
            out.append(Case(f"empty-{sname}-{d}", {"input": e, "target": e}, _reductions(bce)))
            out.append(
                Case(f"logits-empty-{sname}-{d}", {"input": e, "target": e}, _reductions(logits))
            )
        out.append(
            Case(
                f"scalar-{d}",
                {"input": np.array(0.3, dtype), "target": np.array(1.0, dtype)},
                _reductions(bce),
            )
        )
        # Targets outside [0, 1]: PyTorch computes a loss for any real target (its own tests
        # draw them from a normal distribution).
        rng = np.random.default_rng(13)
        xo = (rng.standard_normal(12) * 3).astype(dtype)
        yo = np.concatenate([rng.standard_normal(8) * 2, [1.5, -0.5, 2.0, -3.0]]).astype(dtype)
        for cname, extra in {
            "none": {},
            "pos_weight": {"pos_weight": np.array([2.0], dtype)},
        }.items():
            out.append(
                Case(
                    f"logits-targets-outside-01-{cname}-{d}",
                    {"input": xo, "target": yo, **extra},
                    _reductions(logits, tags=("targets-outside-01",)),
                )
            )
    return out


# --- softmax cross-entropy -------------------------------------------------------------------


def _softmax_sampled() -> list[Case]:
    """The space that test_softmax.py's hypothesis strategy explores, fixed: every combination
    of dtype, target kind, label smoothing and weight, with shapes, axes, scales, label dtypes
    and ignore_index drawn from a fixed seed. Each case is called with every reduction."""
    out: list[Case] = []
    rng = np.random.default_rng(20260413)
    kinds = ("labels", "probs", "probs-normalised")
    for i, (dtype, kind, eps, weighted) in enumerate(
        itertools.product(FLOATS, kinds, (0.0, 0.1, 1.0), (False, True))
    ):
        ndim = int(rng.integers(1, 4))
        shape = tuple(int(n) for n in rng.integers(1, 7, ndim))
        axis = int(rng.integers(-ndim, ndim))
        c = shape[axis]
        scale = (1.0, 30.0, 1e4)[i % 3]
        logits = (rng.standard_normal(shape) * scale).astype(dtype)
        rows = tuple(n for k, n in enumerate(shape) if k != axis % ndim)
        params: dict[str, Any] = {"axis": axis, "label_smoothing": eps}
        if kind == "labels":
            label_dtype = CLASS_INDEX_DTYPES[i % len(CLASS_INDEX_DTYPES)]
            ignore_index = (-100, 0, 3)[(i // 3) % 3]
            labels = rng.integers(0, c, size=rows)
            if ignore_index == -100 and np.issubdtype(label_dtype, np.signedinteger):
                labels[rng.random(rows) < 0.2] = -100
            target: np.ndarray = labels.astype(label_dtype)
            params["ignore_index"] = ignore_index
            tname = f"{_name(label_dtype)}-ignore{ignore_index}"
        else:
            target = rng.random(shape).astype(dtype)
            if kind == "probs-normalised":
                target /= target.sum(axis=axis, keepdims=True)
            tname = kind
        arrays = {"logits": logits, "target": target}
        if weighted:
            arrays["weight"] = (rng.random(c) + 0.1).astype(dtype)
        sid = f"sampled{i:03d}-{_name(dtype)}-{tname}-eps{eps}-{'w' if weighted else 'nw'}"
        out.append(Case(sid, arrays, _reductions("softmax_cross_entropy", **params)))
    return out


def softmax_cases() -> list[Case]:
    sce = "softmax_cross_entropy"
    out = _softmax_sampled()
    for dtype in FLOATS:
        d = _name(dtype)
        # Many rows in float32 against torch's float32 (formerly test_softmax.py's).
        rng = np.random.default_rng(0)
        x = (rng.standard_normal((128, 37)) * 5).astype(dtype)
        y = rng.integers(0, 37, 128)
        out.append(Case(f"rows128-{d}", {"logits": x, "target": y}, _reductions(sce)))
        # Logits of ±1e4 stay exact.
        x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], dtype)
        out.append(Case(f"pm1e4-{d}", {"logits": x, "target": np.array([0, 0])}, _reductions(sce)))
        # One class: the loss is 0.
        out.append(
            Case(
                f"one-class-{d}",
                {"logits": np.ones((4, 1), dtype), "target": np.zeros(4, np.int64)},
                _reductions(sce),
            )
        )
        # Every row ignored: mean NaN, sum 0.
        x = np.array([[1.0, -1.0, 0.5], [0.0, 2.0, 1.0]], dtype)
        out.append(
            Case(f"all-ignored-{d}", {"logits": x, "target": np.full(2, -100)}, _reductions(sce))
        )
        # Empty: no rows (labels and probabilities).
        e = np.zeros((0, 5), dtype)
        out.append(
            Case(
                f"empty-rows-{d}", {"logits": e, "target": np.zeros(0, np.int64)}, _reductions(sce)
            )
        )
        out.append(Case(f"empty-rows-probs-{d}", {"logits": e, "target": e}, _reductions(sce)))
        # NaN stays in its row; an ignored row is 0 even with NaN logits.
        x = np.array([[0.0, np.nan], [1.0, 2.0], [np.nan, 0.0]], dtype)
        out.append(
            Case(f"nan-rows-{d}", {"logits": x, "target": np.array([0, 1, -100])}, _reductions(sce))
        )
        # -inf logits are impossible classes; +inf makes its row NaN.
        x = np.array([[-np.inf, 0.0, 0.0], [np.inf, 0.0, 1.0], [0.0, -np.inf, 2.0]], dtype)
        out.append(
            Case(f"inf-logits-{d}", {"logits": x, "target": np.array([1, 0, 2])}, _reductions(sce))
        )
        # 1-D logits with a scalar label (a 0-d result).
        out.append(
            Case(
                f"one-row-{d}",
                {"logits": np.array([0.0, 0.5, -1.0], dtype), "target": np.array(1)},
                _reductions(sce),
            )
        )
        # Class axis first, with weight, smoothing and an ignore_index of 0.
        rng = np.random.default_rng(21)
        x = (rng.standard_normal((4, 6, 3)) * 3).astype(dtype)
        y = rng.integers(0, 4, (6, 3)).astype(np.int32)
        w = rng.uniform(0.5, 2, 4).astype(dtype)
        out.append(
            Case(
                f"axis0-{d}",
                {"logits": x, "target": y, "weight": w},
                _reductions(sce, axis=0, ignore_index=0, label_smoothing=0.2),
            )
        )
    # Huge logits (float64): crossent keeps the loss's own accuracy; compared with mpmath.
    rng = np.random.default_rng(22)
    base = rng.standard_normal((16, 7)) * 3
    labels = rng.integers(0, 7, 16)
    w = rng.uniform(0.5, 2, 7)
    for shift in (1e6, 1e8):
        for eps in (0.0, 0.1):
            out.append(
                Case(
                    f"shift{shift:g}-eps{eps}",
                    {"logits": base + shift, "target": labels, "weight": w},
                    _reductions(sce, _HUGE, exact=True, label_smoothing=eps),
                )
            )
    conf = np.array([[-6.08, -6.07, 8.81], [-6.08, -6.07, 8.81]]) + np.array([[0.0], [1e4]])
    out.append(
        Case(
            "confident-rows",
            {"logits": conf, "target": np.array([2, 2])},
            _reductions(sce, _HUGE, exact=True),
        )
    )
    # Two equal maxima, each row's label on one of them: ln 2 per row.
    for m in (1e16, 1e300):
        x = np.array([[m, m, 0.0], [m, 0.0, m], [0.0, m, m]])
        out.append(
            Case(
                f"two-maxima-{m:g}",
                {"logits": x, "target": np.array([0, 2, 1])},
                _reductions(sce, _HUGE, exact=True),
            )
        )
    return out


# --- gradients -------------------------------------------------------------------------------


def _softmax_grad_case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """As test_grad.py's softmax cases: classes along axis 1, every 4th row ignored."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((9, 5, 4)) * 2
    labels = rng.integers(0, 5, (9, 4))
    labels[::4, 1] = -100
    t = rng.random((9, 5, 4))
    t /= t.sum(axis=1, keepdims=True)
    w = rng.uniform(0.5, 2, 5)
    return x, labels, t, w


def grad_cases() -> list[Case]:
    out: list[Case] = []
    bg, sg = "binary_cross_entropy_with_logits_grad", "softmax_cross_entropy_grad"
    for dtype in FLOATS:
        d = _name(dtype)
        # Formerly test_grad.py's torch.autograd comparison.
        rng = np.random.default_rng(6)
        x, y = rng.uniform(-8, 8, (50, 4)).astype(dtype), rng.uniform(0, 1, (50, 4)).astype(dtype)
        w = np.random.default_rng(7).uniform(0.5, 2, (50, 1)).astype(dtype)
        c = np.array([0.3, 1.0, 2.0, 5.0], dtype)
        out.append(
            Case(
                f"bce-weight-pos_weight-{d}",
                {"input": x, "target": y, "weight": w, "pos_weight": c},
                _reductions(bg),
            )
        )
        labels = (y > 0.5).astype(np.uint8)
        out.append(Case(f"bce-labels-{d}", {"input": x, "target": labels}, _reductions(bg)))
        xe = np.array([1e4, -1e4, 88.0, -88.0, 710.0, -710.0, 0.0, 1e-30, -50.0, 50.0], dtype)
        ye = np.repeat(np.array([0.0, 1.0, 1e-3], dtype), xe.size)
        out.append(
            Case(
                f"bce-edge-logits-{d}",
                {"input": np.tile(xe, 3), "target": ye, "pos_weight": np.array([3.0], dtype)},
                _reductions(bg),
            )
        )
        yo = np.linspace(-2.0, 3.0, x.size).reshape(x.shape).astype(dtype)
        out.append(
            Case(
                f"bce-targets-outside-01-{d}",
                {"input": x, "target": yo, "pos_weight": c},
                _reductions(bg, tags=("targets-outside-01",)),
            )
        )
        # Formerly test_grad.py's softmax comparison (class indices with ignored rows, and
        # probabilities; weight and label smoothing), with and without smoothing.
        xs, labels, t, ws = _softmax_grad_case(1)
        xs, t, ws = xs.astype(dtype), t.astype(dtype), ws.astype(dtype)
        for eps in (0.0, 0.1):
            out.append(
                Case(
                    f"softmax-labels-eps{eps}-{d}",
                    {"logits": xs, "target": labels, "weight": ws},
                    _reductions(sg, axis=1, label_smoothing=eps),
                )
            )
            out.append(
                Case(
                    f"softmax-probs-eps{eps}-{d}",
                    {"logits": xs, "target": t, "weight": ws},
                    _reductions(sg, axis=1, label_smoothing=eps),
                )
            )
        out.append(
            Case(
                f"softmax-unweighted-ignore2-{d}",
                {"logits": xs[:, :, 0].copy(), "target": labels[:, 0].copy()},
                _reductions(sg, ignore_index=2),
            )
        )
    # Huge logits: the gradient of [m, m, 0] with label 1 is [0.5, -0.5, 0].
    for m in (1e8, 1e16):
        x = np.array([[m, m, 0.0], [m, 0.0, m]])
        out.append(
            Case(
                f"softmax-two-maxima-{m:g}",
                {"logits": x, "target": np.array([1, 0])},
                _reductions(sg, _HUGE, exact=True),
            )
        )
    rng = np.random.default_rng(23)
    x = rng.standard_normal((6, 5)) * 3 + 1e6
    out.append(
        Case(
            "softmax-shift1e6",
            {"logits": x, "target": rng.integers(0, 5, 6)},
            _reductions(sg, _HUGE, exact=True),
        )
    )
    return out


# --- divergences (SciPy) ---------------------------------------------------------------------


def _divergence_calls(
    axis: int | None, base: float | None, normalize: bool = True
) -> tuple[Call, ...]:
    params: dict[str, Any] = {"axis": axis, "base": base}
    if not normalize:
        params["normalize"] = False
    return tuple(Call(f, f, params, ref="scipy") for f in DIVERGENCES)


def divergence_cases() -> list[Case]:
    out: list[Case] = []
    rng = np.random.default_rng(31)
    kinds = ("dense", "sparse", "onehot", "tiny")
    bases: tuple[float | None, ...] = (None, 2.0, 10.0, float(np.e))
    for i, (dtype, kind) in enumerate(itertools.product(FLOATS, kinds)):
        for j in range(3):
            ndim = 1 + (i + j) % 3
            shape = tuple(int(n) for n in rng.integers(1, 8, ndim))
            size = int(np.prod(shape))
            p = rng.random(size)
            q = rng.random(size) + 1e-3
            if kind == "sparse":
                p[rng.random(size) < 0.4] = 0.0
            elif kind == "onehot":
                p = (rng.random(size) < 0.2).astype(np.float64)
            elif kind == "tiny":
                p *= 1e-30
            axes: list[int | None] = [None, *range(-ndim, ndim)]
            axis = axes[(i + 2 * j) % len(axes)]
            base = bases[(i + j) % len(bases)]
            arrays = {"p": p.reshape(shape).astype(dtype), "q": q.reshape(shape).astype(dtype)}
            sid = f"{kind}{j}-{_name(dtype)}-axis{axis}-base{base}"
            out.append(Case(sid, arrays, _divergence_calls(axis, base)))
    for dtype in FLOATS:
        d = _name(dtype)
        # Rows as given (normalize=False): SciPy's entr / rel_entr.
        rng = np.random.default_rng(32)
        p, q = rng.random((4, 9)), rng.random((4, 9)) + 0.1
        p[0, :3] = 0.0
        arrays = {"p": p.astype(dtype), "q": q.astype(dtype)}
        out.append(Case(f"unnormalised-{d}", arrays, _divergence_calls(-1, None, normalize=False)))
        pn, qn = p / p.sum(-1, keepdims=True), q / q.sum(-1, keepdims=True)
        arrays = {"p": pn.astype(dtype), "q": qn.astype(dtype)}
        out.append(
            Case(
                f"normalised-rows-unnormalised-call-{d}",
                arrays,
                _divergence_calls(None, 2.0, normalize=False),
            )
        )
        # Edge rows: zeros of p (0 log 0 = 0), a zero of q under p > 0 (inf), a zero row,
        # one-hot rows, an empty axis.
        p = np.array([[0.0, 0.5, 0.5], [0.3, 0.7, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
        q = np.array([[0.2, 0.3, 0.5], [0.0, 0.5, 0.5], [0.1, 0.2, 0.7], [1.0, 0.0, 0.0]])
        out.append(
            Case(
                f"edge-rows-{d}",
                {"p": p.astype(dtype), "q": q.astype(dtype)},
                _divergence_calls(-1, None),
            )
        )
        e = np.zeros((3, 0), dtype)
        out.append(Case(f"empty-axis-{d}", {"p": e, "q": e}, _divergence_calls(-1, None)))
        # kl_divergence against torch.nn.functional.kl_div (formerly test_divergence.py's).
        rng = np.random.default_rng(2)
        p = rng.random((50, 33)).astype(dtype)
        q = rng.random((50, 33)) + 0.01
        p = (p / p.sum(-1, keepdims=True)).astype(dtype)
        q = (q / q.sum(-1, keepdims=True)).astype(dtype)
        out.append(
            Case(
                f"kl_div-{d}",
                {"p": p, "q": q},
                (
                    Call("kl_div", "kl_divergence", {}, ref="torch-kl_div"),
                    Call("scipy", "kl_divergence", {}, ref="scipy"),
                ),
            )
        )
    # Where forming p/q before normalising overflows, while the normalised result is finite.
    overflow = (
        ("scales", [3e5, 7e5], [1.0, 1e-304]),
        ("subnormal-q", [0.5, 0.5], [5e-324, 1e-323]),
        ("huge-p", [1e300, 1e300, 1e299], [1e-300, 2e-300, 3e-300]),
    )
    for name, p1, q1 in overflow:
        kl_calls = tuple(
            Call(f"axis{a}", "kl_divergence", {"axis": a}, ref="scipy", tags=("kl-overflow",))
            for a in (-1, None)
        )
        out.append(Case(f"overflow-{name}", {"p": np.array(p1), "q": np.array(q1)}, kl_calls))
    # A small KL between p and q on different scales.
    rng = np.random.default_rng(33)
    a = rng.random(64) + 0.5
    q2 = a * (1 + 1e-4 * rng.standard_normal(64))
    out.append(
        Case(
            "small-kl-scales",
            {"p": a * 1e-200, "q": q2 * 1e200},
            (Call("kl", "kl_divergence", {}, ref="scipy", tags=("kl-overflow",)),),
        )
    )
    return out


# --- the README's table of NaN and infinities -------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One cell of README.md's "NaN and infinities" table, with the condition it depends on."""

    function: str
    argument: str
    value: str  # "nan", "+inf", "-inf"
    condition: str
    readme: str  # what the README's cell says


def _special(v: str) -> float:
    return {"nan": np.nan, "+inf": np.inf, "-inf": -np.inf}[v]


# Where the special value goes: position (1, 2) of a (2, 3) array, the last class of row 1.
AT = (1, 2)


def readme_cells() -> list[tuple[Cell, Case]]:
    """Every cell of the README table (with each condition a cell names), in float64, with the
    special value at AT and ordinary values elsewhere."""
    cells: list[tuple[Cell, Case]] = []
    rng = np.random.default_rng(41)
    p = rng.uniform(0.1, 0.9, (2, 3))
    soft = rng.uniform(0.1, 0.9, (2, 3))
    x = rng.standard_normal((2, 3)) * 2
    w = rng.uniform(0.5, 2, (2, 3))

    def put(a: np.ndarray, v: str) -> np.ndarray:
        a = a.copy()
        a[AT] = _special(v)
        return a

    def add(
        cell: Cell,
        arrays: dict[str, np.ndarray],
        func: str,
        expect: str = "reference",
        ref: str = "torch",
        tags: tuple[str, ...] = (),
        label_smoothing: float = 0.0,
    ) -> None:
        params = {"label_smoothing": label_smoothing} if label_smoothing else {}
        slug = "-".join(
            re.sub(r"[^\w.+<>=-]+", "_", s)
            for s in (cell.function, cell.argument, cell.value, cell.condition)
            if s
        )
        calls: tuple[Call, ...]
        if ref == "scipy":
            calls = (Call("none", func, params, ref, expect=expect, tags=tags, note=cell.readme),)
        else:
            calls = tuple(
                Call(
                    r,
                    func,
                    {**params, "reduction": r},
                    ref,
                    expect=expect,
                    tags=tags,
                    note=cell.readme,
                )
                for r in REDUCTIONS
            )
        cells.append((cell, Case(slug, arrays, calls)))

    bce, bcel = "binary_cross_entropy", "binary_cross_entropy_with_logits"
    for arg in ("input", "target"):
        for v in ("nan", "+inf", "-inf"):
            readme = "NaN" if v == "nan" else "ValueError"
            arrays = {"input": p, "target": soft, arg: put({"input": p, "target": soft}[arg], v)}
            # crossent: NaN propagates; torch raises on NaN (documented).
            expect = "ValueError" if v != "nan" else "nan"
            add(Cell(bce, arg, v, "", readme), arrays, bce, expect)
    for v, readme in (("nan", "NaN"), ("+inf", "+inf"), ("-inf", "-inf")):
        add(
            Cell(bce, "weight", v, "", readme),
            {"input": p, "target": soft, "weight": put(w, v)},
            bce,
        )
    # Logits: +inf depends on the target.
    add(Cell(bcel, "input", "nan", "", "NaN"), {"input": put(x, "nan"), "target": soft}, bcel)
    for cond, y in (("target below 1", 0.4), ("target 0", 0.0), ("target 1", 1.0)):
        readme = "+inf for a target below 1, NaN for a target of 1 (0 · ∞)"
        t = soft.copy()
        t[AT] = y
        add(Cell(bcel, "input", "+inf", cond, readme), {"input": put(x, "+inf"), "target": t}, bcel)
    for cond, y in (("target 0", 0.0), ("target 0.4", 0.4), ("target 1", 1.0)):
        t = soft.copy()
        t[AT] = y
        add(
            Cell(bcel, "input", "-inf", cond, "NaN (∞ - ∞), as PyTorch"),
            {"input": put(x, "-inf"), "target": t},
            bcel,
        )
    for v in ("nan", "+inf", "-inf"):
        readme = "NaN" if v == "nan" else "ValueError"
        # PyTorch computes ±inf: a target outside [0, 1].
        add(
            Cell(bcel, "target", v, "", readme),
            {"input": x, "target": put(soft, v)},
            bcel,
            tags=() if v == "nan" else ("targets-outside-01",),
        )
    for arg in ("weight", "pos_weight"):
        for v, readme in (("nan", "NaN"), ("+inf", "+inf"), ("-inf", "-inf")):
            conds = [("", soft)]
            if arg == "pos_weight":
                # pos_weight multiplies the target: with y = 0 it meets 0 · ∞.
                t0 = soft.copy()
                t0[AT] = 0.0
                conds = [("target above 0", soft), ("target 0", t0)]
            for cond, t in conds:
                add(
                    Cell(bcel, arg, v, cond, readme),
                    {"input": x, "target": t, arg: put(w, v)},
                    bcel,
                )
    # Divergences: SciPy is the reference.
    pq = rng.uniform(0.1, 1.0, (2, 3)), rng.uniform(0.1, 1.0, (2, 3))
    for func in DIVERGENCES:
        for arg in ("p",) if func == "entropy" else ("p", "q"):
            for v in ("nan", "+inf", "-inf"):
                readme = {
                    "nan": "NaN for that distribution",
                    "+inf": "NaN for that distribution (normalised by an infinite sum, as SciPy)",
                    "-inf": "ValueError (negative)",
                }[v]
                arrays = {"p": pq[0]} if func == "entropy" else {"p": pq[0], "q": pq[1]}
                arrays[arg] = put(arrays[arg], v)
                expect = "ValueError" if v == "-inf" else "reference"
                add(Cell(func, arg, v, "", readme), arrays, func, expect, ref="scipy")
    # Softmax cross-entropy: class indices 0 and 1 (never the last class, where the special
    # value goes) unless the cell is about the label.
    sce = "softmax_cross_entropy"
    labels = np.array([0, 1])
    on_label = np.array([0, 2])
    probs = soft / soft.sum(-1, keepdims=True)
    probs0 = probs.copy()
    probs0[AT] = 0.0
    probs0[1] /= probs0[1].sum()
    for v, readme in (("nan", "NaN for that row"), ("+inf", "NaN for that row (as PyTorch)")):
        add(
            Cell(sce, "logits", v, "class indices", readme),
            {"logits": put(x, v), "target": labels},
            sce,
        )
        add(
            Cell(sce, "logits", v, "probabilities", readme),
            {"logits": put(x, v), "target": probs},
            sce,
        )
        add(
            Cell(sce, "logits", v, "class indices, label_smoothing=0.1", readme),
            {"logits": put(x, v), "target": labels},
            sce,
            label_smoothing=0.1,
        )
    readme = (
        "a class of probability 0: finite, +inf if it is the row's label or has target "
        "probability > 0"
    )
    minus = put(x, "-inf")
    for cond, target, eps in (
        ("class indices, not the label", labels, 0.0),
        ("class indices, the label", on_label, 0.0),
        ("class indices, not the label, label_smoothing=0.1", labels, 0.1),
        ("probabilities, t > 0", probs, 0.0),
        ("probabilities, t = 0", probs0, 0.0),
        ("probabilities, t = 0, label_smoothing=0.1", probs0, 0.1),
    ):
        add(
            Cell(sce, "logits", "-inf", cond, readme),
            {"logits": minus, "target": target},
            sce,
            label_smoothing=eps,
        )
    all_minus = x.copy()
    all_minus[1] = -np.inf
    add(
        Cell(sce, "logits", "-inf", "class indices, every class of the row", readme),
        {"logits": all_minus, "target": labels},
        sce,
    )
    for v, readme, expect in (
        ("nan", "NaN", "reference"),
        ("+inf", "+inf", "reference"),
        ("-inf", "ValueError (negative)", "ValueError"),
    ):
        add(
            Cell(sce, "target (probabilities)", v, "", readme),
            {"logits": x, "target": put(probs, v)},
            sce,
            expect,
        )
    return cells


def cell_cases() -> list[Case]:
    return [case for _, case in readme_cells()]


FAMILIES = {
    "bce": bce_cases,
    "softmax": softmax_cases,
    "grad": grad_cases,
    "divergence": divergence_cases,
    "readme_cells": cell_cases,
}
