"""Every public crossent function, described once for the robustness tests.

Adding a function to crossent means adding one `Func` entry to `FUNCS`: the bad-input,
concurrency, memory and fuzz tests then try it with every hostile argument they know.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import reference

import crossent

Args = dict[str, Any]
F64 = npt.NDArray[np.float64]

FLOATS: tuple[type[np.floating[Any]], ...] = (np.float32, np.float64)

# Dtypes no array argument accepts ("V2": two raw bytes, the size of a bfloat16 but not one).
NEVER = ("complex128", "object", "str", "datetime64[s]", "V2")

# Floats narrower than float16 (ml_dtypes' float8 formats, where it is installed): refused where
# an array is read as a float in place (float16 and bfloat16 are read, never these).
try:
    import ml_dtypes  # noqa: F401  (registers its dtypes' names with NumPy)

    FLOAT8: tuple[str, ...] = ("float8_e5m2", "float8_e4m3fn")
except ImportError:
    FLOAT8 = ()


@dataclass(frozen=True)
class Func:
    """One public function and what the tests need to know about it."""

    name: str
    func: Callable[..., Any]
    # Positional array arguments, in order; the first one decides the dtype of the result.
    positional: tuple[str, ...]
    # make(rng, shape, dtype): valid arguments (positional ones by name) for arrays of `shape`.
    make: Callable[[np.random.Generator, tuple[int, ...], Any], Args]
    # reference(args): the float64 per-element (or per-distribution) result, as "none" gives.
    reference: Callable[[Args], F64]
    # Per array argument: shapes (against the first positional one's (4, 5)) that do not fit.
    mismatched: dict[str, tuple[tuple[int, ...], ...]] = field(default_factory=dict)
    # Optional array arguments broadcast against the first positional one.
    broadcast: tuple[str, ...] = ()
    # Per array argument: dtypes refused with TypeError (besides NEVER).
    bad_dtypes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Per argument: values that are refused with ValueError (outside the function's domain).
    domain: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    # Scalar keyword arguments: (bad value, exception type).
    bad_params: dict[str, tuple[tuple[Any, type[Exception]], ...]] = field(default_factory=dict)
    # Whether the function takes `reduction=` (else: `out` has the per-item shape always).
    reduces: bool = True
    # Whether the result has one value per distribution along the last axis (not per element).
    rows: bool = False
    # Whether `target` may hold integer labels, which must be in range.
    labels: bool = False
    # Whether `axis=None` (the whole array as one distribution) is accepted.
    axis_none: bool = True
    # Whether "mean" divides by the weight of the rows not ignored (class indices, as PyTorch)
    # rather than by the number of elements / rows.
    weighted_mean: bool = False
    # special[(argument, value)]: what one such value at one position gives, for the README:
    # "nan", "inf", "ValueError", "finite" or "nonfinite" (inf, -inf or NaN, not compared
    # with the reference).
    special: dict[tuple[str, float], str] = field(default_factory=dict)
    # Per dtype, the relative tolerance against the float64 reference.
    rtol: dict[Any, float] = field(default_factory=lambda: {np.float32: 2e-5, np.float64: 1e-12})

    def call(self, args: Args, **extra: Any) -> Any:
        """Calls the function on `args` (positional ones by position) plus `extra`."""
        kwargs = {k: v for k, v in args.items() if k not in self.positional}
        kwargs.update(extra)
        return self.func(*(args[k] for k in self.positional), **kwargs)

    def out_shape(self, args: Args) -> tuple[int, ...]:
        shape: tuple[int, ...] = np.shape(args[self.positional[0]])
        return shape[:-1] if self.rows else shape

    def out_index(self, index: tuple[int, ...]) -> tuple[int, ...]:
        """Where the result for the input element at `index` lies."""
        return index[:-1] if self.rows else index

    def none(self) -> dict[str, str]:
        """The keyword that asks for one result per element / distribution."""
        return {"reduction": "none"} if self.reduces else {}


def _bce_args(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> Args:
    return {
        "input": rng.uniform(0.02, 0.98, size=shape).astype(dtype),
        "target": rng.uniform(0.0, 1.0, size=shape).astype(dtype),
    }


def _logits_args(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> Args:
    return {
        "input": (rng.standard_normal(size=shape) * 3).astype(dtype),
        "target": rng.uniform(0.0, 1.0, size=shape).astype(dtype),
    }


def _bce_ref(a: Args) -> F64:
    return reference.bce(a["input"], a["target"], weight=a.get("weight"))


def _logits_ref(a: Args) -> F64:
    return reference.bce_with_logits(
        a["input"], a["target"], weight=a.get("weight"), pos_weight=a.get("pos_weight")
    )


def _dist_args(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> Args:
    return {
        "p": rng.uniform(0.05, 1.0, size=shape).astype(dtype),
        "q": rng.uniform(0.05, 1.0, size=shape).astype(dtype),
    }


def _entropy_args(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> Args:
    return {"p": _dist_args(rng, shape, dtype)["p"]}


def _entropy_ref(a: Args) -> F64:
    return reference.entropy(a["p"])


def _kl_ref(a: Args) -> F64:
    return reference.kl_divergence(a["p"], a["q"])


def _cross_entropy_ref(a: Args) -> F64:
    return reference.cross_entropy(a["p"], a["q"])


def _js_ref(a: Args) -> F64:
    return reference.jensen_shannon(a["p"], a["q"])


# SciPy's spellings only: other strings (other cases too) are ValueError, other types TypeError.
_NAN_POLICY_BAD: tuple[tuple[Any, type[Exception]], ...] = (
    ("Omit", ValueError),
    ("ignore", ValueError),
    ("", ValueError),
    (None, TypeError),
    (1, TypeError),
    (True, TypeError),
    (b"omit", TypeError),
)

_DIST_PARAMS: dict[str, tuple[tuple[Any, type[Exception]], ...]] = {
    "axis": (
        (2, ValueError),
        (-3, ValueError),
        (10**30, ValueError),
        (1.0, TypeError),
        ("0", TypeError),
        ((0, 1), TypeError),
        (True, TypeError),
    ),
    "base": (
        (-2.0, ValueError),
        (0, ValueError),
        (1, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("2", TypeError),
        (np.array([2.0, 3.0]), TypeError),
        (True, TypeError),
    ),
    "normalize": ((1, TypeError), (None, TypeError), ("yes", TypeError)),
    "keepdims": (
        (1, TypeError),
        (None, TypeError),
        ("yes", TypeError),
        (np.array([True]), TypeError),
    ),
    "nan_policy": _NAN_POLICY_BAD,
}
_DIST_SPECIAL = {
    # Normalising by a sum that is NaN or infinite makes the whole distribution NaN, as SciPy.
    ("p", np.nan): "nan",
    ("p", np.inf): "nan",
    ("p", -np.inf): "ValueError",
}
_PAIR_SPECIAL = {
    **_DIST_SPECIAL,
    ("q", np.nan): "nan",
    ("q", np.inf): "nan",
    ("q", -np.inf): "ValueError",
}
_Q_MISMATCH = ((4, 6), (3, 5), (2, 5), (6,), (3, 4, 6))


def _pairwise(name: str, reference: Callable[[Args], F64]) -> Func:
    return Func(
        name=name,
        func=getattr(crossent, name),
        positional=("p", "q"),
        make=_dist_args,
        reference=reference,
        mismatched={"q": _Q_MISMATCH},
        domain={"p": (-0.5, -1e-30, -np.inf), "q": (-0.5, -1e-30, -np.inf)},
        bad_dtypes={"p": FLOAT8, "q": FLOAT8},
        bad_params=_DIST_PARAMS,
        reduces=False,
        rows=True,
        special=_PAIR_SPECIAL,
    )


_BCE_TARGET_BAD = ("uint16", "int16", "uint64", *FLOAT8)
_TARGET_MISMATCH = ((4, 6), (3, 5), (5,), (4, 5, 1), (1, 5), ())
_REDUCTION_BAD: tuple[tuple[Any, type[Exception]], ...] = (
    ("avg", ValueError),
    ("", ValueError),
    ("MEAN", ValueError),
    (3, TypeError),
    (None, TypeError),
    (b"mean", TypeError),
)

FUNCS: list[Func] = [
    Func(
        name="binary_cross_entropy",
        func=crossent.binary_cross_entropy,
        positional=("input", "target"),
        make=_bce_args,
        reference=_bce_ref,
        mismatched={"target": _TARGET_MISMATCH},
        labels=True,
        broadcast=("weight",),
        bad_dtypes={"input": ("int16", "int64", "bool", *FLOAT8), "target": _BCE_TARGET_BAD},
        domain={
            "input": (1.5, -0.5, np.inf, -np.inf, 1 + 2.0**-23),
            "target": (1.5, -1e-30, np.inf, -np.inf),
        },
        bad_params={"reduction": _REDUCTION_BAD, "nan_policy": _NAN_POLICY_BAD},
        special={
            ("input", np.nan): "nan",
            ("input", np.inf): "ValueError",
            ("input", -np.inf): "ValueError",
            ("target", np.nan): "nan",
            ("target", np.inf): "ValueError",
            ("target", -np.inf): "ValueError",
            ("weight", np.nan): "nan",
            ("weight", np.inf): "inf",
            ("weight", -np.inf): "-inf",
        },
    ),
    Func(
        name="binary_cross_entropy_with_logits",
        func=crossent.binary_cross_entropy_with_logits,
        positional=("input", "target"),
        make=_logits_args,
        reference=_logits_ref,
        mismatched={"target": _TARGET_MISMATCH},
        labels=True,
        broadcast=("weight", "pos_weight"),
        bad_dtypes={"input": ("int16", "int64", "bool", *FLOAT8), "target": _BCE_TARGET_BAD},
        # Float targets may be any real number, as in PyTorch (integer labels must be 0/1).
        domain={},
        bad_params={"reduction": _REDUCTION_BAD, "nan_policy": _NAN_POLICY_BAD},
        special={
            # As PyTorch: +inf gives inf for a target below 1; -inf gives NaN, since the
            # formula's (1 - y) x and log_sigmoid(x) terms are both infinite.
            ("input", np.nan): "nan",
            ("input", np.inf): "inf",
            ("input", -np.inf): "nan",
            ("target", np.nan): "nan",
            # The loss is linear in the target with non-zero slope: infinite (of either sign)
            # or NaN where two infinite terms meet.
            ("target", np.inf): "nonfinite",
            ("target", -np.inf): "nonfinite",
            ("weight", np.nan): "nan",
            ("weight", np.inf): "inf",
            ("weight", -np.inf): "-inf",
            ("pos_weight", np.nan): "nan",
            ("pos_weight", np.inf): "inf",
            ("pos_weight", -np.inf): "-inf",
        },
    ),
]

FUNCS += [
    Func(
        name="entropy",
        func=crossent.entropy,
        positional=("p",),
        make=_entropy_args,
        reference=_entropy_ref,
        domain={"p": (-0.5, -1e-30, -np.inf)},
        bad_dtypes={"p": FLOAT8},
        bad_params=_DIST_PARAMS,
        reduces=False,
        rows=True,
        special=_DIST_SPECIAL,
    ),
    _pairwise("cross_entropy", _cross_entropy_ref),
    _pairwise("kl_divergence", _kl_ref),
    _pairwise("jensen_shannon", _js_ref),
]


def _labels_args(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> Args:
    # Row i's label is i mod C: never the last class, where the special-value tests write.
    n = int(np.prod(shape[:-1]))
    classes = shape[-1] if shape else 1
    # With no classes at all, only ignore_index is a valid label.
    labels = np.arange(n) % max(classes - 1, 1) if classes else np.full(n, -100)
    return {
        "logits": (rng.standard_normal(size=shape) * 3).astype(dtype),
        "target": labels.reshape(shape[:-1]).astype(np.int64),
    }


def _softmax_probs_args(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> Args:
    t = rng.uniform(0.05, 1.0, size=shape)
    t /= t.sum(axis=-1, keepdims=True) if t.ndim else t
    return {
        "logits": (rng.standard_normal(size=shape) * 3).astype(dtype),
        "target": t.astype(dtype),
    }


def _softmax_ref(a: Args) -> F64:
    return reference.softmax_cross_entropy(
        a["logits"],
        a["target"],
        weight=a.get("weight"),
        ignore_index=a.get("ignore_index", -100),
        label_smoothing=float(a.get("label_smoothing", 0.0)),
    )


_SOFTMAX_PARAMS: dict[str, tuple[tuple[Any, type[Exception]], ...]] = {
    "axis": ((2, ValueError), (-3, ValueError), (1.0, TypeError), (None, TypeError)),
    "ignore_index": ((1.5, TypeError), ("x", TypeError), (None, TypeError)),
    "label_smoothing": (
        (-0.1, ValueError),
        (1.5, ValueError),
        (float("nan"), ValueError),
        ("0.1", TypeError),
        (None, TypeError),
    ),
    "reduction": _REDUCTION_BAD,
    # True needs reduction="none" (the registry calls with the default "mean").
    "keepdims": ((1, TypeError), (None, TypeError), ("yes", TypeError), (True, ValueError)),
    "nan_policy": _NAN_POLICY_BAD,
}
_SOFTMAX_LOGITS_SPECIAL = {
    ("logits", np.nan): "nan",
    # lse = log(sum(exp(x))) is inf, and inf - inf is NaN, as in PyTorch.
    ("logits", np.inf): "nan",
}

FUNCS += [
    Func(
        name="softmax_cross_entropy",
        func=crossent.softmax_cross_entropy,
        positional=("logits", "target"),
        make=_labels_args,
        reference=_softmax_ref,
        mismatched={"target": ((5,), (3,), (4, 1), (4, 2))},
        broadcast=("weight",),
        bad_dtypes={"logits": FLOAT8, "target": ("uint64", "bool")},
        domain={"target": (99, -1, -99, 2**40)},
        bad_params=_SOFTMAX_PARAMS,
        rows=True,
        axis_none=False,
        weighted_mean=True,
        # A class of logit -inf has probability 0: finite unless it is the row's label.
        special={**_SOFTMAX_LOGITS_SPECIAL, ("logits", -np.inf): "finite"},
    ),
    Func(
        name="softmax_cross_entropy[probabilities]",
        func=crossent.softmax_cross_entropy,
        positional=("logits", "target"),
        make=_softmax_probs_args,
        reference=_softmax_ref,
        mismatched={"target": ((4, 6), (3, 5), (5,), (4, 5, 1))},
        broadcast=("weight",),
        domain={"target": (-0.5, -1e-30, -np.inf)},
        bad_params=_SOFTMAX_PARAMS,
        rows=True,
        axis_none=False,
        special={
            **_SOFTMAX_LOGITS_SPECIAL,
            # Probability 0 for a class the target gives weight: the loss is inf.
            ("logits", -np.inf): "inf",
            ("target", np.nan): "nan",
            ("target", np.inf): "inf",
            ("target", -np.inf): "ValueError",
        },
    ),
]

BY_NAME = {f.name: f for f in FUNCS}


def ids(funcs: Sequence[Func]) -> list[str]:
    return [f.name for f in funcs]


def array_args(f: Func) -> tuple[str, ...]:
    """Every array argument of `f`: positional ones, then the broadcast parameters."""
    return f.positional + f.broadcast


def full_args(f: Func, rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> Args:
    """Valid arguments including every optional array parameter (broadcast along the last
    axis, one value per column, as class weights are)."""
    args = f.make(rng, shape, dtype)
    for name in f.broadcast:
        args[name] = rng.uniform(0.5, 2.0, size=shape[-1:]).astype(dtype)
    return args


# --- functions outside the PyTorch-shaped model above ----------------------------------------


@dataclass(frozen=True)
class BadCall:
    """One call with one bad argument: it raises `exc`, whose message names `arg`."""

    id: str
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: Args
    exc: type[Exception]
    arg: str


_P = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
_Y = np.array([0, 1, 0])


def _log_loss_call(id: str, exc: type[Exception], arg: str, *args: Any, **kwargs: Any) -> BadCall:
    return BadCall(f"log_loss-{id}", crossent.log_loss, args, kwargs, exc, arg)


def _acc_update(**kwargs: Any) -> Callable[..., Any]:
    def update(*args: Any) -> Any:
        return crossent.LogLossAccumulator(labels=[0, 1]).update(*args, **kwargs)

    return update


_GP = np.array([0.2, 0.8, 0.5, 0.1])
_GY = np.array([0.0, 1.0, 1.0, 0.0])
_GC = np.array([0, 1, 1, 0])


def _grouped(
    id: str, func: Callable[..., Any], exc: type[Exception], arg: str, *args: Any, **kwargs: Any
) -> BadCall:
    return BadCall(f"groups-{id}", func, args, kwargs, exc, arg)


def _grouped_update(cls: Callable[..., Any], **init: Any) -> Callable[..., Any]:
    def update(*args: Any, **kwargs: Any) -> Any:
        return cls(**init).update(*args, **kwargs)

    return update


# `groups=` / `n_groups=` of every function and accumulator that takes them.
_GROUP_CALLS: list[BadCall] = [
    _grouped(
        "float", crossent.binary_cross_entropy, TypeError, "groups", _GP, _GY, groups=_GC * 1.0
    ),
    _grouped("bool", crossent.binary_cross_entropy, TypeError, "groups", _GP, _GY, groups=_GC > 0),
    _grouped("str", crossent.binary_cross_entropy, TypeError, "groups", _GP, _GY, groups="abcd"),
    _grouped(
        "shape", crossent.binary_cross_entropy, ValueError, "groups", _GP, _GY, groups=_GC[:3]
    ),
    _grouped(
        "negative", crossent.binary_cross_entropy, ValueError, "groups", _GP, _GY, groups=-_GC
    ),
    _grouped(
        "above",
        crossent.binary_cross_entropy_with_logits,
        ValueError,
        "groups",
        _GP,
        _GY,
        groups=_GC,
        n_groups=1,
    ),
    _grouped(
        "none",
        crossent.binary_cross_entropy,
        ValueError,
        "groups",
        _GP,
        _GY,
        groups=_GC,
        reduction="none",
    ),
    _grouped(
        "n-str",
        crossent.binary_cross_entropy,
        TypeError,
        "n_groups",
        _GP,
        _GY,
        groups=_GC,
        n_groups="2",
    ),
    _grouped(
        "n-bool",
        crossent.binary_cross_entropy,
        TypeError,
        "n_groups",
        _GP,
        _GY,
        groups=_GC,
        n_groups=True,
    ),
    _grouped(
        "n-negative",
        crossent.binary_cross_entropy,
        ValueError,
        "n_groups",
        _GP,
        _GY,
        groups=_GC,
        n_groups=-1,
    ),
    _grouped(
        "n-alone", crossent.binary_cross_entropy, ValueError, "n_groups", _GP, _GY, n_groups=2
    ),
    _grouped(
        "softmax-shape",
        crossent.softmax_cross_entropy,
        ValueError,
        "groups",
        _P,
        _Y,
        groups=np.zeros((3, 2), int),
    ),
    _grouped(
        "softmax-negative",
        crossent.softmax_cross_entropy,
        ValueError,
        "groups",
        _P,
        _Y,
        groups=[0, -1, 0],
    ),
    _grouped(
        "softmax-float",
        crossent.softmax_cross_entropy,
        TypeError,
        "groups",
        _P,
        _Y,
        groups=[0.0, 1.0, 0.0],
    ),
    _grouped("log_loss-shape", crossent.log_loss, ValueError, "groups", _Y, _P, groups=[0, 1]),
    _grouped(
        "log_loss-above",
        crossent.log_loss,
        ValueError,
        "groups",
        _Y,
        _P,
        groups=[0, 3, 1],
        n_groups=2,
    ),
    _grouped("log_loss-n-alone", crossent.log_loss, ValueError, "n_groups", _Y, _P, n_groups=2),
    _grouped(
        "BinaryCrossEntropyAccumulator-update",
        _grouped_update(crossent.BinaryCrossEntropyAccumulator, n_groups=1),
        ValueError,
        "groups",
        _GP,
        _GY,
        groups=_GC,
    ),
    _grouped(
        "BinaryCrossEntropyWithLogitsAccumulator-n",
        crossent.BinaryCrossEntropyWithLogitsAccumulator,
        TypeError,
        "n_groups",
        n_groups=1.5,
    ),
    _grouped(
        "SoftmaxCrossEntropyAccumulator-update",
        _grouped_update(crossent.SoftmaxCrossEntropyAccumulator),
        ValueError,
        "groups",
        _P,
        _Y,
        groups=[0, 0, -4],
    ),
    _grouped(
        "LogLossAccumulator-update",
        _grouped_update(crossent.LogLossAccumulator, labels=[0, 1]),
        TypeError,
        "groups",
        _Y,
        _P,
        groups=["a", "b", "c"],
    ),
    # `nan_policy=` per group: a wrong value, and a NaN under "raise", name their argument.
    _grouped(
        "nan_policy-value",
        crossent.binary_cross_entropy,
        ValueError,
        "nan_policy",
        _GP,
        _GY,
        groups=_GC,
        nan_policy="drop",
    ),
    _grouped(
        "raise-input",
        crossent.binary_cross_entropy_with_logits,
        ValueError,
        "input",
        np.array([0.2, 0.8, np.nan, 0.1]),
        _GY,
        groups=_GC,
        nan_policy="raise",
    ),
    _grouped(
        "BinaryCrossEntropyAccumulator-raise-sample_weight",
        _grouped_update(crossent.BinaryCrossEntropyAccumulator, nan_policy="raise"),
        ValueError,
        "sample_weight",
        _GP,
        _GY,
        sample_weight=np.array([1.0, np.nan, 1.0, 1.0]),
        groups=_GC,
    ),
    _grouped(
        "softmax-raise-logits",
        crossent.softmax_cross_entropy,
        ValueError,
        "logits",
        np.array([[0.2, 0.8], [0.6, np.nan], [0.5, 0.5]]),
        _Y,
        groups=[0, 1, 0],
        nan_policy="raise",
    ),
    _grouped(
        "SoftmaxCrossEntropyAccumulator-raise-weight",
        _grouped_update(
            crossent.SoftmaxCrossEntropyAccumulator, weight=[1.0, np.nan], nan_policy="raise"
        ),
        ValueError,
        "weight",
        _P,
        _Y,
        groups=[0, 1, 0],
    ),
]


_DIVERGENCE_ACCUMULATORS = (
    crossent.EntropyAccumulator,
    crossent.CrossEntropyAccumulator,
    crossent.KLDivergenceAccumulator,
    crossent.JensenShannonAccumulator,
)
_LOSS_ACCUMULATORS = (
    crossent.BinaryCrossEntropyAccumulator,
    crossent.BinaryCrossEntropyWithLogitsAccumulator,
    crossent.SoftmaxCrossEntropyAccumulator,
)

_SX = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0], [0.0, -1.0, 0.5]])
_SL = np.array([0, 2, 1, 1])


def _sample_weight_calls() -> list[BadCall]:
    """`sample_weight=` of every binary and softmax function and accumulator: a wrong type,
    shape or value names it."""
    bce: dict[str, Callable[..., Any]] = {
        "binary_cross_entropy": crossent.binary_cross_entropy,
        "binary_cross_entropy_with_logits": crossent.binary_cross_entropy_with_logits,
        "BinaryCrossEntropyAccumulator-update": _grouped_update(
            crossent.BinaryCrossEntropyAccumulator
        ),
        "BinaryCrossEntropyWithLogitsAccumulator-update": _grouped_update(
            crossent.BinaryCrossEntropyWithLogitsAccumulator
        ),
    }
    softmax: dict[str, Callable[..., Any]] = {
        "softmax_cross_entropy": crossent.softmax_cross_entropy,
        "SoftmaxCrossEntropyAccumulator-update": _grouped_update(
            crossent.SoftmaxCrossEntropyAccumulator
        ),
    }
    bad: list[tuple[str, Any, type[Exception]]] = [
        ("str", "w", TypeError),
        ("complex", np.ones(4, complex), TypeError),
        ("object", np.array([1.0, None, 1.0, 1.0], dtype=object), TypeError),
        ("short", np.ones(3), ValueError),
        ("long", np.ones((2, 4)), ValueError),
        ("negative", np.array([1.0, -0.5, 1.0, 1.0]), ValueError),
        ("negative-zero-row", np.array([0.0, 0.0, 0.0, -1e-300]), ValueError),
    ]
    calls = []
    for name, func in bce.items():
        for id, value, exc in bad:
            calls.append(
                BadCall(
                    f"sample_weight-{name}-{id}",
                    func,
                    (_GP, _GY),
                    {"sample_weight": value},
                    exc,
                    "sample_weight",
                )
            )
        calls.append(
            BadCall(
                f"sample_weight-{name}-groups-negative",
                func,
                (_GP, _GY),
                {"sample_weight": np.array([1.0, 1.0, -2.0, 1.0]), "groups": _GC},
                ValueError,
                "sample_weight",
            )
        )
    for name, func in softmax.items():
        for id, value, exc in bad:
            calls.append(
                BadCall(
                    f"sample_weight-{name}-{id}",
                    func,
                    (_SX, _SL),
                    {"sample_weight": value},
                    exc,
                    "sample_weight",
                )
            )
        calls.append(
            BadCall(
                f"sample_weight-{name}-per-class",
                func,
                (_SX, _SL),
                {"sample_weight": np.ones(3)},
                ValueError,
                "sample_weight",
            )
        )
        calls.append(
            BadCall(
                f"sample_weight-{name}-ignored-negative",
                func,
                (_SX, np.array([0, -100, 1, 1])),
                {"sample_weight": np.array([1.0, -1.0, 1.0, 1.0])},
                ValueError,
                "sample_weight",
            )
        )
        calls.append(
            BadCall(
                f"sample_weight-{name}-groups-negative",
                func,
                (_SX, _SL),
                {"sample_weight": np.array([1.0, 1.0, -2.0, 1.0]), "groups": [0, 1, 0, 1]},
                ValueError,
                "sample_weight",
            )
        )
    return calls


BAD_CALLS: list[BadCall] = [
    *_GROUP_CALLS,
    *_sample_weight_calls(),
    *(
        BadCall(
            f"{cls.__name__}-nan_policy-{value!r}",
            cls,
            (),
            {"nan_policy": value, "normalize": False},
            exc,
            "nan_policy",
        )
        for cls in _DIVERGENCE_ACCUMULATORS
        for value, exc in _NAN_POLICY_BAD
    ),
    *(
        BadCall(
            f"{cls.__name__}-nan_policy-{value!r}",
            cls,
            (),
            {"nan_policy": value},
            exc,
            "nan_policy",
        )
        for cls in _LOSS_ACCUMULATORS
        for value, exc in _NAN_POLICY_BAD
    ),
    _log_loss_call("normalize-str", TypeError, "normalize", _Y, _P, normalize="yes"),
    _log_loss_call("normalize-none", TypeError, "normalize", _Y, _P, normalize=None),
    _log_loss_call("weight-scalar", TypeError, "sample_weight", _Y, _P, sample_weight=2.0),
    _log_loss_call("weight-str", TypeError, "sample_weight", _Y, _P, sample_weight="w"),
    _log_loss_call(
        "weight-complex", TypeError, "sample_weight", _Y, _P, sample_weight=np.ones(3, complex)
    ),
    _log_loss_call("weight-2d", ValueError, "sample_weight", _Y, _P, sample_weight=np.ones((3, 1))),
    _log_loss_call("weight-short", ValueError, "sample_weight", _Y, _P, sample_weight=np.ones(2)),
    _log_loss_call(
        "weight-negative", ValueError, "sample_weight", _Y, _P, sample_weight=[1.0, -1.0, 1.0]
    ),
    _log_loss_call(
        "weight-nan", ValueError, "sample_weight", _Y, _P, sample_weight=[1.0, np.nan, 1.0]
    ),
    _log_loss_call("weight-zero", ValueError, "sample_weight", _Y, _P, sample_weight=np.zeros(3)),
    _log_loss_call("labels-one", ValueError, "labels", _Y, _P, labels=[0]),
    _log_loss_call("labels-empty", ValueError, "labels", _Y, _P, labels=[]),
    _log_loss_call("labels-2d", ValueError, "labels", _Y, _P, labels=[[0, 1], [2, 3]]),
    _log_loss_call("labels-missing", ValueError, "y_true", [0, 2, 1], _P, labels=[0, 1]),
    _log_loss_call("labels-count", ValueError, "y_pred", _Y, _P, labels=[0, 1, 2]),
    _log_loss_call("labels-complex", TypeError, "labels", _Y, _P, labels=np.ones(2, complex)),
    _log_loss_call("y_pred-scalar", TypeError, "y_pred", _Y, 0.5),
    _log_loss_call("y_pred-none", TypeError, "y_pred", _Y, None),
    _log_loss_call("y_pred-str", ValueError, "y_pred", _Y, np.array([["a", "b"]] * 3)),
    _log_loss_call("y_pred-complex", ValueError, "y_pred", _Y, _P.astype(complex)),
    _log_loss_call("y_pred-3d", ValueError, "y_pred", _Y, _P[:, :, None]),
    _log_loss_call("y_pred-above-1", ValueError, "y_pred", _Y, _P * 2),
    _log_loss_call("y_pred-nan", ValueError, "y_pred", _Y, np.where(_P == 0.6, np.nan, _P)),
    _log_loss_call("y_pred-ragged", TypeError, "y_pred", _Y, [[0.5, 0.5], [1.0]]),
    _log_loss_call("y_true-continuous", ValueError, "y_true", [0.5, 1.0, 0.0], _P),
    _log_loss_call("y_true-nan", ValueError, "y_true", [np.nan, 1.0, 0.0], _P),
    _log_loss_call("y_true-one-class", ValueError, "y_true", [1, 1, 1], _P),
    _log_loss_call("y_true-three-classes", ValueError, "y_true", [0, 1, 2], _P),
    _log_loss_call("y_true-length", ValueError, "y_true", [0, 1], _P),
    _log_loss_call("y_true-indicator", ValueError, "y_true", np.eye(3, dtype=int)[:, :2], _P),
    _log_loss_call("y_true-complex", TypeError, "y_true", np.zeros(3, complex), _P),
    _log_loss_call("y_true-mixed", ValueError, "y_true", np.array(["a", 1, 1], dtype=object), _P),
    _log_loss_call("y_true-empty", ValueError, "y_pred", [], np.zeros((0, 2))),
    BadCall(
        "LogLossAccumulator-normalize",
        crossent.LogLossAccumulator,
        (),
        {"labels": [0, 1], "normalize": 1},
        TypeError,
        "normalize",
    ),
    BadCall(
        "LogLossAccumulator-labels",
        crossent.LogLossAccumulator,
        (),
        {"labels": [3]},
        ValueError,
        "labels",
    ),
    BadCall(
        "LogLossAccumulator-update-y_true", _acc_update(), (_Y + 1, _P), {}, ValueError, "y_true"
    ),
    BadCall(
        "LogLossAccumulator-update-y_pred", _acc_update(), (_Y, _P * 3), {}, ValueError, "y_pred"
    ),
    BadCall(
        "LogLossAccumulator-update-sample_weight",
        _acc_update(sample_weight=[1, 2]),
        (_Y, _P),
        {},
        ValueError,
        "sample_weight",
    ),
]
