from typing import Any, Literal, Protocol, Self, SupportsIndex, final, overload

import numpy as np
import numpy.typing as npt

__all__ = [
    "BLOCK",
    "CHUNK",
    "BinaryCrossEntropyAccumulator",
    "BinaryCrossEntropyWithLogitsAccumulator",
    "CrossEntropyAccumulator",
    "DomainError",
    "EntropyAccumulator",
    "JensenShannonAccumulator",
    "KLDivergenceAccumulator",
    "LogLossAccumulator",
    "SoftmaxCrossEntropyAccumulator",
    "__version__",
    "_isa",
    "_log_loss",
    "_log_loss_groups",
    "_nan_policy",
    "_reduction",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
    "cross_entropy",
    "entropy",
    "get_num_threads",
    "jensen_shannon",
    "kl_divergence",
    "set_num_threads",
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
]

__version__: str
BLOCK: int
CHUNK: int

class DomainError(ValueError):
    """A value outside a function's domain: a ``ValueError`` that says which, and where.

    Raised for a negative probability or target, a class index out of range, a probability
    outside [0, 1], ... by every function, gradient and accumulator; ``except ValueError``
    catches it too.

    Attributes
    ----------
    argument : str
        The name of the argument that holds the value (``'p'``, ``'target'``, ...).
    index : tuple of int or None
        The position of the first such value in that argument's array, as the message
        gives it: ``arr[index] == value``. ``None`` only when the value could not be found
        again (another thread changed the array while the call read it).
    value : int, float or None
        The value found there, as a Python number (``None`` with ``index``).

    Examples
    --------
    >>> import crossent
    >>> try:
    ...     crossent.entropy([0.5, -0.25, 0.75])
    ... except crossent.DomainError as e:
    ...     print(e.argument, e.index, e.value)
    p (1,) -0.25
    """

    argument: str
    index: tuple[int, ...] | None
    value: int | float | None

class _ArrowArray(Protocol):
    def __arrow_c_array__(
        self, requested_schema: object | None = None
    ) -> tuple[object, object]: ...

class _ArrowStream(Protocol):
    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...

# What every array argument takes: what NumPy converts, and Arrow columns.
_ArrayLike = npt.ArrayLike | _ArrowArray | _ArrowStream
_Reduction = Literal["mean", "sum", "none"]
_NanPolicy = Literal["propagate", "omit", "raise"]
_FloatArray = npt.NDArray[np.float32] | npt.NDArray[np.float64]

@overload
def binary_cross_entropy(
    input: _ArrayLike,
    target: _ArrayLike,
    *,
    weight: _ArrayLike | None = None,
    sample_weight: _ArrayLike | None = None,
    reduction: Literal["mean", "sum"] = "mean",
    out: None = None,
    groups: _ArrayLike,
    n_groups: SupportsIndex | None = None,
    nan_policy: _NanPolicy = "propagate",
) -> npt.NDArray[np.float64]:
    """Binary cross-entropy between predicted probabilities and targets.

    Each element's loss is ``-w * (y * max(log p, -100) + (1 - y) * max(log(1 - p), -100))``,
    exactly as :func:`torch.nn.functional.binary_cross_entropy` defines it (``log(1 - p)`` is
    computed as ``log1p(-p)``).

    Parameters
    ----------
    input : array_like of float16, bfloat16, float32 or float64
        Probabilities in [0, 1], any shape and layout (read in place, never copied; float16
        and bfloat16, also PyTorch's, are computed in float32).
    target : array_like
        Same shape as ``input``: probabilities in [0, 1] (float16/bfloat16/float32/float64,
        taken in ``input``'s precision), or hard labels 0/1 (bool, uint8, int8, int32, int64),
        read natively without conversion.
    weight : array_like, optional
        Per-element weight, broadcast to ``input``'s shape (float16/bfloat16/float32/float64
        read in place, in ``input``'s precision).
    sample_weight : array_like, optional
        scikit-learn's sample weights ``sw``, broadcast to ``input``'s shape and read in place
        like ``weight``: each loss (already scaled by ``weight``) is multiplied by its ``sw``,
        and ``"mean"`` becomes the weighted average ``sum(sw * loss) / sum(sw)``
        (``numpy.average``; NaN when ``sum(sw)`` is 0). A negative weight raises
        :class:`crossent.DomainError`; NaN propagates. See :doc:`/guide/sample-weight`.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` divides the sum by the number of elements (NaN for empty input, as torch),
        or by ``sum(sample_weight)``; ``"sum"`` returns the sum (0.0 for empty input);
        ``"none"`` returns every element's loss.
    out : numpy.ndarray, optional
        With ``reduction="none"``: the array (``input``'s dtype and shape) to write into.
    nan_policy : {"propagate", "omit", "raise"}, default "propagate"
        What a NaN in any operand (``input``, a float ``target``, ``weight``,
        ``pos_weight``, ``sample_weight``) does: ``"propagate"`` lets it into the result;
        ``"omit"`` leaves each element with a NaN operand out of the sum, of the count the
        mean divides by and of ``sum(sample_weight)`` (with ``"none"`` its loss is NaN);
        ``"raise"`` raises :class:`crossent.DomainError` naming the first operand that holds
        a NaN and its first position. Checked in the same single pass. With ``groups``, it
        applies within each group (a group left with no element has a NaN mean).

    Returns
    -------
    float or numpy.ndarray
        A Python float (accumulated in float64, also for float32 input) for ``"mean"`` and
        ``"sum"``; an array of ``input``'s shape and dtype for ``"none"``.

    Raises ``ValueError`` for a probability or target outside [0, 1] (naming the first
    position), mismatched shapes or an unknown reduction; ``TypeError`` for unsupported dtypes.
    NaN propagates into the result unless ``nan_policy`` says otherwise (torch raises).

    Examples
    --------
    >>> import numpy as np, crossent
    >>> p = np.array([0.9, 0.2, 0.6], dtype=np.float32)
    >>> y = np.array([True, False, True])
    >>> round(crossent.binary_cross_entropy(p, y), 6)
    0.279777
    >>> crossent.binary_cross_entropy(p, y, reduction="none").round(4)
    array([0.1054, 0.2231, 0.5108], dtype=float32)

    With ``sample_weight`` the mean is ``numpy.average`` of the losses (scikit-learn's):

    >>> sw = np.array([1.0, 0.0, 3.0])
    >>> losses = crossent.binary_cross_entropy(p, y, reduction="none").astype(float)
    >>> bool(np.isclose(crossent.binary_cross_entropy(p, y, sample_weight=sw),
    ...                 np.average(losses, weights=sw)))
    True

    ``nan_policy="omit"`` leaves out the elements holding a NaN, from the count too:

    >>> q = np.array([0.9, np.nan, 0.6], dtype=np.float32)
    >>> round(crossent.binary_cross_entropy(q, y, nan_policy="omit"), 6)
    0.308093
    """

@overload
def binary_cross_entropy(
    input: _ArrayLike,
    target: _ArrayLike,
    *,
    weight: _ArrayLike | None = None,
    sample_weight: _ArrayLike | None = None,
    reduction: Literal["mean", "sum"] = "mean",
    out: None = None,
    groups: None = None,
    n_groups: None = None,
    nan_policy: _NanPolicy = "propagate",
) -> float:
    """Binary cross-entropy between predicted probabilities and targets.

    Each element's loss is ``-w * (y * max(log p, -100) + (1 - y) * max(log(1 - p), -100))``,
    exactly as :func:`torch.nn.functional.binary_cross_entropy` defines it (``log(1 - p)`` is
    computed as ``log1p(-p)``).

    Parameters
    ----------
    input : array_like of float16, bfloat16, float32 or float64
        Probabilities in [0, 1], any shape and layout (read in place, never copied; float16
        and bfloat16, also PyTorch's, are computed in float32).
    target : array_like
        Same shape as ``input``: probabilities in [0, 1] (float16/bfloat16/float32/float64,
        taken in ``input``'s precision), or hard labels 0/1 (bool, uint8, int8, int32, int64),
        read natively without conversion.
    weight : array_like, optional
        Per-element weight, broadcast to ``input``'s shape (float16/bfloat16/float32/float64
        read in place, in ``input``'s precision).
    sample_weight : array_like, optional
        scikit-learn's sample weights ``sw``, broadcast to ``input``'s shape and read in place
        like ``weight``: each loss (already scaled by ``weight``) is multiplied by its ``sw``,
        and ``"mean"`` becomes the weighted average ``sum(sw * loss) / sum(sw)``
        (``numpy.average``; NaN when ``sum(sw)`` is 0). A negative weight raises
        :class:`crossent.DomainError`; NaN propagates. See :doc:`/guide/sample-weight`.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` divides the sum by the number of elements (NaN for empty input, as torch),
        or by ``sum(sample_weight)``; ``"sum"`` returns the sum (0.0 for empty input);
        ``"none"`` returns every element's loss.
    out : numpy.ndarray, optional
        With ``reduction="none"``: the array (``input``'s dtype and shape) to write into.
    nan_policy : {"propagate", "omit", "raise"}, default "propagate"
        What a NaN in any operand (``input``, a float ``target``, ``weight``,
        ``pos_weight``, ``sample_weight``) does: ``"propagate"`` lets it into the result;
        ``"omit"`` leaves each element with a NaN operand out of the sum, of the count the
        mean divides by and of ``sum(sample_weight)`` (with ``"none"`` its loss is NaN);
        ``"raise"`` raises :class:`crossent.DomainError` naming the first operand that holds
        a NaN and its first position. Checked in the same single pass. With ``groups``, it
        applies within each group (a group left with no element has a NaN mean).

    Returns
    -------
    float or numpy.ndarray
        A Python float (accumulated in float64, also for float32 input) for ``"mean"`` and
        ``"sum"``; an array of ``input``'s shape and dtype for ``"none"``.

    Raises ``ValueError`` for a probability or target outside [0, 1] (naming the first
    position), mismatched shapes or an unknown reduction; ``TypeError`` for unsupported dtypes.
    NaN propagates into the result unless ``nan_policy`` says otherwise (torch raises).

    Examples
    --------
    >>> import numpy as np, crossent
    >>> p = np.array([0.9, 0.2, 0.6], dtype=np.float32)
    >>> y = np.array([True, False, True])
    >>> round(crossent.binary_cross_entropy(p, y), 6)
    0.279777
    >>> crossent.binary_cross_entropy(p, y, reduction="none").round(4)
    array([0.1054, 0.2231, 0.5108], dtype=float32)

    With ``sample_weight`` the mean is ``numpy.average`` of the losses (scikit-learn's):

    >>> sw = np.array([1.0, 0.0, 3.0])
    >>> losses = crossent.binary_cross_entropy(p, y, reduction="none").astype(float)
    >>> bool(np.isclose(crossent.binary_cross_entropy(p, y, sample_weight=sw),
    ...                 np.average(losses, weights=sw)))
    True

    ``nan_policy="omit"`` leaves out the elements holding a NaN, from the count too:

    >>> q = np.array([0.9, np.nan, 0.6], dtype=np.float32)
    >>> round(crossent.binary_cross_entropy(q, y, nan_policy="omit"), 6)
    0.308093
    """

@overload
def binary_cross_entropy(
    input: _ArrayLike,
    target: _ArrayLike,
    *,
    weight: _ArrayLike | None = None,
    sample_weight: _ArrayLike | None = None,
    reduction: Literal["none"],
    out: _FloatArray | None = None,
    groups: None = None,
    n_groups: None = None,
    nan_policy: _NanPolicy = "propagate",
) -> _FloatArray:
    """Binary cross-entropy between predicted probabilities and targets.

    Each element's loss is ``-w * (y * max(log p, -100) + (1 - y) * max(log(1 - p), -100))``,
    exactly as :func:`torch.nn.functional.binary_cross_entropy` defines it (``log(1 - p)`` is
    computed as ``log1p(-p)``).

    Parameters
    ----------
    input : array_like of float16, bfloat16, float32 or float64
        Probabilities in [0, 1], any shape and layout (read in place, never copied; float16
        and bfloat16, also PyTorch's, are computed in float32).
    target : array_like
        Same shape as ``input``: probabilities in [0, 1] (float16/bfloat16/float32/float64,
        taken in ``input``'s precision), or hard labels 0/1 (bool, uint8, int8, int32, int64),
        read natively without conversion.
    weight : array_like, optional
        Per-element weight, broadcast to ``input``'s shape (float16/bfloat16/float32/float64
        read in place, in ``input``'s precision).
    sample_weight : array_like, optional
        scikit-learn's sample weights ``sw``, broadcast to ``input``'s shape and read in place
        like ``weight``: each loss (already scaled by ``weight``) is multiplied by its ``sw``,
        and ``"mean"`` becomes the weighted average ``sum(sw * loss) / sum(sw)``
        (``numpy.average``; NaN when ``sum(sw)`` is 0). A negative weight raises
        :class:`crossent.DomainError`; NaN propagates. See :doc:`/guide/sample-weight`.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` divides the sum by the number of elements (NaN for empty input, as torch),
        or by ``sum(sample_weight)``; ``"sum"`` returns the sum (0.0 for empty input);
        ``"none"`` returns every element's loss.
    out : numpy.ndarray, optional
        With ``reduction="none"``: the array (``input``'s dtype and shape) to write into.
    nan_policy : {"propagate", "omit", "raise"}, default "propagate"
        What a NaN in any operand (``input``, a float ``target``, ``weight``,
        ``pos_weight``, ``sample_weight``) does: ``"propagate"`` lets it into the result;
        ``"omit"`` leaves each element with a NaN operand out of the sum, of the count the
        mean divides by and of ``sum(sample_weight)`` (with ``"none"`` its loss is NaN);
        ``"raise"`` raises :class:`crossent.DomainError` naming the first operand that holds
        a NaN and its first position. Checked in the same single pass. With ``groups``, it
        applies within each group (a group left with no element has a NaN mean).

    Returns
    -------
    float or numpy.ndarray
        A Python float (accumulated in float64, also for float32 input) for ``"mean"`` and
        ``"sum"``; an array of ``input``'s shape and dtype for ``"none"``.

    Raises ``ValueError`` for a probability or target outside [0, 1] (naming the first
    position), mismatched shapes or an unknown reduction; ``TypeError`` for unsupported dtypes.
    NaN propagates into the result unless ``nan_policy`` says otherwise (torch raises).

    Examples
    --------
    >>> import numpy as np, crossent
    >>> p = np.array([0.9, 0.2, 0.6], dtype=np.float32)
    >>> y = np.array([True, False, True])
    >>> round(crossent.binary_cross_entropy(p, y), 6)
    0.279777
    >>> crossent.binary_cross_entropy(p, y, reduction="none").round(4)
    array([0.1054, 0.2231, 0.5108], dtype=float32)

    With ``sample_weight`` the mean is ``numpy.average`` of the losses (scikit-learn's):

    >>> sw = np.array([1.0, 0.0, 3.0])
    >>> losses = crossent.binary_cross_entropy(p, y, reduction="none").astype(float)
    >>> bool(np.isclose(crossent.binary_cross_entropy(p, y, sample_weight=sw),
    ...                 np.average(losses, weights=sw)))
    True

    ``nan_policy="omit"`` leaves out the elements holding a NaN, from the count too:

    >>> q = np.array([0.9, np.nan, 0.6], dtype=np.float32)
    >>> round(crossent.binary_cross_entropy(q, y, nan_policy="omit"), 6)
    0.308093
    """

@overload
def binary_cross_entropy(
    input: _ArrayLike,
    target: _ArrayLike,
    *,
    weight: _ArrayLike | None = None,
    sample_weight: _ArrayLike | None = None,
    reduction: str = "mean",
    out: _FloatArray | None = None,
    groups: _ArrayLike | None = None,
    n_groups: SupportsIndex | None = None,
    nan_policy: _NanPolicy = "propagate",
) -> float | _FloatArray:
    """Binary cross-entropy between predicted probabilities and targets.

    Each element's loss is ``-w * (y * max(log p, -100) + (1 - y) * max(log(1 - p), -100))``,
    exactly as :func:`torch.nn.functional.binary_cross_entropy` defines it (``log(1 - p)`` is
    computed as ``log1p(-p)``).

    Parameters
    ----------
    input : array_like of float16, bfloat16, float32 or float64
        Probabilities in [0, 1], any shape and layout (read in place, never copied; float16
        and bfloat16, also PyTorch's, are computed in float32).
    target : array_like
        Same shape as ``input``: probabilities in [0, 1] (float16/bfloat16/float32/float64,
        taken in ``input``'s precision), or hard labels 0/1 (bool, uint8, int8, int32, int64),
        read natively without conversion.
    weight : array_like, optional
        Per-element weight, broadcast to ``input``'s shape (float16/bfloat16/float32/float64
        read in place, in ``input``'s precision).
    sample_weight : array_like, optional
        scikit-learn's sample weights ``sw``, broadcast to ``input``'s shape and read in place
        like ``weight``: each loss (already scaled by ``weight``) is multiplied by its ``sw``,
        and ``"mean"`` becomes the weighted average ``sum(sw * loss) / sum(sw)``
        (``numpy.average``; NaN when ``sum(sw)`` is 0). A negative weight raises
        :class:`crossent.DomainError`; NaN propagates. See :doc:`/guide/sample-weight`.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` divides the sum by the number of elements (NaN for empty input, as torch),
        or by ``sum(sample_weight)``; ``"sum"`` returns the sum (0.0 for empty input);
        ``"none"`` returns every element's loss.
    out : numpy.ndarray, optional
        With ``reduction="none"``: the array (``input``'s dtype and shape) to write into.
    nan_policy : {"propagate", "omit", "raise"}, default "propagate"
        What a NaN in any operand (``input``, a float ``target``, ``weight``,
        ``pos_weight``, ``sample_weight``) does: ``"propagate"`` lets it into the result;
        ``"omit"`` leaves each element with a NaN operand out of the sum, of the count the
        mean divides by and of ``sum(sample_weight)`` (with ``"none"`` its loss is NaN);
        ``"raise"`` raises :class:`crossent.DomainError` naming the first operand that holds
        a NaN and its first position. Checked in the same single pass. With ``groups``, it
        applies within each group (a group left with no element has a NaN mean).

    Returns
    -------
    float or numpy.ndarray
        A Python float (accumulated in float64, also for float32 input) for ``"mean"`` and
        ``"sum"``; an array of ``input``'s shape and dtype for ``"none"``.

    Raises ``ValueError`` for a probability or target outside [0, 1] (naming the first
    position), mismatched shapes or an unknown reduction; ``TypeError`` for unsupported dtypes.
    NaN propagates into the result unless ``nan_policy`` says otherwise (torch raises).

    Examples
    --------
    >>> import numpy as np, crossent
    >>> p = np.array([0.9, 0.2, 0.6], dtype=np.float32)
    >>> y = np.array([True, False, True])
    >>> round(crossent.binary_cross_entropy(p, y), 6)
    0.279777
    >>> crossent.binary_cross_entropy(p, y, reduction="none").round(4)
    array([0.1054, 0.2231, 0.5108], dtype=float32)

    With ``sample_weight`` the mean is ``numpy.average`` of the losses (scikit-learn's):

    >>> sw = np.array([1.0, 0.0, 3.0])
    >>> losses = crossent.binary_cross_entropy(p, y, reduction="none").astype(float)
    >>> bool(np.isclose(crossent.binary_cross_entropy(p, y, sample_weight=sw),
    ...                 np.average(losses, weights=sw)))
    True

    ``nan_policy="omit"`` leaves out the elements holding a NaN, from the count too:

    >>> q = np.array([0.9, np.nan, 0.6], dtype=np.float32)
    >>> round(crossent.binary_cross_entropy(q, y, nan_policy="omit"), 6)
    0.308093
    """

@overload
def binary_cross_entropy_with_logits(
    input: _ArrayLike,
    target: _ArrayLike,
    *,
    weight: _ArrayLike | None = None,
    pos_weight: _ArrayLike | None = None,
    sample_weight: _ArrayLike | None = None,
    reduction: Literal["mean", "sum"] = "mean",
    out: None = None,
    groups: _ArrayLike,
    n_groups: SupportsIndex | None = None,
    nan_policy: _NanPolicy = "propagate",
) -> npt.NDArray[np.float64]:
    """Binary cross-entropy between logits and targets, computed without overflow.

    Each element's loss is ``w * ((1 - y) * x - (1 + (c - 1) * y) * log_sigmoid(x))`` with
    ``log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|))``, exactly as
    :func:`torch.nn.functional.binary_cross_entropy_with_logits` defines it; evaluated without
    that formula's cancellation (its ``x`` terms cancel algebraically), so that for targets in
    [0, 1] and ``pos_weight >= 0`` each loss is within 4 ulp of the exact loss of its inputs.

    Parameters
    ----------
    input : array_like of float16, bfloat16, float32 or float64
        Logits, any shape and layout (read in place, never copied; float16 and bfloat16 are
        computed in float32).
    target : array_like
        Same shape as ``input``: probabilities (any float dtype; like PyTorch, any real value
        is accepted, the loss being linear in ``y``), or hard labels 0/1 (bool, uint8, int8,
        int32, int64).
    weight : array_like, optional
        Per-element weight ``w``, broadcast to ``input``'s shape.
    pos_weight : array_like, optional
        Weight ``c`` of the positive class, broadcast to ``input``'s shape (typically one
        value per class, along the last axis).
    sample_weight : array_like, optional
        scikit-learn's sample weights, as in :func:`binary_cross_entropy`: ``"mean"`` is then
        ``sum(sw * loss) / sum(sw)``.
    reduction : {"mean", "sum", "none"}
        As in :func:`binary_cross_entropy`.
    out : numpy.ndarray, optional
        With ``reduction="none"``: the array to write into.
    nan_policy : {"propagate", "omit", "raise"}, default "propagate"
        As in :func:`binary_cross_entropy`, ``pos_weight`` included among the operands:
        ``"omit"`` leaves each element with a NaN operand out of the sum, of the count and
        of ``sum(sample_weight)`` (of its group's, with ``groups``); ``"raise"`` names the
        first operand holding a NaN.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> x = np.array([2.0, -1.0, 0.5])
    >>> y = np.array([1, 0, 1], dtype=np.uint8)
    >>> round(crossent.binary_cross_entropy_with_logits(x, y), 6)
    0.304756
    >>> round(crossent.binary_cross_entropy_with_logits(x, y, pos_weight=[2.0]), 6)
    0.505091
    >>> sw = np.array([2.0, 1.0, 1.0])
    >>> round(crossent.binary_cross_entropy_with_logits(x, y, sample_weight=sw), 6)
    0.260299
    """

@overload
def binary_cross_entropy_with_logits(
    input: _ArrayLike,
    target: _ArrayLike,
    *,
    weight: _ArrayLike | None = None,
    pos_weight: _ArrayLike | None = None,
    sample_weight: _ArrayLike | None = None,
    reduction: Literal["mean", "sum"] = "mean",
    out: None = None,
    groups: None = None,
    n_groups: None = None,
    nan_policy: _NanPolicy = "propagate",
) -> float:
    """Binary cross-entropy between logits and targets, computed without overflow.

    Each element's loss is ``w * ((1 - y) * x - (1 + (c - 1) * y) * log_sigmoid(x))`` with
    ``log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|))``, exactly as
    :func:`torch.nn.functional.binary_cross_entropy_with_logits` defines it; evaluated without
    that formula's cancellation (its ``x`` terms cancel algebraically), so that for targets in
    [0, 1] and ``pos_weight >= 0`` each loss is within 4 ulp of the exact loss of its inputs.

    Parameters
    ----------
    input : array_like of float16, bfloat16, float32 or float64
        Logits, any shape and layout (read in place, never copied; float16 and bfloat16 are
        computed in float32).
    target : array_like
        Same shape as ``input``: probabilities (any float dtype; like PyTorch, any real value
        is accepted, the loss being linear in ``y``), or hard labels 0/1 (bool, uint8, int8,
        int32, int64).
    weight : array_like, optional
        Per-element weight ``w``, broadcast to ``input``'s shape.
    pos_weight : array_like, optional
        Weight ``c`` of the positive class, broadcast to ``input``'s shape (typically one
        value per class, along the last axis).
    sample_weight : array_like, optional
        scikit-learn's sample weights, as in :func:`binary_cross_entropy`: ``"mean"`` is then
        ``sum(sw * loss) / sum(sw)``.
    reduction : {"mean", "sum", "none"}
        As in :func:`binary_cross_entropy`.
    out : numpy.ndarray, optional
        With ``reduction="none"``: the array to write into.
    nan_policy : {"propagate", "omit", "raise"}, default "propagate"
        As in :func:`binary_cross_entropy`, ``pos_weight`` included among the operands:
        ``"omit"`` leaves each element with a NaN operand out of the sum, of the count and
        of ``sum(sample_weight)`` (of its group's, with ``groups``); ``"raise"`` names the
        first operand holding a NaN.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> x = np.array([2.0, -1.0, 0.5])
    >>> y = np.array([1, 0, 1], dtype=np.uint8)
    >>> round(crossent.binary_cross_entropy_with_logits(x, y), 6)
    0.304756
    >>> round(crossent.binary_cross_entropy_with_logits(x, y, pos_weight=[2.0]), 6)
    0.505091
    >>> sw = np.array([2.0, 1.0, 1.0])
    >>> round(crossent.binary_cross_entropy_with_logits(x, y, sample_weight=sw), 6)
    0.260299
    """

@overload
def binary_cross_entropy_with_logits(
    input: _ArrayLike,
    target: _ArrayLike,
    *,
    weight: _ArrayLike | None = None,
    pos_weight: _ArrayLike | None = None,
    sample_weight: _ArrayLike | None = None,
    reduction: Literal["none"],
    out: _FloatArray | None = None,
    groups: None = None,
    n_groups: None = None,
    nan_policy: _NanPolicy = "propagate",
) -> _FloatArray:
    """Binary cross-entropy between logits and targets, computed without overflow.

    Each element's loss is ``w * ((1 - y) * x - (1 + (c - 1) * y) * log_sigmoid(x))`` with
    ``log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|))``, exactly as
    :func:`torch.nn.functional.binary_cross_entropy_with_logits` defines it; evaluated without
    that formula's cancellation (its ``x`` terms cancel algebraically), so that for targets in
    [0, 1] and ``pos_weight >= 0`` each loss is within 4 ulp of the exact loss of its inputs.

    Parameters
    ----------
    input : array_like of float16, bfloat16, float32 or float64
        Logits, any shape and layout (read in place, never copied; float16 and bfloat16 are
        computed in float32).
    target : array_like
        Same shape as ``input``: probabilities (any float dtype; like PyTorch, any real value
        is accepted, the loss being linear in ``y``), or hard labels 0/1 (bool, uint8, int8,
        int32, int64).
    weight : array_like, optional
        Per-element weight ``w``, broadcast to ``input``'s shape.
    pos_weight : array_like, optional
        Weight ``c`` of the positive class, broadcast to ``input``'s shape (typically one
        value per class, along the last axis).
    sample_weight : array_like, optional
        scikit-learn's sample weights, as in :func:`binary_cross_entropy`: ``"mean"`` is then
        ``sum(sw * loss) / sum(sw)``.
    reduction : {"mean", "sum", "none"}
        As in :func:`binary_cross_entropy`.
    out : numpy.ndarray, optional
        With ``reduction="none"``: the array to write into.
    nan_policy : {"propagate", "omit", "raise"}, default "propagate"
        As in :func:`binary_cross_entropy`, ``pos_weight`` included among the operands:
        ``"omit"`` leaves each element with a NaN operand out of the sum, of the count and
        of ``sum(sample_weight)`` (of its group's, with ``groups``); ``"raise"`` names the
        first operand holding a NaN.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> x = np.array([2.0, -1.0, 0.5])
    >>> y = np.array([1, 0, 1], dtype=np.uint8)
    >>> round(crossent.binary_cross_entropy_with_logits(x, y), 6)
    0.304756
    >>> round(crossent.binary_cross_entropy_with_logits(x, y, pos_weight=[2.0]), 6)
    0.505091
    >>> sw = np.array([2.0, 1.0, 1.0])
    >>> round(crossent.binary_cross_entropy_with_logits(x, y, sample_weight=sw), 6)
    0.260299
    """

@overload
def binary_cross_entropy_with_logits(
    input: _ArrayLike,
    target: _ArrayLike,
    *,
    weight: _ArrayLike | None = None,
    pos_weight: _ArrayLike | None = None,
    sample_weight: _ArrayLike | None = None,
    reduction: str = "mean",
    out: _FloatArray | None = None,
    groups: _ArrayLike | None = None,
    n_groups: SupportsIndex | None = None,
    nan_policy: _NanPolicy = "propagate",
) -> float | _FloatArray:
    """Binary cross-entropy between logits and targets, computed without overflow.

    Each element's loss is ``w * ((1 - y) * x - (1 + (c - 1) * y) * log_sigmoid(x))`` with
    ``log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|))``, exactly as
    :func:`torch.nn.functional.binary_cross_entropy_with_logits` defines it; evaluated without
    that formula's cancellation (its ``x`` terms cancel algebraically), so that for targets in
    [0, 1] and ``pos_weight >= 0`` each loss is within 4 ulp of the exact loss of its inputs.

    Parameters
    ----------
    input : array_like of float16, bfloat16, float32 or float64
        Logits, any shape and layout (read in place, never copied; float16 and bfloat16 are
        computed in float32).
    target : array_like
        Same shape as ``input``: probabilities (any float dtype; like PyTorch, any real value
        is accepted, the loss being linear in ``y``), or hard labels 0/1 (bool, uint8, int8,
        int32, int64).
    weight : array_like, optional
        Per-element weight ``w``, broadcast to ``input``'s shape.
    pos_weight : array_like, optional
        Weight ``c`` of the positive class, broadcast to ``input``'s shape (typically one
        value per class, along the last axis).
    sample_weight : array_like, optional
        scikit-learn's sample weights, as in :func:`binary_cross_entropy`: ``"mean"`` is then
        ``sum(sw * loss) / sum(sw)``.
    reduction : {"mean", "sum", "none"}
        As in :func:`binary_cross_entropy`.
    out : numpy.ndarray, optional
        With ``reduction="none"``: the array to write into.
    nan_policy : {"propagate", "omit", "raise"}, default "propagate"
        As in :func:`binary_cross_entropy`, ``pos_weight`` included among the operands:
        ``"omit"`` leaves each element with a NaN operand out of the sum, of the count and
        of ``sum(sample_weight)`` (of its group's, with ``groups``); ``"raise"`` names the
        first operand holding a NaN.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> x = np.array([2.0, -1.0, 0.5])
    >>> y = np.array([1, 0, 1], dtype=np.uint8)
    >>> round(crossent.binary_cross_entropy_with_logits(x, y), 6)
    0.304756
    >>> round(crossent.binary_cross_entropy_with_logits(x, y, pos_weight=[2.0]), 6)
    0.505091
    >>> sw = np.array([2.0, 1.0, 1.0])
    >>> round(crossent.binary_cross_entropy_with_logits(x, y, sample_weight=sw), 6)
    0.260299
    """

def entropy(
    p: _ArrayLike,
    *,
    axis: int | None = -1,
    base: float | None = None,
    normalize: bool = True,
    out: _FloatArray | None = None,
    keepdims: bool = False,
    nan_policy: _NanPolicy = "propagate",
) -> float | _FloatArray:
    """Entropy of distributions along an axis, as :func:`scipy.stats.entropy` computes it.

    Each distribution ``p`` (a row along ``axis``) is normalised to ``a = p / sum(p)`` and
    ``H = -sum(a * log(a))``, with ``0 * log(0) = 0``; divided by ``log(base)`` when ``base``
    is given. The normalisation happens in the same single pass as the logs:
    ``H = -sum(p * log(p)) / P + log(P)`` with ``P = sum(p)``.

    Parameters
    ----------
    p : array_like
        Non-negative values (probabilities or counts). float16, bfloat16, float32 and float64
        arrays are read in place, whatever their layout (float16 and bfloat16 computed in
        float32); other real dtypes are converted to float64 first.
    axis : int or None, default -1
        The axis along which each distribution lies; ``None`` treats the whole array as one.
    base : float, optional
        Logarithm base (natural logarithm by default).
    normalize : bool, default True
        ``False`` uses each row as given: ``-sum(p * log(p))``.
    out : numpy.ndarray, optional
        Array of ``p``'s dtype and shape without ``axis`` (with ``keepdims``: with ``axis``
        kept with length 1) to write the results into.
    keepdims : bool, default False
        ``True`` keeps the reduced axis (every axis with ``axis=None``) with length 1, as
        NumPy's reductions and :func:`scipy.stats.entropy` do: the result is then always an
        array, which broadcasts against ``p``.
    nan_policy : {'propagate', 'omit', 'raise'}, default 'propagate'
        What a NaN in ``p`` does, as in :func:`scipy.stats.entropy`: ``'propagate'``
        makes its distribution's result NaN; ``'omit'`` leaves it out of its
        distribution, sum included (a distribution left with no value gives 0.0, as
        SciPy); ``'raise'`` raises :class:`crossent.DomainError` naming the first
        position of a NaN (in C order). The check is fused into the single pass.

    Returns
    -------
    float or numpy.ndarray
        One value per distribution: a Python float when there is one (1-D input or
        ``axis=None``) and ``keepdims`` is False, otherwise an array of ``p``'s dtype and shape
        without ``axis`` (with ``keepdims``: with it kept with length 1). Sums are accumulated
        in float64, also for float32 input.

    Notes
    -----
    A row of zeros gives NaN (0/0, as SciPy); an empty row gives 0.0; NaN propagates to its
    row unless ``nan_policy`` says otherwise. A negative value raises ``ValueError`` naming
    its position (SciPy returns -inf), whatever ``nan_policy`` is.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> crossent.entropy([0.5, 0.25, 0.25], base=2)
    1.5
    >>> crossent.entropy(np.array([[1.0, 1.0], [3.0, 0.0]])).round(6)
    array([0.693147, 0.      ])
    >>> crossent.entropy(np.array([[1.0, 1.0], [3.0, 0.0]]), keepdims=True).round(6)
    array([[0.693147],
           [0.      ]])
    >>> crossent.entropy(np.array([[0.5, np.nan, 0.5], [np.nan] * 3]), nan_policy="omit").round(6)
    array([0.693147, 0.      ])
    """

def cross_entropy(
    p: _ArrayLike,
    q: _ArrayLike,
    *,
    axis: int | None = -1,
    base: float | None = None,
    normalize: bool = True,
    out: _FloatArray | None = None,
    keepdims: bool = False,
    nan_policy: _NanPolicy = "propagate",
) -> float | _FloatArray:
    """Cross-entropy of distribution ``q`` relative to ``p``, along an axis.

    With ``a = p / sum(p)`` and ``b = q / sum(q)``: ``H(p, q) = -sum(a * log(b))``, with
    ``0 * log(b) = 0`` and ``+inf`` where ``p > 0`` meets ``q = 0``; divided by ``log(base)``
    when given. It follows :func:`scipy.stats.entropy`'s conventions, so that
    ``cross_entropy(p, q) == entropy(p) + kl_divergence(p, q)``. Normalisation happens in the
    same single pass as the logs.

    Parameters
    ----------
    p, q : array_like
        Non-negative values, broadcast against each other. float16, bfloat16, float32 and
        float64 arrays are read in place, also mixed (computed in the wider type, float16 and
        bfloat16 in float32); other real dtypes are converted.
    axis : int or None, default -1
        The axis along which each distribution lies; ``None`` treats the whole array as one.
    base : float, optional
        Logarithm base (natural logarithm by default).
    normalize : bool, default True
        ``False`` uses the rows as given: ``-sum(p * log(q))``.
    out : numpy.ndarray, optional
        Array of the input dtype and the broadcast shape without ``axis`` (with ``keepdims``:
        with ``axis`` kept with length 1), to write into.
    keepdims : bool, default False
        ``True`` keeps the reduced axis (every axis with ``axis=None``) with length 1, as
        :func:`entropy`.
    nan_policy : {'propagate', 'omit', 'raise'}, default 'propagate'
        What a NaN does, as in :func:`scipy.stats.entropy`: ``'propagate'`` makes its
        distribution's result NaN; ``'omit'`` leaves out each pair where ``p`` or
        ``q`` is NaN from both distributions, sums included (a distribution left with
        no pair gives 0.0); ``'raise'`` raises :class:`crossent.DomainError` naming
        the argument (``p`` before ``q``) and the first position of a NaN in it.

    Returns
    -------
    float or numpy.ndarray
        As :func:`entropy`.

    Examples
    --------
    >>> import crossent
    >>> round(crossent.cross_entropy([1, 1], [1, 3], base=2), 6)
    1.207519
    """

def kl_divergence(
    p: _ArrayLike,
    q: _ArrayLike,
    *,
    axis: int | None = -1,
    base: float | None = None,
    normalize: bool = True,
    out: _FloatArray | None = None,
    keepdims: bool = False,
    nan_policy: _NanPolicy = "propagate",
) -> float | _FloatArray:
    """Kullback-Leibler divergence ``D(p || q)`` along an axis, as ``scipy.stats.entropy(p, q)``.

    With ``a = p / sum(p)`` and ``b = q / sum(q)``: ``D = sum(a * log(a / b))``, term by term
    as :func:`scipy.special.rel_entr` (0 where ``p = 0``, ``+inf`` where ``p > 0`` and
    ``q = 0``); divided by ``log(base)`` when given. Computed in one pass over both arrays:
    ``D = sum(p * log(p / q)) / P + log(Q) - log(P)``.

    Parameters
    ----------
    p, q : array_like
        Non-negative values, broadcast against each other (see :func:`cross_entropy`).
    axis : int or None, default -1
        The axis along which each distribution lies; ``None`` treats the whole array as one.
    base : float, optional
        Logarithm base (natural logarithm by default).
    normalize : bool, default True
        ``False`` uses the rows as given: ``sum(rel_entr(p, q))``.
    out : numpy.ndarray, optional
        Array of the input dtype and the broadcast shape without ``axis`` (with ``keepdims``:
        with ``axis`` kept with length 1), to write into.
    keepdims : bool, default False
        ``True`` keeps the reduced axis (every axis with ``axis=None``) with length 1, as
        :func:`entropy`.
    nan_policy : {'propagate', 'omit', 'raise'}, default 'propagate'
        What a NaN does, as in :func:`scipy.stats.entropy`: ``'propagate'`` makes its
        distribution's result NaN; ``'omit'`` leaves out each pair where ``p`` or
        ``q`` is NaN from both distributions, sums included (a distribution left with
        no pair gives 0.0); ``'raise'`` raises :class:`crossent.DomainError` naming
        the argument (``p`` before ``q``) and the first position of a NaN in it.

    Returns
    -------
    float or numpy.ndarray
        As :func:`entropy`. ``kl_divergence(p, p)`` is exactly 0.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> round(crossent.kl_divergence([0.5, 0.5], [0.9, 0.1]), 6)
    0.510826
    >>> round(crossent.kl_divergence([0.5, 0.5, 0.2], [0.25, np.nan, 0.25], nan_policy="omit"), 6)
    0.094878
    >>> p = np.array([[0.2, 0.8], [0.5, 0.5]])
    >>> crossent.kl_divergence(p, p[::-1]).round(6)
    array([0.192745, 0.223144])
    >>> crossent.kl_divergence(p, p[::-1], axis=0, keepdims=True).round(6)
    array([[0.392696, 0.108462]])
    """

def jensen_shannon(
    p: _ArrayLike,
    q: _ArrayLike,
    *,
    axis: int | None = -1,
    base: float | None = None,
    normalize: bool = True,
    out: _FloatArray | None = None,
    keepdims: bool = False,
    nan_policy: _NanPolicy = "propagate",
) -> float | _FloatArray:
    """Jensen-Shannon divergence along an axis: the square of
    :func:`scipy.spatial.distance.jensenshannon`.

    With ``a = p / sum(p)``, ``b = q / sum(q)`` and ``m = (a + b) / 2``:
    ``JS = (D(a || m) + D(b || m)) / 2``, divided by ``log(base)`` when given. Symmetric, and
    between 0 and ``log(2)`` (1 in base 2). Normalising needs both sums inside the logarithm,
    so each row is read twice: once for the sums, once for the logs.
    :func:`scipy.spatial.distance.jensenshannon` has no ``nan_policy``; here ``'omit'``
    leaves out the pairs where ``p`` or ``q`` is NaN, as the other divergences do.

    Parameters
    ----------
    p, q : array_like
        Non-negative values, broadcast against each other (see :func:`cross_entropy`).
    axis : int or None, default -1
        The axis along which each distribution lies; ``None`` treats the whole array as one.
    base : float, optional
        Logarithm base (natural logarithm by default).
    normalize : bool, default True
        ``False`` uses the rows as given, with ``m = (p + q) / 2``.
    out : numpy.ndarray, optional
        Array of the input dtype and the broadcast shape without ``axis`` (with ``keepdims``:
        with ``axis`` kept with length 1), to write into.
    keepdims : bool, default False
        ``True`` keeps the reduced axis (every axis with ``axis=None``) with length 1, as
        :func:`entropy`.
    nan_policy : {'propagate', 'omit', 'raise'}, default 'propagate'
        What a NaN does, as in :func:`scipy.stats.entropy`: ``'propagate'`` makes its
        distribution's result NaN; ``'omit'`` leaves out each pair where ``p`` or
        ``q`` is NaN from both distributions, sums included (a distribution left with
        no pair gives 0.0); ``'raise'`` raises :class:`crossent.DomainError` naming
        the argument (``p`` before ``q``) and the first position of a NaN in it.

    Returns
    -------
    float or numpy.ndarray
        As :func:`entropy`.

    Examples
    --------
    >>> import crossent
    >>> crossent.jensen_shannon([1.0, 0.0], [0.0, 1.0], base=2)
    1.0
    >>> round(crossent.jensen_shannon([0.5, 0.5], [0.9, 0.1]), 6)
    0.101749
    """

@overload
def softmax_cross_entropy(
    logits: _ArrayLike,
    target: _ArrayLike,
    *,
    axis: int = -1,
    weight: _ArrayLike | None = None,
    sample_weight: _ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: Literal["mean", "sum"] = "mean",
    out: None = None,
    groups: _ArrayLike,
    n_groups: SupportsIndex | None = None,
    keepdims: Literal[False] = False,
    nan_policy: _NanPolicy = "propagate",
) -> npt.NDArray[np.float64]:
    """Cross-entropy between the softmax of ``logits`` and ``target``, as
    :func:`torch.nn.functional.cross_entropy`.

    With ``C`` classes along ``axis``, ``lse = log(sum(exp(x)))`` per row, class weights ``w``
    (1 when absent) and label smoothing ``eps``, each row's loss is
    ``(1 - eps) * w[y] * (lse - x[y]) + eps / C * sum(w * (lse - x))`` for a class index
    ``y``, and ``sum(w * t' * (lse - x))`` with ``t' = (1 - eps) * t + eps / C`` for class
    probabilities ``t``. The log-sum-exp is computed stably in one read of each row (online
    maximum), never materialising the softmax.

    Parameters
    ----------
    logits : array_like of float16, bfloat16, float32 or float64
        Unnormalised scores, any shape and layout (read in place, never copied; float16 and
        bfloat16 are computed in float32, with ``"none"`` results of their dtype).
    target : array_like
        Either class indices (int8, int16, int32, int64, uint8, uint16 or uint32) of
        ``logits``' shape without ``axis``, or class probabilities (float) of ``logits``' shape,
        read in place in ``logits``' precision.
    axis : int, default -1
        The class axis (PyTorch's dimension 1).
    weight : array_like, optional
        One weight per class (shape ``(C,)``).
    ignore_index : int, default -100
        Rows whose class index equals it contribute nothing, not even to the mean's
        denominator. Class indices only: with class probabilities a value >= 0 raises
        ``ValueError``, as in PyTorch.
    label_smoothing : float, default 0.0
        ``eps`` in [0, 1].
    sample_weight : array_like, optional
        scikit-learn's sample weights ``sw``, one per row: broadcast to the rows' shape
        (``target``'s for class indices: ``logits``' shape without ``axis``), read in place
        like ``weight``. Each row's loss (class weights included) is multiplied by its ``sw``,
        and ``"mean"`` becomes ``sum(sw * loss) / sum(sw)`` over the rows not ignored
        (``numpy.average``; NaN when that sum is 0), instead of PyTorch's denominator. A
        negative weight raises :class:`crossent.DomainError`; NaN propagates. See
        :doc:`/guide/sample-weight`.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` is PyTorch's: for class indices the sum divided by the sum of ``w[y]`` over
        the rows not ignored (NaN if there are none), for probabilities the sum divided by the
        number of rows (with ``sample_weight``: by its sum, as above). ``"none"`` returns every
        row's loss.
    out : numpy.ndarray, optional
        With ``reduction="none"``: the array (``logits``' dtype, the rows' shape) to write into.
    keepdims : bool, default False
        With ``reduction="none"``: ``True`` keeps the class axis with length 1, so that the
        losses broadcast against ``logits`` (and ``out`` has that shape). With ``"mean"`` or
        ``"sum"`` (a Python float, no axis left) or ``groups``, ``True`` raises ``ValueError``.
    nan_policy : {"propagate", "omit", "raise"}, default "propagate"
        What a NaN does: ``"propagate"`` makes its row's loss NaN (and so the mean);
        ``"omit"`` leaves out each row whose logits, target probabilities or sample weight
        hold a NaN, as an ``ignore_index`` row is left out: from the sum and from the mean's
        denominator (``sum(weight[y])``, the row count or ``sum(sample_weight)``), its loss
        being NaN with ``"none"`` (NaN class weights are parameters: they propagate);
        ``"raise"`` raises :class:`crossent.DomainError` naming the first argument holding a
        NaN (``logits``, ``target``, ``sample_weight``, ``weight``) and its first position.
        Checked in the same single pass. With ``groups``, it applies within each group (a
        group left with no row has a NaN mean).

    Returns
    -------
    float or numpy.ndarray
        A Python float (accumulated in float64) for ``"mean"`` and ``"sum"``; an array of the
        rows' shape (with ``keepdims``: ``logits``' shape with the class axis of length 1) and
        ``logits``' dtype for ``"none"``.

    Notes
    -----
    A class index outside ``[0, C)`` (other than ``ignore_index``) raises ``ValueError`` naming
    its position; so does a negative target probability. NaN in a row's logits makes that
    row's loss NaN (and so the mean); ``+inf`` logits give NaN as in PyTorch, ``-inf`` logits
    are classes of probability 0.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> labels = np.array([0, 2])
    >>> round(crossent.softmax_cross_entropy(logits, labels), 6)
    0.175456
    >>> crossent.softmax_cross_entropy(logits, labels, reduction="none").round(6)
    array([0.241311, 0.109601])
    >>> crossent.softmax_cross_entropy(logits, labels, reduction="none", keepdims=True).shape
    (2, 1)
    >>> round(crossent.softmax_cross_entropy(logits, labels, label_smoothing=0.1), 6)
    0.345456

    With class weights, PyTorch's mean divides by ``sum(weight[y])``; with ``sample_weight``
    the mean divides by ``sum(sample_weight)``:

    >>> w = np.array([1.0, 2.0, 4.0])
    >>> round(crossent.softmax_cross_entropy(logits, labels, weight=w), 6)
    0.135943
    >>> sw = np.array([1.0, 1.0])
    >>> round(crossent.softmax_cross_entropy(logits, labels, weight=w, sample_weight=sw), 6)
    0.339859

    ``nan_policy="omit"`` leaves out a row holding a NaN, as an ignored row:

    >>> bad = np.array([[2.0, 0.5, -1.0], [0.1, np.nan, 3.0]])
    >>> round(crossent.softmax_cross_entropy(bad, labels, nan_policy="omit"), 6)
    0.241311
    """

@overload
def softmax_cross_entropy(
    logits: _ArrayLike,
    target: _ArrayLike,
    *,
    axis: int = -1,
    weight: _ArrayLike | None = None,
    sample_weight: _ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: Literal["mean", "sum"] = "mean",
    out: None = None,
    groups: None = None,
    n_groups: None = None,
    keepdims: Literal[False] = False,
    nan_policy: _NanPolicy = "propagate",
) -> float:
    """Cross-entropy between the softmax of ``logits`` and ``target``, as
    :func:`torch.nn.functional.cross_entropy`.

    With ``C`` classes along ``axis``, ``lse = log(sum(exp(x)))`` per row, class weights ``w``
    (1 when absent) and label smoothing ``eps``, each row's loss is
    ``(1 - eps) * w[y] * (lse - x[y]) + eps / C * sum(w * (lse - x))`` for a class index
    ``y``, and ``sum(w * t' * (lse - x))`` with ``t' = (1 - eps) * t + eps / C`` for class
    probabilities ``t``. The log-sum-exp is computed stably in one read of each row (online
    maximum), never materialising the softmax.

    Parameters
    ----------
    logits : array_like of float16, bfloat16, float32 or float64
        Unnormalised scores, any shape and layout (read in place, never copied; float16 and
        bfloat16 are computed in float32, with ``"none"`` results of their dtype).
    target : array_like
        Either class indices (int8, int16, int32, int64, uint8, uint16 or uint32) of
        ``logits``' shape without ``axis``, or class probabilities (float) of ``logits``' shape,
        read in place in ``logits``' precision.
    axis : int, default -1
        The class axis (PyTorch's dimension 1).
    weight : array_like, optional
        One weight per class (shape ``(C,)``).
    ignore_index : int, default -100
        Rows whose class index equals it contribute nothing, not even to the mean's
        denominator. Class indices only: with class probabilities a value >= 0 raises
        ``ValueError``, as in PyTorch.
    label_smoothing : float, default 0.0
        ``eps`` in [0, 1].
    sample_weight : array_like, optional
        scikit-learn's sample weights ``sw``, one per row: broadcast to the rows' shape
        (``target``'s for class indices: ``logits``' shape without ``axis``), read in place
        like ``weight``. Each row's loss (class weights included) is multiplied by its ``sw``,
        and ``"mean"`` becomes ``sum(sw * loss) / sum(sw)`` over the rows not ignored
        (``numpy.average``; NaN when that sum is 0), instead of PyTorch's denominator. A
        negative weight raises :class:`crossent.DomainError`; NaN propagates. See
        :doc:`/guide/sample-weight`.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` is PyTorch's: for class indices the sum divided by the sum of ``w[y]`` over
        the rows not ignored (NaN if there are none), for probabilities the sum divided by the
        number of rows (with ``sample_weight``: by its sum, as above). ``"none"`` returns every
        row's loss.
    out : numpy.ndarray, optional
        With ``reduction="none"``: the array (``logits``' dtype, the rows' shape) to write into.
    keepdims : bool, default False
        With ``reduction="none"``: ``True`` keeps the class axis with length 1, so that the
        losses broadcast against ``logits`` (and ``out`` has that shape). With ``"mean"`` or
        ``"sum"`` (a Python float, no axis left) or ``groups``, ``True`` raises ``ValueError``.
    nan_policy : {"propagate", "omit", "raise"}, default "propagate"
        What a NaN does: ``"propagate"`` makes its row's loss NaN (and so the mean);
        ``"omit"`` leaves out each row whose logits, target probabilities or sample weight
        hold a NaN, as an ``ignore_index`` row is left out: from the sum and from the mean's
        denominator (``sum(weight[y])``, the row count or ``sum(sample_weight)``), its loss
        being NaN with ``"none"`` (NaN class weights are parameters: they propagate);
        ``"raise"`` raises :class:`crossent.DomainError` naming the first argument holding a
        NaN (``logits``, ``target``, ``sample_weight``, ``weight``) and its first position.
        Checked in the same single pass. With ``groups``, it applies within each group (a
        group left with no row has a NaN mean).

    Returns
    -------
    float or numpy.ndarray
        A Python float (accumulated in float64) for ``"mean"`` and ``"sum"``; an array of the
        rows' shape (with ``keepdims``: ``logits``' shape with the class axis of length 1) and
        ``logits``' dtype for ``"none"``.

    Notes
    -----
    A class index outside ``[0, C)`` (other than ``ignore_index``) raises ``ValueError`` naming
    its position; so does a negative target probability. NaN in a row's logits makes that
    row's loss NaN (and so the mean); ``+inf`` logits give NaN as in PyTorch, ``-inf`` logits
    are classes of probability 0.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> labels = np.array([0, 2])
    >>> round(crossent.softmax_cross_entropy(logits, labels), 6)
    0.175456
    >>> crossent.softmax_cross_entropy(logits, labels, reduction="none").round(6)
    array([0.241311, 0.109601])
    >>> crossent.softmax_cross_entropy(logits, labels, reduction="none", keepdims=True).shape
    (2, 1)
    >>> round(crossent.softmax_cross_entropy(logits, labels, label_smoothing=0.1), 6)
    0.345456

    With class weights, PyTorch's mean divides by ``sum(weight[y])``; with ``sample_weight``
    the mean divides by ``sum(sample_weight)``:

    >>> w = np.array([1.0, 2.0, 4.0])
    >>> round(crossent.softmax_cross_entropy(logits, labels, weight=w), 6)
    0.135943
    >>> sw = np.array([1.0, 1.0])
    >>> round(crossent.softmax_cross_entropy(logits, labels, weight=w, sample_weight=sw), 6)
    0.339859

    ``nan_policy="omit"`` leaves out a row holding a NaN, as an ignored row:

    >>> bad = np.array([[2.0, 0.5, -1.0], [0.1, np.nan, 3.0]])
    >>> round(crossent.softmax_cross_entropy(bad, labels, nan_policy="omit"), 6)
    0.241311
    """

@overload
def softmax_cross_entropy(
    logits: _ArrayLike,
    target: _ArrayLike,
    *,
    axis: int = -1,
    weight: _ArrayLike | None = None,
    sample_weight: _ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: Literal["none"],
    out: _FloatArray | None = None,
    groups: None = None,
    n_groups: None = None,
    keepdims: bool = False,
    nan_policy: _NanPolicy = "propagate",
) -> _FloatArray:
    """Cross-entropy between the softmax of ``logits`` and ``target``, as
    :func:`torch.nn.functional.cross_entropy`.

    With ``C`` classes along ``axis``, ``lse = log(sum(exp(x)))`` per row, class weights ``w``
    (1 when absent) and label smoothing ``eps``, each row's loss is
    ``(1 - eps) * w[y] * (lse - x[y]) + eps / C * sum(w * (lse - x))`` for a class index
    ``y``, and ``sum(w * t' * (lse - x))`` with ``t' = (1 - eps) * t + eps / C`` for class
    probabilities ``t``. The log-sum-exp is computed stably in one read of each row (online
    maximum), never materialising the softmax.

    Parameters
    ----------
    logits : array_like of float16, bfloat16, float32 or float64
        Unnormalised scores, any shape and layout (read in place, never copied; float16 and
        bfloat16 are computed in float32, with ``"none"`` results of their dtype).
    target : array_like
        Either class indices (int8, int16, int32, int64, uint8, uint16 or uint32) of
        ``logits``' shape without ``axis``, or class probabilities (float) of ``logits``' shape,
        read in place in ``logits``' precision.
    axis : int, default -1
        The class axis (PyTorch's dimension 1).
    weight : array_like, optional
        One weight per class (shape ``(C,)``).
    ignore_index : int, default -100
        Rows whose class index equals it contribute nothing, not even to the mean's
        denominator. Class indices only: with class probabilities a value >= 0 raises
        ``ValueError``, as in PyTorch.
    label_smoothing : float, default 0.0
        ``eps`` in [0, 1].
    sample_weight : array_like, optional
        scikit-learn's sample weights ``sw``, one per row: broadcast to the rows' shape
        (``target``'s for class indices: ``logits``' shape without ``axis``), read in place
        like ``weight``. Each row's loss (class weights included) is multiplied by its ``sw``,
        and ``"mean"`` becomes ``sum(sw * loss) / sum(sw)`` over the rows not ignored
        (``numpy.average``; NaN when that sum is 0), instead of PyTorch's denominator. A
        negative weight raises :class:`crossent.DomainError`; NaN propagates. See
        :doc:`/guide/sample-weight`.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` is PyTorch's: for class indices the sum divided by the sum of ``w[y]`` over
        the rows not ignored (NaN if there are none), for probabilities the sum divided by the
        number of rows (with ``sample_weight``: by its sum, as above). ``"none"`` returns every
        row's loss.
    out : numpy.ndarray, optional
        With ``reduction="none"``: the array (``logits``' dtype, the rows' shape) to write into.
    keepdims : bool, default False
        With ``reduction="none"``: ``True`` keeps the class axis with length 1, so that the
        losses broadcast against ``logits`` (and ``out`` has that shape). With ``"mean"`` or
        ``"sum"`` (a Python float, no axis left) or ``groups``, ``True`` raises ``ValueError``.
    nan_policy : {"propagate", "omit", "raise"}, default "propagate"
        What a NaN does: ``"propagate"`` makes its row's loss NaN (and so the mean);
        ``"omit"`` leaves out each row whose logits, target probabilities or sample weight
        hold a NaN, as an ``ignore_index`` row is left out: from the sum and from the mean's
        denominator (``sum(weight[y])``, the row count or ``sum(sample_weight)``), its loss
        being NaN with ``"none"`` (NaN class weights are parameters: they propagate);
        ``"raise"`` raises :class:`crossent.DomainError` naming the first argument holding a
        NaN (``logits``, ``target``, ``sample_weight``, ``weight``) and its first position.
        Checked in the same single pass. With ``groups``, it applies within each group (a
        group left with no row has a NaN mean).

    Returns
    -------
    float or numpy.ndarray
        A Python float (accumulated in float64) for ``"mean"`` and ``"sum"``; an array of the
        rows' shape (with ``keepdims``: ``logits``' shape with the class axis of length 1) and
        ``logits``' dtype for ``"none"``.

    Notes
    -----
    A class index outside ``[0, C)`` (other than ``ignore_index``) raises ``ValueError`` naming
    its position; so does a negative target probability. NaN in a row's logits makes that
    row's loss NaN (and so the mean); ``+inf`` logits give NaN as in PyTorch, ``-inf`` logits
    are classes of probability 0.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> labels = np.array([0, 2])
    >>> round(crossent.softmax_cross_entropy(logits, labels), 6)
    0.175456
    >>> crossent.softmax_cross_entropy(logits, labels, reduction="none").round(6)
    array([0.241311, 0.109601])
    >>> crossent.softmax_cross_entropy(logits, labels, reduction="none", keepdims=True).shape
    (2, 1)
    >>> round(crossent.softmax_cross_entropy(logits, labels, label_smoothing=0.1), 6)
    0.345456

    With class weights, PyTorch's mean divides by ``sum(weight[y])``; with ``sample_weight``
    the mean divides by ``sum(sample_weight)``:

    >>> w = np.array([1.0, 2.0, 4.0])
    >>> round(crossent.softmax_cross_entropy(logits, labels, weight=w), 6)
    0.135943
    >>> sw = np.array([1.0, 1.0])
    >>> round(crossent.softmax_cross_entropy(logits, labels, weight=w, sample_weight=sw), 6)
    0.339859

    ``nan_policy="omit"`` leaves out a row holding a NaN, as an ignored row:

    >>> bad = np.array([[2.0, 0.5, -1.0], [0.1, np.nan, 3.0]])
    >>> round(crossent.softmax_cross_entropy(bad, labels, nan_policy="omit"), 6)
    0.241311
    """

@overload
def softmax_cross_entropy(
    logits: _ArrayLike,
    target: _ArrayLike,
    *,
    axis: int = -1,
    weight: _ArrayLike | None = None,
    sample_weight: _ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    out: _FloatArray | None = None,
    groups: _ArrayLike | None = None,
    n_groups: SupportsIndex | None = None,
    keepdims: bool = False,
    nan_policy: _NanPolicy = "propagate",
) -> float | _FloatArray:
    """Cross-entropy between the softmax of ``logits`` and ``target``, as
    :func:`torch.nn.functional.cross_entropy`.

    With ``C`` classes along ``axis``, ``lse = log(sum(exp(x)))`` per row, class weights ``w``
    (1 when absent) and label smoothing ``eps``, each row's loss is
    ``(1 - eps) * w[y] * (lse - x[y]) + eps / C * sum(w * (lse - x))`` for a class index
    ``y``, and ``sum(w * t' * (lse - x))`` with ``t' = (1 - eps) * t + eps / C`` for class
    probabilities ``t``. The log-sum-exp is computed stably in one read of each row (online
    maximum), never materialising the softmax.

    Parameters
    ----------
    logits : array_like of float16, bfloat16, float32 or float64
        Unnormalised scores, any shape and layout (read in place, never copied; float16 and
        bfloat16 are computed in float32, with ``"none"`` results of their dtype).
    target : array_like
        Either class indices (int8, int16, int32, int64, uint8, uint16 or uint32) of
        ``logits``' shape without ``axis``, or class probabilities (float) of ``logits``' shape,
        read in place in ``logits``' precision.
    axis : int, default -1
        The class axis (PyTorch's dimension 1).
    weight : array_like, optional
        One weight per class (shape ``(C,)``).
    ignore_index : int, default -100
        Rows whose class index equals it contribute nothing, not even to the mean's
        denominator. Class indices only: with class probabilities a value >= 0 raises
        ``ValueError``, as in PyTorch.
    label_smoothing : float, default 0.0
        ``eps`` in [0, 1].
    sample_weight : array_like, optional
        scikit-learn's sample weights ``sw``, one per row: broadcast to the rows' shape
        (``target``'s for class indices: ``logits``' shape without ``axis``), read in place
        like ``weight``. Each row's loss (class weights included) is multiplied by its ``sw``,
        and ``"mean"`` becomes ``sum(sw * loss) / sum(sw)`` over the rows not ignored
        (``numpy.average``; NaN when that sum is 0), instead of PyTorch's denominator. A
        negative weight raises :class:`crossent.DomainError`; NaN propagates. See
        :doc:`/guide/sample-weight`.
    reduction : {"mean", "sum", "none"}
        ``"mean"`` is PyTorch's: for class indices the sum divided by the sum of ``w[y]`` over
        the rows not ignored (NaN if there are none), for probabilities the sum divided by the
        number of rows (with ``sample_weight``: by its sum, as above). ``"none"`` returns every
        row's loss.
    out : numpy.ndarray, optional
        With ``reduction="none"``: the array (``logits``' dtype, the rows' shape) to write into.
    keepdims : bool, default False
        With ``reduction="none"``: ``True`` keeps the class axis with length 1, so that the
        losses broadcast against ``logits`` (and ``out`` has that shape). With ``"mean"`` or
        ``"sum"`` (a Python float, no axis left) or ``groups``, ``True`` raises ``ValueError``.
    nan_policy : {"propagate", "omit", "raise"}, default "propagate"
        What a NaN does: ``"propagate"`` makes its row's loss NaN (and so the mean);
        ``"omit"`` leaves out each row whose logits, target probabilities or sample weight
        hold a NaN, as an ``ignore_index`` row is left out: from the sum and from the mean's
        denominator (``sum(weight[y])``, the row count or ``sum(sample_weight)``), its loss
        being NaN with ``"none"`` (NaN class weights are parameters: they propagate);
        ``"raise"`` raises :class:`crossent.DomainError` naming the first argument holding a
        NaN (``logits``, ``target``, ``sample_weight``, ``weight``) and its first position.
        Checked in the same single pass. With ``groups``, it applies within each group (a
        group left with no row has a NaN mean).

    Returns
    -------
    float or numpy.ndarray
        A Python float (accumulated in float64) for ``"mean"`` and ``"sum"``; an array of the
        rows' shape (with ``keepdims``: ``logits``' shape with the class axis of length 1) and
        ``logits``' dtype for ``"none"``.

    Notes
    -----
    A class index outside ``[0, C)`` (other than ``ignore_index``) raises ``ValueError`` naming
    its position; so does a negative target probability. NaN in a row's logits makes that
    row's loss NaN (and so the mean); ``+inf`` logits give NaN as in PyTorch, ``-inf`` logits
    are classes of probability 0.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> labels = np.array([0, 2])
    >>> round(crossent.softmax_cross_entropy(logits, labels), 6)
    0.175456
    >>> crossent.softmax_cross_entropy(logits, labels, reduction="none").round(6)
    array([0.241311, 0.109601])
    >>> crossent.softmax_cross_entropy(logits, labels, reduction="none", keepdims=True).shape
    (2, 1)
    >>> round(crossent.softmax_cross_entropy(logits, labels, label_smoothing=0.1), 6)
    0.345456

    With class weights, PyTorch's mean divides by ``sum(weight[y])``; with ``sample_weight``
    the mean divides by ``sum(sample_weight)``:

    >>> w = np.array([1.0, 2.0, 4.0])
    >>> round(crossent.softmax_cross_entropy(logits, labels, weight=w), 6)
    0.135943
    >>> sw = np.array([1.0, 1.0])
    >>> round(crossent.softmax_cross_entropy(logits, labels, weight=w, sample_weight=sw), 6)
    0.339859

    ``nan_policy="omit"`` leaves out a row holding a NaN, as an ignored row:

    >>> bad = np.array([[2.0, 0.5, -1.0], [0.1, np.nan, 3.0]])
    >>> round(crossent.softmax_cross_entropy(bad, labels, nan_policy="omit"), 6)
    0.241311
    """

def set_num_threads(n: int) -> None:
    """Set the number of threads crossent computes with.

    The default is the number of CPUs this process may use, or the ``CROSSENT_NUM_THREADS``
    environment variable when it is set at import; at most 1024 (larger counts are capped).
    Results are bit-identical for every thread count. Safe to call while other threads
    compute: calls already running finish on the pool they started with, later calls use the
    new count.

    >>> import crossent
    >>> crossent.set_num_threads(2)
    >>> crossent.get_num_threads()
    2
    """

def get_num_threads() -> int:
    """The number of threads crossent computes with (see :func:`set_num_threads`).

    >>> import crossent
    >>> crossent.get_num_threads() >= 1
    True
    """

@final
class BinaryCrossEntropyAccumulator:
    """Streaming :func:`crossent.binary_cross_entropy` over batches.

    ``update(input, target, weight=None)`` adds a batch (arguments as for
    :func:`crossent.binary_cross_entropy`); ``result()`` gives the loss over every element
    seen. When every batch but the last is C-contiguous and holds a multiple of
    ``crossent.BLOCK`` elements, the result has exactly the bits of one call on the
    concatenated arrays; with other cuts it agrees to about 1e-12 relative (only the order of
    additions differs). ``merge(other)`` adds another accumulator's state, ``reset()`` starts
    over; accumulators pickle and copy exactly.

    One accumulator may be shared by threads: its methods take turns on an internal lock
    (``update`` computes without holding the GIL while the others wait), so its state is
    always that of the calls in some serial order.

    Parameters
    ----------
    reduction : {"mean", "sum"}
        What ``result()`` returns: the mean over all elements seen, or the sum.
    nan_policy : {"propagate", "omit", "raise"}, default "propagate"
        What ``update`` does with a NaN operand, as the function does: ``"omit"`` leaves the
        element out of the sum, of ``count`` and of the sample weights' sum; ``"raise"``
        raises :class:`crossent.DomainError` and leaves the accumulator unchanged.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> p = np.array([0.9, 0.2, 0.6, 0.7])
    >>> y = np.array([1, 0, 1, 1])
    >>> acc = crossent.BinaryCrossEntropyAccumulator()
    >>> acc.update(p[:3], y[:3])
    >>> acc.update(p[3:], y[3:])
    >>> acc.count
    4
    >>> round(acc.result(), 6)
    0.299001
    >>> acc.result() == crossent.binary_cross_entropy(p, y)
    True
    """
    def __new__(
        cls,
        *,
        reduction: Literal["mean", "sum"] = "mean",
        n_groups: SupportsIndex | None = None,
        nan_policy: _NanPolicy = "propagate",
    ) -> Self: ...
    def update(
        self,
        input: _ArrayLike,
        target: _ArrayLike,
        *,
        weight: _ArrayLike | None = None,
        sample_weight: _ArrayLike | None = None,
        groups: _ArrayLike | None = None,
    ) -> None:
        """Adds one batch: ``input`` probabilities, ``target`` of the same shape, optional
        ``weight`` broadcast to ``input``'s shape, and ``groups`` (integer codes, one per
        element) when the loss is kept per group, and ``sample_weight`` broadcast to
        ``input``'s shape (given to every update or to none: the mean then divides by
        their sum). A batch with a value out of range raises ``ValueError`` and leaves the
        accumulator unchanged.
        """
    def merge(self, other: BinaryCrossEntropyAccumulator) -> None:
        """Adds the state of ``other`` (an accumulator of the same class, e.g. one that
        saw another part of the data) to this one. ``other`` is left unchanged.

        ``other`` must have been built with the same parameters (every constructor
        argument, arrays by value); otherwise ``ValueError`` names the first that
        differs and neither accumulator changes.
        """
    def reset(self) -> None:
        """Forgets every batch seen: back to the state of a new accumulator."""
    def result(self) -> float | npt.NDArray[np.float64]:
        """The loss over everything seen so far: what one call on the concatenated
        batches returns (see the class documentation); per group (a float64 array)
        when the updates were grouped.
        """
    @property
    def count(self) -> int:
        """Number of elements seen."""
    @property
    def sum(self) -> float:
        """The loss sum seen so far, accumulated in float64 (for a divergence: the sum of
        its element terms, before normalisation).
        """
    @property
    def reduction(self) -> Literal["mean", "sum"]:
        """``"mean"`` or ``"sum"``."""
    @property
    def counts(self) -> npt.NDArray[np.int64] | None:
        """Elements seen per group (an int64 array), or ``None`` when not grouped."""
    @property
    def n_groups(self) -> int | None:
        """The fixed number of groups, or ``None`` (the state grows with the codes seen)."""
    @property
    def nan_policy(self) -> _NanPolicy:
        """What ``update`` does with NaN: ``'propagate'``, ``'omit'`` or ``'raise'``."""
    def __reduce__(self) -> tuple[object, ...]: ...
    def __setstate__(
        self, state: tuple[float, float, int, float, float] | tuple[object, object]
    ) -> None: ...

@final
class BinaryCrossEntropyWithLogitsAccumulator:
    """Streaming :func:`crossent.binary_cross_entropy_with_logits` over batches.

    As :class:`BinaryCrossEntropyAccumulator`, on logits. ``pos_weight`` (the weight of the
    positive class, typically one value per class along the last axis) is fixed for every
    batch, as in ``torch.nn.BCEWithLogitsLoss``; per-element ``weight`` goes with each batch.

    One accumulator may be shared by threads: its methods take turns on an internal lock
    (``update`` computes without holding the GIL while the others wait), so its state is
    always that of the calls in some serial order.

    Parameters
    ----------
    reduction : {"mean", "sum"}
        What ``result()`` returns.
    pos_weight : array_like, optional
        Broadcast to each batch's shape (kept as a read-only float64 copy).
    nan_policy : {"propagate", "omit", "raise"}, default "propagate"
        As for :class:`BinaryCrossEntropyAccumulator`.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> x = np.array([[2.0, -1.0], [0.5, 3.0]])
    >>> y = np.array([[1, 0], [1, 1]], dtype=np.uint8)
    >>> acc = crossent.BinaryCrossEntropyWithLogitsAccumulator(pos_weight=[2.0, 1.0])
    >>> for row in range(2):
    ...     acc.update(x[row:row + 1], y[row:row + 1])
    >>> acc.result() == crossent.binary_cross_entropy_with_logits(x, y, pos_weight=[2.0, 1.0])
    True
    >>> round(acc.result(), 6)
    0.390965
    """
    def __new__(
        cls,
        *,
        reduction: Literal["mean", "sum"] = "mean",
        pos_weight: _ArrayLike | None = None,
        n_groups: SupportsIndex | None = None,
        nan_policy: _NanPolicy = "propagate",
    ) -> Self: ...
    def update(
        self,
        input: _ArrayLike,
        target: _ArrayLike,
        *,
        weight: _ArrayLike | None = None,
        sample_weight: _ArrayLike | None = None,
        groups: _ArrayLike | None = None,
    ) -> None:
        """Adds one batch: ``input`` logits, ``target`` of the same shape, optional
        ``weight`` broadcast to ``input``'s shape, and ``groups`` (integer codes, one per
        element) when the loss is kept per group, and ``sample_weight`` (as for
        :class:`BinaryCrossEntropyAccumulator`). A bad batch raises and leaves the
        accumulator unchanged.
        """
    def merge(self, other: BinaryCrossEntropyWithLogitsAccumulator) -> None:
        """Adds the state of ``other`` (an accumulator of the same class, e.g. one that
        saw another part of the data) to this one. ``other`` is left unchanged.

        ``other`` must have been built with the same parameters (every constructor
        argument, arrays by value); otherwise ``ValueError`` names the first that
        differs and neither accumulator changes.
        """
    def reset(self) -> None:
        """Forgets every batch seen: back to the state of a new accumulator."""
    def result(self) -> float | npt.NDArray[np.float64]:
        """The loss over everything seen so far: what one call on the concatenated
        batches returns (see the class documentation); per group (a float64 array)
        when the updates were grouped.
        """
    @property
    def count(self) -> int:
        """Number of elements seen."""
    @property
    def sum(self) -> float:
        """The loss sum seen so far, accumulated in float64 (for a divergence: the sum of
        its element terms, before normalisation).
        """
    @property
    def reduction(self) -> Literal["mean", "sum"]:
        """``"mean"`` or ``"sum"``."""
    @property
    def pos_weight(self) -> npt.NDArray[np.float64] | None:
        """The positive-class weight (a read-only float64 array), or ``None``."""
    @property
    def counts(self) -> npt.NDArray[np.int64] | None:
        """Elements seen per group (an int64 array), or ``None`` when not grouped."""
    @property
    def n_groups(self) -> int | None:
        """The fixed number of groups, or ``None`` (the state grows with the codes seen)."""
    @property
    def nan_policy(self) -> _NanPolicy:
        """What ``update`` does with NaN: ``'propagate'``, ``'omit'`` or ``'raise'``."""
    def __reduce__(self) -> tuple[object, ...]: ...
    def __setstate__(
        self, state: tuple[float, float, int, float, float] | tuple[object, object]
    ) -> None: ...

@final
class SoftmaxCrossEntropyAccumulator:
    """Streaming :func:`crossent.softmax_cross_entropy` over batches of rows.

    ``update(logits, target)`` adds a batch of rows (class indices or class probabilities, as
    for :func:`crossent.softmax_cross_entropy`); ``result()`` gives the loss over every row
    seen: the sum, or PyTorch's mean — the sum over ``sum(weight[y])`` of the rows not ignored
    for class indices, over the number of rows for probabilities (NaN before any such row).
    The parameters are fixed for every batch, as in ``torch.nn.CrossEntropyLoss``.

    Exact bits: with ``C`` classes, a call reduces rows in blocks of
    ``max(1, crossent.CHUNK // C)`` rows. When every batch but the last is C-contiguous
    (``logits`` and ``target``) and holds a multiple of that many rows, ``result()`` has exactly
    the bits of one call on the concatenated arrays, for any thread count (with more than
    ``crossent.CHUNK`` classes a block is one row: any cut between rows is exact). With other
    cuts it agrees to about 1e-12 relative (only the order of additions differs).

    One accumulator may be shared by threads: its methods take turns on an internal lock
    (``update`` computes without holding the GIL while the others wait), so its state is
    always that of the calls in some serial order.

    Parameters
    ----------
    axis : int, default -1
        The class axis of every batch.
    weight : array_like, optional
        One weight per class (kept as a read-only float64 copy; read in each batch's dtype).
    ignore_index : int, default -100
        Rows whose class index equals it contribute nothing, not even to the mean's
        denominator. A batch of class probabilities raises ``ValueError`` when it is >= 0
        (no row has a class index to ignore), as in PyTorch.
    label_smoothing : float, default 0.0
        In [0, 1].
    reduction : {"mean", "sum"}
        What ``result()`` returns.
    nan_policy : {"propagate", "omit", "raise"}, default "propagate"
        What ``update`` does with a row holding a NaN, as the function does: ``"omit"``
        leaves it out as an ignored row (of ``count`` and ``weight_sum`` too); ``"raise"``
        raises :class:`crossent.DomainError` and leaves the accumulator unchanged.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 1.0]])
    >>> labels = np.array([0, 2, -100])
    >>> acc = crossent.SoftmaxCrossEntropyAccumulator(weight=[1.0, 2.0, 0.5])
    >>> acc.update(logits[:1], labels[:1])
    >>> acc.update(logits[1:], labels[1:])
    >>> acc.count, acc.weight_sum
    (2, 1.5)
    >>> acc.result() == crossent.softmax_cross_entropy(logits, labels, weight=[1.0, 2.0, 0.5])
    True
    >>> round(acc.result(), 6)
    0.197408
    """
    def __new__(
        cls,
        *,
        axis: int = -1,
        weight: _ArrayLike | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: Literal["mean", "sum"] = "mean",
        n_groups: SupportsIndex | None = None,
        nan_policy: _NanPolicy = "propagate",
    ) -> Self: ...
    def update(
        self,
        logits: _ArrayLike,
        target: _ArrayLike,
        *,
        sample_weight: _ArrayLike | None = None,
        groups: _ArrayLike | None = None,
    ) -> None:
        """Adds one batch of rows: ``logits`` of any shape with the classes along ``axis``,
        ``target`` class indices (``logits``' shape without ``axis``) or class
        probabilities (``logits``' shape), and ``groups`` (integer codes, one per row) when
        the loss is kept per group, and ``sample_weight`` (one per row; given to every
        update or to none: the mean then divides by their sum instead of PyTorch's
        denominator). A batch with a bad value raises and leaves the accumulator
        unchanged.
        """
    def merge(self, other: SoftmaxCrossEntropyAccumulator) -> None:
        """Adds the state of ``other`` (an accumulator of the same class, e.g. one that
        saw another part of the data) to this one. ``other`` is left unchanged.

        ``other`` must have been built with the same parameters (every constructor
        argument, arrays by value); otherwise ``ValueError`` names the first that
        differs and neither accumulator changes.
        """
    def reset(self) -> None:
        """Forgets every batch seen: back to the state of a new accumulator."""
    def result(self) -> float | npt.NDArray[np.float64]:
        """The loss over everything seen so far: what one call on the concatenated
        batches returns (see the class documentation); per group (a float64 array)
        when the updates were grouped.
        """
    @property
    def count(self) -> int:
        """Number of rows seen, less those whose class index is ``ignore_index``."""
    @property
    def sum(self) -> float:
        """The loss sum seen so far, accumulated in float64 (for a divergence: the sum of
        its element terms, before normalisation).
        """
    @property
    def weight_sum(self) -> float:
        """The denominator of the mean so far: ``sum(weight[y])`` over the rows seen with a
        class index that is not ignored (their number without ``weight``), plus the
        number of rows seen with class probabilities; with ``sample_weight``, the sum of
        the sample weights of the rows not ignored.
        """
    @property
    def reduction(self) -> Literal["mean", "sum"]:
        """``"mean"`` or ``"sum"``."""
    @property
    def axis(self) -> int:
        """The class axis."""
    @property
    def weight(self) -> npt.NDArray[np.float64] | None:
        """The class weights (a read-only float64 array), or ``None``."""
    @property
    def ignore_index(self) -> int:
        """The class index of rows that do not count."""
    @property
    def label_smoothing(self) -> float:
        """The label smoothing."""
    @property
    def counts(self) -> npt.NDArray[np.int64] | None:
        """Rows counted per group (an int64 array; rows whose class index is
        ``ignore_index`` do not count), or ``None`` when not grouped.
        """
    @property
    def n_groups(self) -> int | None:
        """The fixed number of groups, or ``None`` (the state grows with the codes seen)."""
    @property
    def nan_policy(self) -> _NanPolicy:
        """What ``update`` does with NaN: ``'propagate'``, ``'omit'`` or ``'raise'``."""
    def __reduce__(self) -> tuple[object, ...]: ...
    def __setstate__(
        self, state: tuple[float, float, int, float, float] | tuple[object, object]
    ) -> None: ...

@final
class EntropyAccumulator:
    """Streaming :func:`crossent.entropy` of everything seen as one distribution
    (``axis=None``).

    ``update(p)`` adds a batch of the distribution; ``result()`` is the entropy of all
    values seen together: ``S / P + log(P)`` from the sums ``S = -sum(p * log(p))`` and
    ``P = sum(p)``, which the accumulator folds (divided by ``log(base)``; ``-S`` without
    normalisation; 0 before any value). Batches are reduced in chunks of
    ``crossent.CHUNK`` elements: when every batch but the last is C-contiguous and holds a
    multiple of ``crossent.CHUNK`` elements, ``result()`` has exactly the bits of
    ``crossent.entropy(everything, axis=None)`` on the concatenation, for any thread
    count; with other cuts it agrees to about 1e-12 relative.

    One accumulator may be shared by threads: its methods take turns on an internal lock
    (``update`` computes without holding the GIL while the others wait), so its state is
    always that of the calls in some serial order.

    Parameters
    ----------
    base : float, optional
        Logarithm base (natural logarithm by default).
    normalize : bool, default True
        ``False`` uses the values as given: ``-sum(p * log(p))``.
    nan_policy : {'propagate', 'omit', 'raise'}, default 'propagate'
        What a NaN does, as in the function: ``'omit'`` leaves out each pair holding one
        (from the sums and from ``count``), ``'raise'`` raises
        :class:`crossent.DomainError` and leaves the accumulator unchanged.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> counts = np.array([3.0, 1.0, 0.0, 4.0, 2.0, 6.0])
    >>> acc = crossent.EntropyAccumulator(base=2)
    >>> acc.update(counts[:2])
    >>> acc.update(counts[2:])
    >>> acc.result() == crossent.entropy(counts, axis=None, base=2)
    True
    >>> round(acc.result(), 6)
    2.108459
    """
    def __new__(
        cls,
        *,
        base: float | None = None,
        normalize: bool = True,
        nan_policy: _NanPolicy = "propagate",
    ) -> Self: ...
    def update(self, p: _ArrayLike) -> None:
        """Adds one batch of the distribution (non-negative values, any shape and layout;
        ``q`` broadcast against ``p``). A negative value (with
        ``nan_policy='raise'``, a NaN too) raises ``ValueError`` and leaves the
        accumulator unchanged; with ``nan_policy='omit'`` the pairs holding a NaN are
        left out (and not counted).
        """
    def merge(self, other: EntropyAccumulator) -> None:
        """Adds the state of ``other`` (an accumulator of the same class, e.g. one that
        saw another part of the data) to this one. ``other`` is left unchanged.

        ``other`` must have been built with the same parameters (every constructor
        argument, arrays by value); otherwise ``ValueError`` names the first that
        differs and neither accumulator changes.
        """
    def reset(self) -> None:
        """Forgets every batch seen: back to the state of a new accumulator."""
    def result(self) -> float:
        """The loss over everything seen so far: what one call on the concatenated
        batches returns (see the class documentation); per group (a float64 array)
        when the updates were grouped.
        """
    @property
    def count(self) -> int:
        """Number of elements seen."""
    @property
    def sum(self) -> float:
        """The loss sum seen so far, accumulated in float64 (for a divergence: the sum of
        its element terms, before normalisation).
        """
    @property
    def base(self) -> float | None:
        """The logarithm's base (``None``: natural logarithm)."""
    @property
    def normalize(self) -> bool:
        """Whether the distributions are normalised by their totals."""
    @property
    def nan_policy(self) -> _NanPolicy:
        """What ``update`` does with NaN: ``'propagate'``, ``'omit'`` or ``'raise'``."""
    def __reduce__(self) -> tuple[object, ...]: ...
    def __setstate__(self, state: tuple[float, float, int, float, float]) -> None: ...

@final
class CrossEntropyAccumulator:
    """Streaming :func:`crossent.cross_entropy` of everything seen as one pair of
    distributions (``axis=None``).

    ``update(p, q)`` adds a batch of both; ``result()`` is ``S / P + log(Q)`` from the
    sums ``S = -sum(p * log(q))``, ``P = sum(p)`` and ``Q = sum(q)`` (divided by
    ``log(base)``; ``S`` without normalisation; 0 before any value). Exact bits as for
    :class:`EntropyAccumulator`: batches of whole ``crossent.CHUNK`` elements
    (C-contiguous) give the bits of ``crossent.cross_entropy(p, q, axis=None)`` on the
    concatenation; other cuts agree to about 1e-12 relative.

    One accumulator may be shared by threads: its methods take turns on an internal lock
    (``update`` computes without holding the GIL while the others wait), so its state is
    always that of the calls in some serial order.

    Parameters
    ----------
    base : float, optional
        Logarithm base (natural logarithm by default).
    normalize : bool, default True
        ``False`` uses the values as given: ``-sum(p * log(q))``.
    nan_policy : {'propagate', 'omit', 'raise'}, default 'propagate'
        What a NaN does, as in the function: ``'omit'`` leaves out each pair holding one
        (from the sums and from ``count``), ``'raise'`` raises
        :class:`crossent.DomainError` and leaves the accumulator unchanged.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> p = np.array([1.0, 2.0, 3.0, 4.0])
    >>> q = np.array([4.0, 3.0, 2.0, 1.0])
    >>> acc = crossent.CrossEntropyAccumulator()
    >>> acc.update(p[:3], q[:3])
    >>> acc.update(p[3:], q[3:])
    >>> acc.result() == crossent.cross_entropy(p, q, axis=None)
    True
    >>> round(acc.result(), 6)
    1.736289
    """
    def __new__(
        cls,
        *,
        base: float | None = None,
        normalize: bool = True,
        nan_policy: _NanPolicy = "propagate",
    ) -> Self: ...
    def update(self, p: _ArrayLike, q: _ArrayLike) -> None:
        """Adds one batch of the distribution (non-negative values, any shape and layout;
        ``q`` broadcast against ``p``). A negative value (with
        ``nan_policy='raise'``, a NaN too) raises ``ValueError`` and leaves the
        accumulator unchanged; with ``nan_policy='omit'`` the pairs holding a NaN are
        left out (and not counted).
        """
    def merge(self, other: CrossEntropyAccumulator) -> None:
        """Adds the state of ``other`` (an accumulator of the same class, e.g. one that
        saw another part of the data) to this one. ``other`` is left unchanged.

        ``other`` must have been built with the same parameters (every constructor
        argument, arrays by value); otherwise ``ValueError`` names the first that
        differs and neither accumulator changes.
        """
    def reset(self) -> None:
        """Forgets every batch seen: back to the state of a new accumulator."""
    def result(self) -> float:
        """The loss over everything seen so far: what one call on the concatenated
        batches returns (see the class documentation); per group (a float64 array)
        when the updates were grouped.
        """
    @property
    def count(self) -> int:
        """Number of elements seen."""
    @property
    def sum(self) -> float:
        """The loss sum seen so far, accumulated in float64 (for a divergence: the sum of
        its element terms, before normalisation).
        """
    @property
    def base(self) -> float | None:
        """The logarithm's base (``None``: natural logarithm)."""
    @property
    def normalize(self) -> bool:
        """Whether the distributions are normalised by their totals."""
    @property
    def nan_policy(self) -> _NanPolicy:
        """What ``update`` does with NaN: ``'propagate'``, ``'omit'`` or ``'raise'``."""
    def __reduce__(self) -> tuple[object, ...]: ...
    def __setstate__(self, state: tuple[float, float, int, float, float]) -> None: ...

@final
class KLDivergenceAccumulator:
    """Streaming :func:`crossent.kl_divergence` of everything seen as one pair of
    distributions (``axis=None``).

    ``update(p, q)`` adds a batch of both; ``result()`` is ``S / P + log(Q) - log(P)``
    from the sums ``S = sum(p * log(p / q))``, ``P = sum(p)`` and ``Q = sum(q)`` (divided
    by ``log(base)``; ``S`` without normalisation; 0 before any value). Exact bits as for
    :class:`EntropyAccumulator`: batches of whole ``crossent.CHUNK`` elements
    (C-contiguous) give the bits of ``crossent.kl_divergence(p, q, axis=None)`` on the
    concatenation; other cuts agree to about 1e-12 relative.

    One accumulator may be shared by threads: its methods take turns on an internal lock
    (``update`` computes without holding the GIL while the others wait), so its state is
    always that of the calls in some serial order.

    Parameters
    ----------
    base : float, optional
        Logarithm base (natural logarithm by default).
    normalize : bool, default True
        ``False`` uses the values as given: ``sum(rel_entr(p, q))``.
    nan_policy : {'propagate', 'omit', 'raise'}, default 'propagate'
        What a NaN does, as in the function: ``'omit'`` leaves out each pair holding one
        (from the sums and from ``count``), ``'raise'`` raises
        :class:`crossent.DomainError` and leaves the accumulator unchanged.

    Examples
    --------
    >>> import math, numpy as np, crossent
    >>> p = np.array([1.0, 2.0, 3.0, 4.0])
    >>> q = np.array([4.0, 3.0, 2.0, 1.0])
    >>> acc = crossent.KLDivergenceAccumulator()
    >>> for i in range(0, 4, 2):
    ...     acc.update(p[i:i + 2], q[i:i + 2])
    >>> math.isclose(acc.result(), crossent.kl_divergence(p, q, axis=None), rel_tol=1e-12)
    True
    >>> round(acc.result(), 6)
    0.456435
    """
    def __new__(
        cls,
        *,
        base: float | None = None,
        normalize: bool = True,
        nan_policy: _NanPolicy = "propagate",
    ) -> Self: ...
    def update(self, p: _ArrayLike, q: _ArrayLike) -> None:
        """Adds one batch of the distribution (non-negative values, any shape and layout;
        ``q`` broadcast against ``p``). A negative value (with
        ``nan_policy='raise'``, a NaN too) raises ``ValueError`` and leaves the
        accumulator unchanged; with ``nan_policy='omit'`` the pairs holding a NaN are
        left out (and not counted).
        """
    def merge(self, other: KLDivergenceAccumulator) -> None:
        """Adds the state of ``other`` (an accumulator of the same class, e.g. one that
        saw another part of the data) to this one. ``other`` is left unchanged.

        ``other`` must have been built with the same parameters (every constructor
        argument, arrays by value); otherwise ``ValueError`` names the first that
        differs and neither accumulator changes.
        """
    def reset(self) -> None:
        """Forgets every batch seen: back to the state of a new accumulator."""
    def result(self) -> float:
        """The loss over everything seen so far: what one call on the concatenated
        batches returns (see the class documentation); per group (a float64 array)
        when the updates were grouped.
        """
    @property
    def count(self) -> int:
        """Number of elements seen."""
    @property
    def sum(self) -> float:
        """The loss sum seen so far, accumulated in float64 (for a divergence: the sum of
        its element terms, before normalisation).
        """
    @property
    def base(self) -> float | None:
        """The logarithm's base (``None``: natural logarithm)."""
    @property
    def normalize(self) -> bool:
        """Whether the distributions are normalised by their totals."""
    @property
    def nan_policy(self) -> _NanPolicy:
        """What ``update`` does with NaN: ``'propagate'``, ``'omit'`` or ``'raise'``."""
    def __reduce__(self) -> tuple[object, ...]: ...
    def __setstate__(self, state: tuple[float, float, int, float, float]) -> None: ...

@final
class JensenShannonAccumulator:
    """Streaming :func:`crossent.jensen_shannon` without normalisation, of everything seen as
    one pair of distributions (``axis=None``): for distributions that are normalised
    already (each sums to 1 over all batches).

    ``update(p, q)`` adds a batch of both; ``result()`` is ``S / 2`` from the sum
    ``S = sum(rel_entr(p, m) + rel_entr(q, m))``, ``m = (p + q) / 2`` (divided by
    ``log(base)``; 0 before any value). Exact bits as for :class:`EntropyAccumulator`:
    batches of whole ``crossent.CHUNK`` elements (C-contiguous) give the bits of
    ``crossent.jensen_shannon(p, q, axis=None, normalize=False)`` on the concatenation.

    ``normalize`` must be ``False`` (the default ``True`` raises ``ValueError``):
    normalising needs the totals ``sum(p)`` and ``sum(q)`` inside every logarithm, so no
    state of part of the data determines the result. Normalise first (with the totals of
    a first pass), or use :func:`crossent.jensen_shannon` on the whole data;
    :func:`crossent.dask.jensen_shannon` takes the two passes over chunked data.

    One accumulator may be shared by threads: its methods take turns on an internal lock
    (``update`` computes without holding the GIL while the others wait), so its state is
    always that of the calls in some serial order.

    Parameters
    ----------
    base : float, optional
        Logarithm base (natural logarithm by default).
    normalize : bool
        Must be ``False``.
    nan_policy : {'propagate', 'omit', 'raise'}, default 'propagate'
        What a NaN does, as in the function: ``'omit'`` leaves out each pair holding one
        (from the sums and from ``count``), ``'raise'`` raises
        :class:`crossent.DomainError` and leaves the accumulator unchanged.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> p = np.array([0.1, 0.4, 0.2, 0.3])
    >>> q = np.array([0.25, 0.25, 0.25, 0.25])
    >>> acc = crossent.JensenShannonAccumulator(base=2, normalize=False)
    >>> acc.update(p[:2], q[:2])
    >>> acc.update(p[2:], q[2:])
    >>> acc.result() == crossent.jensen_shannon(p, q, axis=None, base=2, normalize=False)
    True
    >>> round(acc.result(), 6)
    0.040202
    """
    # normalize=True (the default, as for jensen_shannon) raises ValueError: only the
    # unnormalised divergence can be accumulated.
    def __new__(
        cls,
        *,
        base: float | None = None,
        normalize: bool = True,
        nan_policy: _NanPolicy = "propagate",
    ) -> Self: ...
    def update(self, p: _ArrayLike, q: _ArrayLike) -> None:
        """Adds one batch of the distribution (non-negative values, any shape and layout;
        ``q`` broadcast against ``p``). A negative value (with
        ``nan_policy='raise'``, a NaN too) raises ``ValueError`` and leaves the
        accumulator unchanged; with ``nan_policy='omit'`` the pairs holding a NaN are
        left out (and not counted).
        """
    def merge(self, other: JensenShannonAccumulator) -> None:
        """Adds the state of ``other`` (an accumulator of the same class, e.g. one that
        saw another part of the data) to this one. ``other`` is left unchanged.

        ``other`` must have been built with the same parameters (every constructor
        argument, arrays by value); otherwise ``ValueError`` names the first that
        differs and neither accumulator changes.
        """
    def reset(self) -> None:
        """Forgets every batch seen: back to the state of a new accumulator."""
    def result(self) -> float:
        """The loss over everything seen so far: what one call on the concatenated
        batches returns (see the class documentation); per group (a float64 array)
        when the updates were grouped.
        """
    @property
    def count(self) -> int:
        """Number of elements seen."""
    @property
    def sum(self) -> float:
        """The loss sum seen so far, accumulated in float64 (for a divergence: the sum of
        its element terms, before normalisation).
        """
    @property
    def base(self) -> float | None:
        """The logarithm's base (``None``: natural logarithm)."""
    @property
    def normalize(self) -> bool:
        """Whether the distributions are normalised by their totals."""
    @property
    def nan_policy(self) -> _NanPolicy:
        """What ``update`` does with NaN: ``'propagate'``, ``'omit'`` or ``'raise'``."""
    def __reduce__(self) -> tuple[object, ...]: ...
    def __setstate__(self, state: tuple[float, float, int, float, float]) -> None: ...

def binary_cross_entropy_with_logits_grad(
    input: _ArrayLike,
    target: _ArrayLike,
    *,
    weight: _ArrayLike | None = None,
    pos_weight: _ArrayLike | None = None,
    reduction: Literal["sum", "mean"] = "sum",
    out: tuple[_FloatArray, _FloatArray] | None = None,
) -> tuple[_FloatArray, _FloatArray]:
    """Gradient and diagonal Hessian of binary cross-entropy with logits, per element.

    For each element, with ``s = sigmoid(input)``, ``y = target``, ``w = weight`` and
    ``c = pos_weight``::

        grad = w * ((1 + (c - 1) * y) * s - c * y)        # = w * (s - y) without pos_weight
        hess = w * (1 + (c - 1) * y) * s * (1 - s)

    the first and second derivatives of
    :func:`binary_cross_entropy_with_logits` with respect to each logit. This is what a custom
    objective of XGBoost (``obj=``) or LightGBM (``objective=``) returns: two arrays of the
    predictions' shape. ``s`` and ``1 - s`` are both computed from ``exp(-|x|)``, so the Hessian
    keeps its relative accuracy for large logits instead of rounding to 0.

    Parameters
    ----------
    input : array_like of float16, bfloat16, float32 or float64
        Logits (raw margins), any shape and layout (read in place; float16 and bfloat16 are
        computed in float32, and the gradient and Hessian rounded to their dtype).
    target : array_like
        Same shape: probabilities (any float dtype, any real value as for the loss) or labels
        0/1 (bool, uint8, int8, int32, int64).
    weight, pos_weight : array_like, optional
        As in :func:`binary_cross_entropy_with_logits`, broadcast to ``input``'s shape.
    reduction : {"sum", "mean"}
        Derivatives of the summed loss (each element's own derivatives: what boosting wants),
        or of the mean loss (divided by the element count, as ``loss.backward()`` after torch's
        default ``reduction="mean"``).
    out : tuple of two numpy.ndarray, optional
        ``(grad, hess)`` arrays of ``input``'s dtype and shape to write into.

    Returns
    -------
    (grad, hess) : tuple of numpy.ndarray
        Arrays of ``input``'s shape and dtype.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> x = np.array([0.0, 2.0, -1.0])
    >>> y = np.array([1, 0, 1])
    >>> grad, hess = crossent.binary_cross_entropy_with_logits_grad(x, y)
    >>> grad.round(6)
    array([-0.5     ,  0.880797, -0.731059])
    >>> hess.round(6)
    array([0.25    , 0.104994, 0.196612])

    As a LightGBM objective (scikit-learn API): ``objective=lambda y, raw:
    crossent.binary_cross_entropy_with_logits_grad(raw, y)``.
    """

def _isa() -> str: ...
def _reduction(reduction: object) -> Literal["mean", "sum", "none"]: ...
def _nan_policy(nan_policy: object) -> _NanPolicy: ...
def softmax_cross_entropy_grad(
    logits: _ArrayLike,
    target: _ArrayLike,
    *,
    axis: int = -1,
    weight: _ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: Literal["sum", "mean"] = "sum",
    out: tuple[_FloatArray, _FloatArray] | None = None,
) -> tuple[_FloatArray, _FloatArray]:
    """Gradient and diagonal Hessian of softmax cross-entropy with respect to the logits.

    The derivatives of :func:`softmax_cross_entropy` (same arguments, same PyTorch semantics)
    with respect to every logit. With ``p = softmax(logits)`` along ``axis``, class weights
    ``w`` (sum ``W``), ``C`` classes and label smoothing ``eps``::

        class index y:  grad = A * p - (1 - eps) * w[y] * onehot(y) - eps / C * w,
                        A = (1 - eps) * w[y] + eps / C * W     (all 0 for an ignored row)
        probabilities:  grad = A * p - w * t',  t' = (1 - eps) * t + eps / C,  A = sum(w * t')
        both:           hess = A * p * (1 - p)      (the diagonal of the Hessian)

    Arrays of ``logits``' shape and float dtype (bool and integer logits are converted to
    float64, as by the loss; float16 and bfloat16 are computed in float32 and rounded to their
    dtype): the shape XGBoost and LightGBM multi-class custom
    objectives take (``(n_rows, n_classes)``). Each row's log-sum-exp is computed in a first
    read of the row, the outputs in a second; the softmax is never stored.

    Parameters
    ----------
    logits, target, axis, weight, ignore_index, label_smoothing
        As in :func:`softmax_cross_entropy`.
    reduction : {"sum", "mean"}
        Derivatives of the summed loss, or of PyTorch's mean (divided by ``sum(w[y])`` over
        the rows not ignored, or by the row count for probabilities).
    out : tuple of two numpy.ndarray, optional
        ``(grad, hess)`` arrays of ``logits``' dtype (float64 for bool and integer logits)
        and shape to write into.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> grad, hess = crossent.softmax_cross_entropy_grad(logits, np.array([0, 2]))
    >>> grad.round(4)
    array([[-0.2144,  0.1753,  0.0391],
           [ 0.0493,  0.0545, -0.1038]])
    >>> hess.round(4)
    array([[0.1684, 0.1446, 0.0376],
           [0.0469, 0.0515, 0.093 ]])
    """

def _log_loss(
    y_pred: npt.ArrayLike,
    codes: npt.ArrayLike,
    classes: int,
    sample_weight: npt.ArrayLike | None = None,
) -> tuple[float, float, int, bool]: ...
def _log_loss_groups(
    y_pred: npt.ArrayLike,
    codes: npt.ArrayLike,
    classes: int,
    sample_weight: npt.ArrayLike | None,
    groups: npt.ArrayLike,
    n_groups: SupportsIndex | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64], bool]: ...

@final
class LogLossAccumulator:
    """Streaming :func:`crossent.log_loss` over batches, with the classes fixed at construction.

    ``update(y_true, y_pred, sample_weight=None)`` adds a batch (arguments as for
    :func:`crossent.log_loss`; a batch may lack any class, or be empty); ``result()`` gives
    the log loss over every sample seen: the weighted mean (``normalize=True``) or sum. A batch
    whose ``y_pred`` rows do not sum to one warns as :func:`crossent.log_loss` does; a batch
    with a bad value raises and leaves the accumulator unchanged. When every batch but the last
    is C-contiguous and holds a multiple of ``max(1, crossent.CHUNK // n_classes)`` rows, the
    result has exactly the bits of one call on the concatenated arrays; with other cuts it
    agrees to about 1e-12 relative. ``merge(other)`` adds another accumulator's state (same
    ``labels`` and ``normalize``), ``reset()`` starts over; accumulators pickle and copy exactly,
    and may be shared by threads (as :class:`crossent.BinaryCrossEntropyAccumulator`).

    Parameters
    ----------
    labels : array_like
        Every class, as :func:`crossent.log_loss`'s ``labels=`` (sorted as scikit-learn sorts
        them, with a ``UserWarning`` when not given sorted): ``y_pred``'s columns follow them.
    normalize : bool, default True
        ``result()`` is the (weighted) mean over samples; ``False``: the (weighted) sum. The
        mean is NaN while the weights seen sum to zero (:func:`crossent.log_loss` raises).

    Examples
    --------
    >>> import numpy as np, crossent
    >>> acc = crossent.LogLossAccumulator(labels=["cat", "dog", "eel"])
    >>> acc.update(["cat", "cat"], [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]])
    >>> acc.update(["eel"], [[0.1, 0.1, 0.8]])
    >>> acc.count
    3
    >>> round(acc.result(), 6)
    0.363548
    >>> y = ["cat", "cat", "eel"]
    >>> p = [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]
    >>> acc.result() == crossent.log_loss(y, p, labels=["cat", "dog", "eel"])
    True
    >>> crossent.log_loss(y, p)  # the batches lack "dog": scikit-learn needs labels=
    Traceback (most recent call last):
    ValueError: y_true and y_prob contain different number of classes: 2 vs 3. ...
    """
    def __new__(
        cls, *, labels: npt.ArrayLike, normalize: bool = True, n_groups: SupportsIndex | None = None
    ) -> Self: ...
    def update(
        self,
        y_true: npt.ArrayLike,
        y_pred: npt.ArrayLike,
        sample_weight: npt.ArrayLike | None = None,
        *,
        groups: npt.ArrayLike | None = None,
    ) -> None:
        """Adds one batch: ``y_true`` labels (each among ``labels``), ``y_pred`` of shape
        ``(n, n_classes)`` (or ``(n,)`` with two classes), optional ``sample_weight``, and
        ``groups`` (integer codes, one per sample) when the loss is kept per group.
        """
    def merge(self, other: LogLossAccumulator) -> None:
        """Adds the state of ``other`` (an accumulator of the same class, e.g. one that
        saw another part of the data) to this one. ``other`` is left unchanged.

        ``other`` must have been built with the same parameters (every constructor
        argument, arrays by value); otherwise ``ValueError`` names the first that
        differs and neither accumulator changes.
        """
    def reset(self) -> None:
        """Forgets every batch seen: back to the state of a new accumulator."""
    def result(self) -> float | npt.NDArray[np.float64]:
        """The loss over everything seen so far: what one call on the concatenated
        batches returns (see the class documentation); per group (a float64 array)
        when the updates were grouped.
        """
    @property
    def count(self) -> int:
        """Number of samples seen."""
    @property
    def sum(self) -> float:
        """The loss sum seen so far, accumulated in float64 (for a divergence: the sum of
        its element terms, before normalisation).
        """
    @property
    def weight_sum(self) -> float:
        """The weight sum so far (the number of samples without ``sample_weight``)."""
    @property
    def labels(self) -> list[Any]:
        """The sorted classes, as a list."""
    @property
    def normalize(self) -> bool:
        """Whether ``result()`` is the mean (``True``) or the sum."""
    @property
    def counts(self) -> npt.NDArray[np.int64] | None:
        """Samples seen per group (an int64 array), or ``None`` when not grouped."""
    @property
    def n_groups(self) -> int | None:
        """The fixed number of groups, or ``None`` (the state grows with the codes seen)."""
    def __reduce__(self) -> tuple[object, ...]: ...
    def __setstate__(
        self, state: tuple[float, float, int, float, float] | tuple[object, object]
    ) -> None: ...
