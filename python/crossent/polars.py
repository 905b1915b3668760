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
    given (a float32 result is widened, exactly)."""
    given = [(name, e) for name, e in operands if e is not None]
    names = [name for name, _ in given]

    def run(batch: Sequence[pl.Series]) -> pl.Series:
        arrays = {name: _array(s, name) for name, s in zip(names, batch, strict=True)}
        return pl.Series(np.asarray(compute(**arrays), dtype=np.float64))

    return pl.map_batches([e for _, e in given], run, return_dtype=pl.Float64, is_elementwise=True)


def _reduce(per_row: pl.Expr, reduction: str, denominator: pl.Expr | None = None) -> pl.Expr:
    if reduction == "none":
        return per_row
    total = per_row.sum()
    if reduction == "sum":
        return total
    if denominator is None:
        return per_row.mean()
    return total / denominator.sum()


@pl.api.register_expr_namespace("crossent")
class CrossentExpr:
    """The ``crossent`` namespace of a polars expression (the loss's input column)."""

    def __init__(self, expr: pl.Expr) -> None:
        self._expr = expr

    def _elementwise(
        self,
        compute: Callable[..., Any],
        target: pl.Expr | str,
        weight: pl.Expr | str | None,
        reduction: str,
    ) -> pl.Expr:
        """A binary loss of this column against `target` (and `weight`), per row, reduced."""
        per_row = _per_row(
            [
                ("input", self._expr),
                ("target", _expr(target)),
                ("weight", None if weight is None else _expr(weight)),
            ],
            compute,
        )
        return _reduce(per_row, reduction)

    def binary_cross_entropy(
        self,
        target: pl.Expr | str,
        *,
        weight: pl.Expr | str | None = None,
        reduction: str = "mean",
    ) -> pl.Expr:
        """:func:`crossent.binary_cross_entropy` of this column of probabilities against
        `target` (probabilities, or labels 0/1 of an integer or boolean column).

        ``"mean"`` divides by the number of rows (of the group), as crossent and PyTorch do,
        also with a `weight`."""
        _check_reduction(reduction)

        def compute(input: Any, target: Any, weight: Any = None) -> Any:
            return crossent.binary_cross_entropy(input, target, weight=weight, reduction="none")

        return self._elementwise(compute, target, weight, reduction)

    def binary_cross_entropy_with_logits(
        self,
        target: pl.Expr | str,
        *,
        weight: pl.Expr | str | None = None,
        pos_weight: float | None = None,
        reduction: str = "mean",
    ) -> pl.Expr:
        """:func:`crossent.binary_cross_entropy_with_logits` of this column of logits
        against `target`; `pos_weight` is the positive class's weight (a number)."""
        _check_reduction(reduction)
        pw = None if pos_weight is None else np.asarray([pos_weight], dtype=np.float64)

        def compute(input: Any, target: Any, weight: Any = None) -> Any:
            return crossent.binary_cross_entropy_with_logits(
                input, target, weight=weight, pos_weight=pw, reduction="none"
            )

        return self._elementwise(compute, target, weight, reduction)

    def softmax_cross_entropy(
        self,
        target: pl.Expr | str,
        *,
        weight: Sequence[float] | np.ndarray[Any, Any] | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> pl.Expr:
        """:func:`crossent.softmax_cross_entropy` of this column of logits (a
        ``pl.Array(Float32 | Float64, C)`` column, one row of C classes per row) against
        `target`: class indices (an integer column) or class probabilities (an array column
        like the logits). `weight` holds one weight per class.

        ``"mean"`` divides by the sum of ``weight[y]`` over the rows whose class is not
        `ignore_index` (their number without `weight`), as PyTorch; by the number of rows
        for class probabilities."""
        _check_reduction(reduction)
        w = None if weight is None else np.asarray(weight, dtype=np.float64)
        target_expr = _expr(target)

        def compute(logits: Any, target: Any) -> Any:
            return crossent.softmax_cross_entropy(
                logits,
                target,
                weight=w,
                ignore_index=ignore_index,
                label_smoothing=label_smoothing,
                reduction="none",
            )

        per_row = _per_row(
            [("logits", self._expr), ("target", target_expr)],
            compute,
        )
        if reduction != "mean":
            return _reduce(per_row, reduction)

        def denominator(target: Any) -> Any:
            y = np.asarray(target)
            if y.ndim == 2:  # class probabilities: one per row
                return np.ones(len(y))
            kept = y != ignore_index
            if w is None:
                return kept.astype(np.float64)
            out = np.zeros(len(y))
            out[kept] = w[y[kept]]
            return out

        return _reduce(per_row, reduction, _per_row([("target", target_expr)], denominator))

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
