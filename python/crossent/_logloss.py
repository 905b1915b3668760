"""``crossent.log_loss``: scikit-learn's ``log_loss`` without the one-hot matrix.

The labels are mapped to class codes here (with scikit-learn's label rules and errors); the
codes and the predictions go to one fused Rust pass (``crossent._core._log_loss``) that checks
every prediction, sums each row for the "do not sum to one" warning, picks ``p[i, code_i]``,
clips, takes the log and adds the weighted sum.
"""

from __future__ import annotations

import warnings
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from crossent._core import _log_loss, _log_loss_groups

# Labels are encoded this many at a time, so that the temporaries of the generic path
# (searchsorted, membership) stay this size whatever the number of rows.
_CHUNK = 1 << 16

_UNNORMALIZED = "The y_prob values do not sum to one. Make sure to pass probabilities."


def _labels_array(y: Any, name: str) -> np.ndarray:
    """``y`` as a 1-D label array (a column vector is raveled, as scikit-learn does)."""
    try:
        arr = np.asarray(y)
    except Exception as e:
        raise TypeError(f"'{name}' could not be read as an array of labels: {e}") from e
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(
            f"'{name}' must be a 1-D array of labels, got shape {arr.shape}"
            + (
                " (a label-indicator matrix: pass one label per row, e.g. y.argmax(axis=1))"
                if arr.ndim == 2
                else ""
            )
        )
    kind = arr.dtype.kind
    if kind == "f":
        if np.isnan(arr).any():
            raise ValueError(f"Input '{name}' contains NaN.")
        if not np.all(np.mod(arr, 1) == 0):
            raise ValueError(
                f"Unknown label type: '{name}' holds non-integer floats (continuous values, "
                "not class labels)"
            )
    elif kind == "c" or kind == "V" or kind == "M" or kind == "m":
        raise TypeError(f"'{name}' must hold class labels, got dtype {arr.dtype}")
    elif kind == "O":
        types = {type(v) for v in arr.tolist()}
        if any(v is None for v in arr.tolist()):
            raise ValueError(f"Unknown label type: '{name}' contains None")
        if any(issubclass(t, str) for t in types) and not all(issubclass(t, str) for t in types):
            raise ValueError(f"Mix of label input types (string and number) in '{name}'")
    return arr


def _sorted_unique(arr: np.ndarray, name: str) -> np.ndarray:
    try:
        return np.unique(arr)
    except TypeError as e:
        raise ValueError(f"Mix of label input types in '{name}': {e}") from e


_NATIVE_CODES = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32)


def _present(y: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Which of the integers ``lo..hi`` occur in ``y`` (chunked ``bincount``: no temporary of
    ``y``'s size)."""
    seen = np.zeros(hi - lo + 1, dtype=bool)
    for start in range(0, y.shape[0], _CHUNK):
        part = y[start : start + _CHUNK]
        counts = np.bincount((part.astype(np.int64) - lo), minlength=hi - lo + 1)
        seen |= counts > 0
    return seen


def _codes_of(y: np.ndarray, classes: np.ndarray, labels: Any) -> np.ndarray:
    """Class codes of ``y`` in the sorted ``classes``, computed a chunk at a time; a label not
    in ``classes`` raises scikit-learn's error."""
    dtype = np.int32 if classes.shape[0] < 2**31 else np.int64
    codes = np.empty(y.shape[0], dtype=dtype)
    k = classes.shape[0]
    for start in range(0, y.shape[0], _CHUNK):
        part = y[start : start + _CHUNK]
        idx = np.searchsorted(classes, part)
        found = classes[np.minimum(idx, k - 1)] == part
        if not np.all(found):
            raise _not_in_labels(y, classes, labels)
        codes[start : start + _CHUNK] = idx
    return codes


def _fixed_classes(labels: Any) -> tuple[np.ndarray, list[Any]]:
    """The sorted classes of a ``labels=`` argument (warning as scikit-learn does when
    ``labels`` is not sorted), and ``labels`` as given, for messages."""
    given = _labels_array(labels, "labels")
    if given.shape[0] == 0:
        raise ValueError("'labels' must contain at least two labels, got none")
    classes = _sorted_unique(given, "labels")
    if classes.shape[0] == 1:
        raise ValueError(
            f"The labels array needs to contain at least two labels, got {classes}. "
            "('labels' must name at least two classes)"
        )
    listed = given.tolist()
    if classes.shape != given.shape or not np.all(classes == given):
        warnings.warn(
            f"Labels passed were {listed}. But this function "
            "assumes labels are ordered lexicographically. "
            f"Pass the ordered labels={classes.tolist()} and ensure that "
            "the columns of y_prob correspond to this ordering.",
            UserWarning,
            stacklevel=3,
        )
    return classes, listed


def _is_range(classes: np.ndarray) -> bool:
    """True if the sorted integer ``classes`` are exactly ``0..K-1``."""
    return (
        classes.dtype.kind in "iub"
        and int(classes[0]) == 0
        and int(classes[-1]) == classes.shape[0] - 1
    )


def _native(y: np.ndarray) -> np.ndarray | None:
    """``y`` itself if the kernel reads its dtype as codes (a bool array as its bytes), else
    ``None``."""
    if y.dtype == np.bool_:
        return y.view(np.uint8)
    if y.dtype.type in _NATIVE_CODES or y.dtype == np.dtype(np.intp):
        return y
    return None


def _not_in_labels(y: np.ndarray, classes: np.ndarray, listed: list[Any]) -> ValueError:
    missing = set(y.tolist()) - set(classes.tolist())
    return ValueError(
        f"y_true contains values {missing} not belonging to the passed labels {listed}. "
        "('y_true' holds labels that 'labels' does not name)"
    )


def _encode_fixed(y: np.ndarray, classes: np.ndarray, listed: list[Any]) -> np.ndarray:
    """Codes of ``y`` in the fixed sorted ``classes``: ``y`` itself (read in place) when the
    classes are ``0..K-1`` and ``y`` is an integer array; a code array otherwise."""
    native = _native(y)
    if native is not None and _is_range(classes):
        if not y.shape[0]:
            return native
        if y.dtype == np.bool_:
            # Bytes other than 0/1 read as True by NumPy: codes only if every byte is 0 or 1.
            return native if int(native.max()) <= 1 else (native != 0).view(np.uint8)
        if int(y.min()) < 0 or int(y.max()) >= classes.shape[0]:
            raise _not_in_labels(y, classes, listed)
        return native
    numeric = "iubf"
    if (y.dtype.kind in numeric) != (classes.dtype.kind in numeric) and "O" not in (
        y.dtype.kind + classes.dtype.kind
    ):
        raise _not_in_labels(y, classes, listed)
    try:
        return _codes_of(y, classes, listed)
    except TypeError as e:
        raise ValueError(f"Mix of label input types in 'y_true' and 'labels': {e}") from e


def _encode(y: np.ndarray, labels: Any, columns: int) -> tuple[np.ndarray, np.ndarray, Any]:
    """``(codes, classes, labels as given)`` of ``y_true`` for ``y_pred`` with ``columns``
    classes (2 for binary predictions), with scikit-learn's errors."""
    if labels is not None:
        classes, listed = _fixed_classes(labels)
        return _encode_fixed(y, classes, listed), classes, listed
    native = _native(y)
    if native is not None and y.shape[0]:
        lo, hi = int(y.min()), int(y.max())
        if hi - lo < min(1 << 20, max(4 * columns, y.shape[0])):
            seen = _present(y, lo, hi)
            classes = (np.flatnonzero(seen) + lo).astype(y.dtype)
            _check_inferred(classes, columns)
            if lo == 0 and seen.all():
                return _encode_fixed(y, classes, classes.tolist()), classes, None
            return _codes_of(y, classes, None), classes, None
    classes = _sorted_unique(y, "y_true")
    _check_inferred(classes, columns)
    return _codes_of(y, classes, None), classes, None


def _check_inferred(classes: np.ndarray, columns: int) -> None:
    if classes.shape[0] == 1:
        raise ValueError(
            f"y_true contains only one label ({classes[0]}). Please provide the list of all "
            "expected class labels explicitly through the labels argument. ('y_true' has one "
            "class: pass labels=)"
        )
    if classes.shape[0] != columns:
        raise ValueError(
            f"y_true and y_prob contain different number of classes: {classes.shape[0]} vs "
            f"{columns}. Please provide the true labels explicitly through the labels "
            f"argument. Classes found in y_true: {classes} ('y_true' has {classes.shape[0]} "
            f"classes, 'y_pred' {columns})"
        )


def _predictions(y_pred: Any) -> Any:
    """``y_pred`` as an array for its shape (kept as the caller's object when it is one)."""
    if isinstance(y_pred, (str, bytes)) or np.isscalar(y_pred) or y_pred is None:
        raise TypeError(
            f"'y_pred' must be an array of predicted probabilities, got {type(y_pred).__name__}"
        )
    try:
        arr = y_pred if isinstance(y_pred, np.ndarray) else np.asarray(y_pred)
    except Exception as e:
        raise TypeError(f"'y_pred' could not be read as an array: {e}") from e
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"'y_pred' must hold numbers: {e}") from e
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"'y_pred' must hold predicted probabilities (real numbers), got dtype {arr.dtype}"
        )
    return arr


def _columns(y_pred: np.ndarray) -> int:
    if y_pred.ndim == 1 or (y_pred.ndim == 2 and y_pred.shape[1] == 1):
        return 2
    if y_pred.ndim == 2:
        return int(y_pred.shape[1])
    raise ValueError(
        "'y_pred' must be 1-D (the positive class's probability) or 2-D "
        f"(n_samples, n_classes), got shape {y_pred.shape}"
    )


def _check_weight(sample_weight: Any) -> Any:
    if sample_weight is None:
        return None
    if np.isscalar(sample_weight) or isinstance(sample_weight, (str, bytes)):
        raise TypeError(
            "'sample_weight' must be an array of one weight per sample or None, got "
            f"{type(sample_weight).__name__}"
        )
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"'sample_weight' must hold real numbers, got dtype {w.dtype}")
    if w.ndim != 1:
        raise ValueError(
            f"'sample_weight' must be 1-D (one weight per sample), got shape {w.shape}"
        )
    return w


def _check_normalize(normalize: Any) -> bool:
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"'normalize' must be a bool, got {normalize!r}")
    return bool(normalize)


def _prepare(
    y_true: Any, y_pred: Any, sample_weight: Any, labels: Any, fixed: tuple[np.ndarray, Any] | None
) -> tuple[np.ndarray, np.ndarray, Any, np.ndarray]:
    """``(y_pred, codes, sample_weight, classes)`` checked as scikit-learn checks them, for
    ``labels`` (or the classes ``fixed`` at an accumulator's construction)."""
    pred = _predictions(y_pred)
    columns = _columns(pred)
    y = _labels_array(y_true, "y_true")
    w = _check_weight(sample_weight)
    n = pred.shape[0]
    lengths = [n, y.shape[0]] + ([] if w is None else [w.shape[0]])
    if len(set(lengths)) > 1:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: {lengths} "
            "('y_pred' rows, 'y_true' labels"
            + ("" if w is None else ", 'sample_weight' weights")
            + ")"
        )
    if fixed is not None:
        classes, listed = fixed
        codes = _encode_fixed(y, classes, listed)
    else:
        if n == 0:
            raise ValueError(
                f"Found array with 0 sample(s) (shape={pred.shape}) while a minimum of 1 is "
                "required ('y_pred' and 'y_true' are empty)."
            )
        codes, classes, listed = _encode(y, labels, columns)
    if classes.shape[0] != columns:
        raise ValueError(
            "The number of classes in labels is different from that in y_prob. Classes "
            f"found in labels: {classes} ('y_pred' has {columns} columns)"
        )
    return pred, codes, w, classes


@overload
def log_loss(
    y_true: Any,
    y_pred: Any,
    *,
    normalize: bool = True,
    sample_weight: Any = None,
    labels: Any = None,
    groups: None = None,
    n_groups: None = None,
) -> float: ...


@overload
def log_loss(
    y_true: Any,
    y_pred: Any,
    *,
    normalize: bool = True,
    sample_weight: Any = None,
    labels: Any = None,
    groups: Any,
    n_groups: int | None = None,
) -> npt.NDArray[np.float64]: ...


def log_loss(
    y_true: Any,
    y_pred: Any,
    *,
    normalize: bool = True,
    sample_weight: Any = None,
    labels: Any = None,
    groups: Any = None,
    n_groups: int | None = None,
) -> float | npt.NDArray[np.float64]:
    """Log loss (multinomial negative log-likelihood), as :func:`sklearn.metrics.log_loss`.

    The mean (or, with ``normalize=False``, the sum) over samples of
    ``-log(clip(y_pred[i, c_i], eps, 1 - eps))``, where ``c_i`` is the column of sample
    ``i``'s label among the sorted labels and ``eps`` the machine epsilon of ``y_pred``'s dtype
    (float32: ``1.19e-07``, float64: ``2.22e-16``; float16 is widened to float32 but clipped to
    its own ``eps``, ``9.77e-04``). With ``sample_weight``, the mean is
    ``sum(w * loss) / sum(w)`` and the sum ``sum(w * loss)``.

    Same arguments, semantics, warnings and errors as scikit-learn (1.5 and later), without
    its one-hot matrix: memory stays O(1) beyond the inputs for integer labels that are
    already ``0..K-1`` (read in place), and one array of ``n`` int32 class codes for other
    labels (strings, objects, floats, labels outside ``0..K-1``: scikit-learn's
    ``LabelBinarizer`` semantics need their sorted position; inferring the classes of such
    labels also sorts a copy of ``y_true``). ``y_pred`` (float32 or float64, any strides) is
    read in place: one fused pass checks every value, sums each row, picks the label's
    probability, clips and takes the log, in float64, in parallel, with the same bits for any
    thread count.

    Parameters
    ----------
    y_true : array_like, shape (n_samples,)
        Labels of any type NumPy can sort (int, str, bool, object). A column vector is
        accepted; a label-indicator matrix is not (pass ``y.argmax(axis=1)``).
    y_pred : array_like of float, shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, columns in the sorted order of the labels; 1-D (or one
        column): the probability of the positive (larger) label.
    normalize : bool, default True
        Return the (weighted) mean over samples; ``False``: the (weighted) sum.
    sample_weight : array_like, shape (n_samples,), optional
        Non-negative, finite weights; at least one must be non-zero.
    labels : array_like, optional
        The classes, when ``y_true`` may lack some (one batch of a larger set). Sorted as
        scikit-learn sorts them (a ``UserWarning`` when not given sorted); every label of
        ``y_true`` must be among them.
    groups : array_like of int, shape (n_samples,), optional
        Integer group codes ``0 … G-1`` (any integer dtype, read in place): the log loss of
        each group, in one pass (see :doc:`/guide/groups`).
    n_groups : int, optional
        ``G`` (default: the largest code + 1); a code outside ``[0, G)`` raises
        ``ValueError`` naming ``groups`` and its position.

    Returns
    -------
    float or numpy.ndarray
        The log loss (accumulated in float64, also for float32 input, whose log terms are
        taken in float64 of the clipped float32 values); with ``groups``, a float64 array of
        each group's (weighted mean or sum; NaN for the mean of an empty group).

    Raises
    ------
    ValueError
        Wherever scikit-learn raises one: values of ``y_pred`` outside [0, 1] or NaN
        (:class:`crossent.DomainError`, naming the position), inconsistent lengths, one class
        only, a class count that differs from ``y_pred``'s columns, labels not in ``labels``,
        non-integer float labels, weights that are all zero; also negative or non-finite
        weights (a ``DomainError`` naming ``sample_weight``).
    TypeError
        ``normalize`` not a bool, ``sample_weight`` a scalar, arguments of no array type.

    Warns
    -----
    UserWarning
        When a row of ``y_pred`` does not sum to one (``numpy.isclose(row_sum, 1,
        rtol=sqrt(eps))`` fails; checked in float64), or when ``labels`` is not sorted.

    Examples
    --------
    >>> import crossent
    >>> round(crossent.log_loss(["spam", "ham", "ham", "spam"],
    ...                         [[.1, .9], [.9, .1], [.8, .2], [.35, .65]]), 6)
    0.216162
    >>> round(crossent.log_loss([1, 2], [[0.1, 0.9], [0.1, 0.9]], labels=[1, 2]), 6)
    1.203973
    >>> round(crossent.log_loss([0, 1, 1], [0.2, 0.9, 0.6], sample_weight=[1, 2, 1]), 6)
    0.236173
    >>> crossent.log_loss([0, 1, 1, 0], [0.2, 0.9, 0.6, 0.3], groups=[0, 0, 1, 1]).round(6)
    array([0.164252, 0.43375 ])
    """
    normalize = _check_normalize(normalize)
    if groups is None and n_groups is not None:
        raise ValueError("'n_groups' is only used with 'groups'")
    pred, codes, w, classes = _prepare(y_true, y_pred, sample_weight, labels, None)
    if groups is not None:
        sums, weights, _, unnormalized = _log_loss_groups(
            pred, codes, int(classes.shape[0]), w, groups, n_groups
        )
        if unnormalized:
            warnings.warn(_UNNORMALIZED, UserWarning, stacklevel=2)
        if w is not None and weights.sum() == 0.0:
            raise ValueError(
                "Sample weights must contain at least one non-zero number ('sample_weight' "
                "sums to zero)."
            )
        if not normalize:
            return sums
        with np.errstate(invalid="ignore", divide="ignore"):
            means: npt.NDArray[np.float64] = sums / weights
        return means
    total, weight, _, unnormalized = _log_loss(pred, codes, int(classes.shape[0]), w)
    if unnormalized:
        warnings.warn(_UNNORMALIZED, UserWarning, stacklevel=2)
    if w is not None and weight == 0.0:
        raise ValueError(
            "Sample weights must contain at least one non-zero number ('sample_weight' sums "
            "to zero)."
        )
    return total / weight if normalize else total
