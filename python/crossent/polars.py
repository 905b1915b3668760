"""crossent's losses as polars expressions: ``import crossent.polars`` registers the
expression namespace ``crossent``.

>>> import numpy as np, polars as pl
>>> import crossent.polars  # registers pl.Expr.crossent
>>> df = pl.DataFrame({
...     "segment": ["a", "a", "b", "b"],
...     "p": [0.9, 0.2, 0.6, 0.7],
...     "y": [1, 0, 1, 1],
... })
>>> loss = pl.col("p").crossent.binary_cross_entropy(pl.col("y"))
>>> out = df.group_by("segment", maintain_order=True).agg(loss.alias("bce"))
>>> out["bce"].round(6).to_list()
[0.164252, 0.43375]
>>> df.select(loss.round(6)).item() == round(crossent.binary_cross_entropy(df["p"], df["y"]), 6)
True

Every method computes each row's loss with crossent (one call per batch that polars hands
over, reading the columns in place: ``Series.to_numpy()`` of a numeric column without
nulls is a view of its Arrow buffer) and, for ``reduction="mean"`` or ``"sum"``, lets polars
aggregate those losses in float64: over the whole column in ``select``, per group in
``group_by(...).agg(...)``, per window with ``over(...)``, in eager and lazy frames alike.
The result therefore equals crossent's own reduction up to the order of the float64 sum
(about 1e-15 relative), not bit for bit. ``reduction="none"`` gives one loss per row
(``with_columns``). Every result is Float64 (a float32 loss is widened exactly). A null in an
operand raises ``ValueError`` naming the argument.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

import crossent
from crossent._core import _nan_policy

try:
    import polars as pl
except ImportError as e:  # pragma: no cover - exercised only without polars
    raise ImportError(
        "crossent.polars needs polars (pip install polars): it registers crossent's losses "
        "as a polars expression namespace"
    ) from e

__all__ = ["CrossentExpr"]

_NanPolicy = Literal["propagate", "omit", "raise"]


def _expr(value: pl.Expr | str) -> pl.Expr:
    return pl.col(value) if isinstance(value, str) else value


def _array(series: pl.Series, arg: str) -> Any:
    """`series` as an ndarray read in place (a view of its Arrow buffer for a numeric column
    in one chunk); a chunked one goes to crossent as it is (it reads Arrow streams chunk by
    chunk). A null raises ``ValueError`` naming `arg`."""
    nulls = series.null_count()
    if nulls:
        first = int(series.is_null().arg_true()[0])
        raise ValueError(
            f"'{arg}' holds a null at position {first} of the batch: crossent does not read "
            "nulls (its nan_policy applies to NaN values), so drop or fill the nulls first "
            "(drop_nulls() / fill_null(float('nan')))"
        )
    if series.n_chunks() > 1:
        return series
    return series.to_numpy()


def _check_reduction(reduction: str) -> str:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"'reduction' must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def _per_row(
    operands: Sequence[tuple[str, pl.Expr | None]], compute: Callable[..., Any]
) -> pl.Expr:
    """One float64 value per row: `compute(**arrays)` over each batch of the `operands`
    given (a float32 result is widened, exactly; a Series is taken as it is, nulls
    included)."""
    given = [(name, e) for name, e in operands if e is not None]
    names = [name for name, _ in given]

    def run(batch: Sequence[pl.Series]) -> pl.Series:
        arrays = {name: _array(s, name) for name, s in zip(names, batch, strict=True)}
        out = compute(**arrays)
        if isinstance(out, pl.Series):  # with nulls (rows left out, see `_omitted`)
            return out.cast(pl.Float64)
        return pl.Series(np.asarray(out, dtype=np.float64))

    return pl.map_batches([e for _, e in given], run, return_dtype=pl.Float64, is_elementwise=True)


def _reduce(
    per_row: pl.Expr,
    reduction: str,
    denominator: pl.Expr | None = None,
    nan_policy: str = "propagate",
) -> pl.Expr:
    """`per_row` reduced as crossent reduces it. Under ``"omit"`` the rows left out are null
    in `per_row` (``_omitted``), which polars' ``sum`` and ``mean`` skip; a mean over no row
    is NaN (0/0), as crossent's, where polars gives null."""
    if reduction == "none":
        return per_row
    total = per_row.sum()
    if reduction == "sum":
        return total
    if denominator is None:
        mean = per_row.mean()
        return mean.fill_null(float("nan")) if nan_policy == "omit" else mean
    return total / denominator.sum()


def _nan_rows(rows: int, operands: Sequence[Any]) -> np.ndarray[Any, Any]:
    """Which of the `rows` rows of a batch hold a NaN in one of the float `operands` (arrays
    of the batch's rows, or None): the rows ``nan_policy="omit"`` leaves out. An operand
    is scanned (and a flag array made) only when its minimum says it holds a NaN."""
    left = np.zeros(rows, dtype=bool)
    for a in operands:
        if a is None:
            continue
        a = np.asarray(a)
        if a.dtype.kind != "f" or a.size == 0 or not np.isnan(np.min(a)):
            continue
        nan = np.isnan(a)
        left |= nan.reshape(len(nan), -1).any(axis=1) if nan.ndim > 1 else nan
    return left


def _omitted(loss: Any, operands: Sequence[Any]) -> pl.Series:
    """The per-row losses `loss` of a call under ``nan_policy="omit"`` (NaN where a row is
    left out) as a Float64 Series with null at the rows left out (``_nan_rows``), which
    polars' ``sum`` and ``mean`` skip. Looked for only when a loss is NaN."""
    out = pl.Series(np.asarray(loss, dtype=np.float64))
    if not out.is_nan().any():
        return out
    return out.scatter(np.flatnonzero(_nan_rows(len(out), operands)), None)


@pl.api.register_expr_namespace("crossent")
class CrossentExpr:
    """The ``crossent`` namespace of a polars expression (the loss's input column)."""

    def __init__(self, expr: pl.Expr) -> None:
        self._expr = expr

    def _elementwise(
        self,
        loss: Callable[..., Any],
        target: pl.Expr | str,
        weight: pl.Expr | str | None,
        reduction: str,
        nan_policy: str,
        **fixed: Any,
    ) -> pl.Expr:
        """A binary loss of this column against `target` (and `weight`), per row, reduced:
        `loss(input, target, weight=..., reduction="none", nan_policy=..., **fixed)`."""
        _check_reduction(reduction)
        nan_policy = _nan_policy(nan_policy)  # checked now, as the functions check it

        def compute(input: Any, target: Any, weight: Any = None) -> Any:
            out = loss(
                input, target, weight=weight, reduction="none", nan_policy=nan_policy, **fixed
            )
            if nan_policy != "omit" or reduction == "none":
                return out
            return _omitted(out, [input, target, weight, *fixed.values()])

        per_row = _per_row(
            [
                ("input", self._expr),
                ("target", _expr(target)),
                ("weight", None if weight is None else _expr(weight)),
            ],
            compute,
        )
        return _reduce(per_row, reduction, nan_policy=nan_policy)

    def binary_cross_entropy(
        self,
        target: pl.Expr | str,
        *,
        weight: pl.Expr | str | None = None,
        reduction: str = "mean",
        nan_policy: _NanPolicy = "propagate",
    ) -> pl.Expr:
        """:func:`crossent.binary_cross_entropy` of this column of probabilities against
        `target` (probabilities, or labels 0/1 of an integer or boolean column).

        ``"mean"`` divides by the number of rows (of the group), as crossent and PyTorch do,
        also with a `weight`. `nan_policy` as in the function: ``"omit"`` leaves a row whose
        input, target or weight is NaN out of the sum and of the count (a group left with
        no row gives NaN for a mean; with ``reduction="none"`` its loss is NaN);
        ``"raise"`` raises :class:`crossent.DomainError` at the first NaN of a batch
        (polars re-raises it with its message, which names the argument and the position).

        >>> import polars as pl, crossent.polars
        >>> df = pl.DataFrame({"p": [0.9, float("nan"), 0.6], "y": [1, 0, 1]})
        >>> loss = pl.col("p").crossent.binary_cross_entropy("y", nan_policy="omit")
        >>> round(df.select(loss).item(), 6)
        0.308093"""
        return self._elementwise(
            crossent.binary_cross_entropy, target, weight, reduction, nan_policy
        )

    def binary_cross_entropy_with_logits(
        self,
        target: pl.Expr | str,
        *,
        weight: pl.Expr | str | None = None,
        pos_weight: float | None = None,
        reduction: str = "mean",
        nan_policy: _NanPolicy = "propagate",
    ) -> pl.Expr:
        """:func:`crossent.binary_cross_entropy_with_logits` of this column of logits
        against `target`; `pos_weight` is the positive class's weight (a number).
        `nan_policy` as for :meth:`binary_cross_entropy`.

        >>> import polars as pl, crossent.polars
        >>> df = pl.DataFrame({"x": [2.0, -1.0, 0.5], "y": [1.0, float("nan"), 1.0]})
        >>> loss = pl.col("x").crossent.binary_cross_entropy_with_logits("y", nan_policy="omit")
        >>> round(df.select(loss).item(), 6)
        0.300502"""
        pw = None if pos_weight is None else np.asarray([pos_weight], dtype=np.float64)
        return self._elementwise(
            crossent.binary_cross_entropy_with_logits,
            target,
            weight,
            reduction,
            nan_policy,
            pos_weight=pw,
        )

    def softmax_cross_entropy(
        self,
        target: pl.Expr | str,
        *,
        weight: Sequence[float] | np.ndarray[Any, Any] | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        nan_policy: _NanPolicy = "propagate",
    ) -> pl.Expr:
        """:func:`crossent.softmax_cross_entropy` of this column of logits (a
        ``pl.Array(Float32 | Float64, C)`` column, one row of C classes per row) against
        `target`: class indices (an integer column) or class probabilities (an array column
        like the logits). `weight` holds one weight per class.

        ``"mean"`` divides by the sum of ``weight[y]`` over the rows whose class is not
        `ignore_index` (their number without `weight`), as PyTorch; by the number of rows
        for class probabilities. `nan_policy` as in the function: ``"omit"`` leaves a row
        whose logits (or target probabilities) hold a NaN out, as an ignored row is left
        out (of the sum and of the mean's denominator; with ``reduction="none"`` its loss is
        NaN); ``"raise"`` raises :class:`crossent.DomainError` at the first NaN of a batch
        (as for :meth:`binary_cross_entropy`).

        >>> import numpy as np, polars as pl, crossent.polars
        >>> x = np.array([[2.0, 0.5, -1.0], [0.1, np.nan, 3.0], [0.1, 0.2, 3.0]])
        >>> df = pl.DataFrame({"x": x, "y": [0, 2, 2]})
        >>> loss = pl.col("x").crossent.softmax_cross_entropy("y", nan_policy="omit")
        >>> round(df.select(loss).item(), 6)
        0.175456"""
        _check_reduction(reduction)
        nan_policy = _nan_policy(nan_policy)  # checked now, as the function checks it
        w = None if weight is None else np.asarray(weight, dtype=np.float64)
        target_expr = _expr(target)
        omit = nan_policy == "omit" and reduction != "none"

        def compute(logits: Any, target: Any) -> Any:
            out = crossent.softmax_cross_entropy(
                logits,
                target,
                weight=w,
                ignore_index=ignore_index,
                label_smoothing=label_smoothing,
                reduction="none",
                nan_policy=nan_policy,
            )
            return _omitted(out, [logits, target]) if omit else out

        per_row = _per_row(
            [("logits", self._expr), ("target", target_expr)],
            compute,
        )
        if reduction != "mean":
            return _reduce(per_row, reduction)

        def denominator(logits: Any, target: Any) -> Any:
            y = np.asarray(target)
            if y.ndim == 2:  # class probabilities: one per row
                out = np.ones(len(y))
            else:
                kept = y != ignore_index
                out = kept.astype(np.float64) if w is None else np.zeros(len(y))
                if w is not None:
                    out[kept] = w[y[kept]]
            if omit:
                # A row left out for a NaN is out of the denominator, as an ignored row.
                out[_nan_rows(len(out), [logits, target])] = 0.0
            return out

        den = _per_row([("logits", self._expr), ("target", target_expr)], denominator)
        return _reduce(per_row, reduction, den)

    def _divergence(
        self,
        name: str,
        q: pl.Expr | str | None,
        base: float | None,
        normalize: bool,
        nan_policy: str,
    ) -> pl.Expr:
        func = getattr(crossent, name)
        nan_policy = _nan_policy(nan_policy)  # checked now, as the functions check it

        def compute(p: Any, q: Any = None) -> Any:
            args = (p,) if q is None else (p, q)
            return func(*args, axis=-1, base=base, normalize=normalize, nan_policy=nan_policy)

        return _per_row(
            [("p", self._expr), ("q", None if q is None else _expr(q))],
            compute,
        )

    def entropy(
        self,
        *,
        base: float | None = None,
        normalize: bool = True,
        nan_policy: _NanPolicy = "propagate",
    ) -> pl.Expr:
        """:func:`crossent.entropy` of each row of this ``pl.Array`` column (one
        distribution per row): one value per row."""
        return self._divergence("entropy", None, base, normalize, nan_policy)

    def cross_entropy(
        self,
        q: pl.Expr | str,
        *,
        base: float | None = None,
        normalize: bool = True,
        nan_policy: _NanPolicy = "propagate",
    ) -> pl.Expr:
        """:func:`crossent.cross_entropy` of each row of this ``pl.Array`` column against the
        same row of `q`: one value per row."""
        return self._divergence("cross_entropy", q, base, normalize, nan_policy)

    def kl_divergence(
        self,
        q: pl.Expr | str,
        *,
        base: float | None = None,
        normalize: bool = True,
        nan_policy: _NanPolicy = "propagate",
    ) -> pl.Expr:
        """:func:`crossent.kl_divergence` of each row of this ``pl.Array`` column from the
        same row of `q`: one value per row."""
        return self._divergence("kl_divergence", q, base, normalize, nan_policy)

    def jensen_shannon(
        self,
        q: pl.Expr | str,
        *,
        base: float | None = None,
        normalize: bool = True,
        nan_policy: _NanPolicy = "propagate",
    ) -> pl.Expr:
        """:func:`crossent.jensen_shannon` between each row of this ``pl.Array`` column and
        the same row of `q`: one value per row."""
        return self._divergence("jensen_shannon", q, base, normalize, nan_policy)
