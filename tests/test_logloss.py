"""crossent.log_loss against scikit-learn's log_loss: scikit-learn's own log_loss tests ported
(compared live where scikit-learn is installed, against their golden values always), a fuzz
test over shapes, label types, weights and dtypes, the accumulator and the Dask layer."""

from __future__ import annotations

import pickle
import re
import threading
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crossent

try:
    from sklearn.metrics import log_loss as sk_log_loss
except ImportError:  # pragma: no cover - exercised only without scikit-learn
    sk_log_loss = None

live = pytest.mark.skipif(sk_log_loss is None, reason="scikit-learn is not installed")

RTOL = 1e-12


def sk(*args: Any, **kwargs: Any) -> float | None:
    """scikit-learn's value (its warnings silenced), or None without scikit-learn."""
    if sk_log_loss is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(sk_log_loss(*args, **kwargs))


def same_as_sklearn(y_true: Any, y_pred: Any, **kwargs: Any) -> float:
    """crossent's value, asserted equal to scikit-learn's (where installed) to 1e-12."""
    ours = crossent.log_loss(y_true, y_pred, **kwargs)
    theirs = sk(y_true, y_pred, **kwargs)
    if theirs is not None:
        assert ours == pytest.approx(theirs, rel=RTOL, abs=1e-300)
    return float(ours)


# --- scikit-learn's tests (sklearn/metrics/tests/test_classification.py), ported --------------


def test_log_loss() -> None:
    # binary case with symbolic labels ("no" < "yes")
    y_true = ["no", "no", "no", "yes", "yes", "yes"]
    y_pred = np.array(
        [[0.5, 0.5], [0.1, 0.9], [0.01, 0.99], [0.9, 0.1], [0.75, 0.25], [0.001, 0.999]]
    )
    loss = same_as_sklearn(y_true, y_pred)
    # -mean(bernoulli.logpmf(y == "yes", p[:, 1])), written out
    yes = np.array(y_true) == "yes"
    loss_true = -np.mean(np.where(yes, np.log(y_pred[:, 1]), np.log1p(-y_pred[:, 1])))
    np.testing.assert_allclose(loss, loss_true)

    # multiclass case
    y_true2 = [1, 0, 2]
    y_pred2 = [[0.2, 0.7, 0.1], [0.6, 0.2, 0.2], [0.6, 0.1, 0.3]]
    loss = same_as_sklearn(y_true2, y_pred2, normalize=True)
    np.testing.assert_allclose(loss, 0.6904911)

    # all the shapes and axes right: the doubled data
    loss = same_as_sklearn(y_true2 * 2, y_pred2 * 2, normalize=False)
    np.testing.assert_allclose(loss, 0.6904911 * 6)

    # error if the number of classes differ
    with pytest.raises(ValueError, match="different number of classes"):
        crossent.log_loss([1, 0, 2], [[0.3, 0.7], [0.6, 0.4], [0.4, 0.6]])

    # error if labels do not contain all values of y_true
    error_str = "y_true contains values {'b'} not belonging to the passed labels ['a', 'c', 'd']."
    with pytest.raises(ValueError, match=re.escape(error_str)):
        crossent.log_loss(
            ["a", "b", "c"],
            [[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.1, 0.1, 0.8]],
            labels=["a", "c", "d"],
        )

    # y_true a list of strings
    loss = same_as_sklearn(
        ["ham", "spam", "spam", "ham"], [[0.3, 0.7], [0.6, 0.4], [0.4, 0.6], [0.7, 0.3]]
    )
    np.testing.assert_allclose(loss, 0.7469410)

    # the labels option
    y_true3 = [2, 2]
    error_str = (
        "y_true contains only one label (2). Please provide the list of all "
        "expected class labels explicitly through the labels argument."
    )
    with pytest.raises(ValueError, match=re.escape(error_str)):
        crossent.log_loss(y_true3, [[0.2, 0.8], [0.6, 0.4]])

    error_str = "Found input variables with inconsistent numbers of samples: [3, 2]"
    with pytest.raises(ValueError, match=re.escape(error_str)):
        crossent.log_loss(y_true3, [[0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])

    # works with labels=
    y_score = np.array([[0.1, 0.9], [0.1, 0.9]])
    loss = same_as_sklearn(y_true3, y_score, labels=[1, 2])
    np.testing.assert_allclose(loss, -np.mean(np.log(y_score[:, 1])))

    # labels when len(np.unique(y_true)) != y_pred.shape[1]
    y_score2 = [[0.7, 0.1, 0.2], [0.2, 0.7, 0.1], [0.1, 0.7, 0.2]]
    loss = same_as_sklearn([1, 2, 2], y_score2, labels=[1, 2, 3])
    np.testing.assert_allclose(loss, -np.log(0.7))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_log_loss_eps(dtype: Any) -> None:
    """The clip follows the dtype: float16 and float32 give finite losses for p = 0 and 1."""
    y_true = np.array([0, 1], dtype=dtype)
    y_pred = np.array([1, 0], dtype=dtype)
    loss = crossent.log_loss(y_true, y_pred)
    assert np.isfinite(loss)
    eps = float(np.finfo(dtype).eps)
    np.testing.assert_allclose(loss, -np.log(eps), rtol=1e-15)
    if dtype is not np.float16:  # scikit-learn computes float16 in float16
        theirs = sk(y_true, y_pred)
        if theirs is not None:
            np.testing.assert_allclose(loss, theirs, rtol=1e-6 if dtype is np.float32 else RTOL)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_log_loss_not_probabilities_warning(dtype: Any) -> None:
    y_true = np.array([0, 1, 1, 0])
    y_pred = np.array([[0.2, 0.7], [0.6, 0.3], [0.4, 0.7], [0.8, 0.3]], dtype=dtype)
    with pytest.warns(UserWarning, match="The y_prob values do not sum to one."):
        crossent.log_loss(y_true, y_pred)


@pytest.mark.parametrize(
    ("y_true", "y_pred"),
    [
        ([0, 1, 0], [0, 1, 0]),
        ([0, 1, 0], [[1, 0], [0, 1], [1, 0]]),
        ([0, 1, 2], [[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
    ],
)
def test_log_loss_perfect_predictions(y_true: Any, y_pred: Any) -> None:
    # Because of the clipping, the result is not exactly 0
    assert same_as_sklearn(y_true, y_pred) == pytest.approx(0)


def test_log_loss_pandas_input() -> None:
    pd = pytest.importorskip("pandas")
    y_tr = np.array(["ham", "spam", "spam", "ham"])
    y_pr = np.array([[0.3, 0.7], [0.6, 0.4], [0.4, 0.6], [0.7, 0.3]])
    loss = same_as_sklearn(pd.Series(y_tr), pd.DataFrame(y_pr))
    np.testing.assert_allclose(loss, 0.7469410)


def test_log_loss_warnings() -> None:
    expected_message = re.escape(
        "Labels passed were ['spam', 'eggs', 'ham']. But this function "
        "assumes labels are ordered lexicographically. "
        "Pass the ordered labels=['eggs', 'ham', 'spam'] and ensure that "
        "the columns of y_prob correspond to this ordering."
    )
    with pytest.warns(UserWarning, match=expected_message):
        crossent.log_loss(
            ["eggs", "spam", "ham"],
            [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
            labels=["spam", "eggs", "ham"],
        )


def test_log_loss_y_pred_keyword() -> None:
    """scikit-learn 1.9 renamed its second argument ``y_proba`` (``y_pred`` deprecated);
    crossent keeps ``y_pred``, the name of every scikit-learn release before: positional
    calls are the same in both."""
    y_true = np.array([0, 1, 1, 0])
    y_pred = np.array([[0.1, 0.9], [0.9, 0.1], [0.8, 0.2], [0.35, 0.65]])
    assert crossent.log_loss(y_true, y_pred=y_pred) == crossent.log_loss(y_true, y_pred)
    same_as_sklearn(y_true, y_pred)


# --- what the issue asks beyond scikit-learn's tests ------------------------------------------


def test_labels_for_a_batch_that_lacks_a_class() -> None:
    y_pred = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]])
    with pytest.raises(ValueError, match="labels argument"):
        crossent.log_loss([0, 0], y_pred)
    loss = same_as_sklearn([0, 0], y_pred, labels=[0, 1, 2])
    np.testing.assert_allclose(loss, -np.mean(np.log([0.7, 0.6])), rtol=1e-15)


@pytest.mark.parametrize(
    "y_true",
    [
        np.array([0, 2, 1, 2, 0]),
        np.array([0, 2, 1, 2, 0], dtype=np.uint8),
        np.array([5, 7, 6, 7, 5], dtype=np.int16),
        np.array([-3, 9, 4, 9, -3]),
        np.array([0.0, 2.0, 1.0, 2.0, 0.0]),
        np.array(["a", "c", "b", "c", "a"]),
        np.array(["a", "c", "b", "c", "a"], dtype=object),
        np.array([0, 2, 1, 2, 0], dtype=np.uint64),
        [0, 2, 1, 2, 0],
    ],
    ids=lambda y: str(np.asarray(y).dtype),
)
@pytest.mark.parametrize("weighted", [False, True])
def test_label_types(y_true: Any, weighted: bool) -> None:
    y_pred = np.array(
        [[0.7, 0.2, 0.1], [0.1, 0.2, 0.7], [0.2, 0.5, 0.3], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    )
    w = np.array([1.0, 2.0, 0.5, 1.0, 3.0]) if weighted else None
    loss = same_as_sklearn(y_true, y_pred, sample_weight=w)
    eps = np.finfo(np.float64).eps
    picked = np.clip(y_pred[np.arange(5), [0, 2, 1, 2, 0]], eps, 1 - eps)
    np.testing.assert_allclose(loss, np.average(-np.log(picked), weights=w), rtol=1e-14)


def test_bool_labels_and_binary_predictions() -> None:
    y_true = np.array([True, False, True, True])
    p = np.array([0.8, 0.3, 0.6, 1.0])
    loss = same_as_sklearn(y_true, p)
    eps = np.finfo(np.float64).eps
    expected = -np.mean(np.log(np.clip([0.8, 0.7, 0.6, 1.0], eps, 1 - eps)))
    np.testing.assert_allclose(loss, expected, rtol=1e-14)
    # One column is the positive class too.
    assert crossent.log_loss(y_true, p[:, None]) == loss


def test_float32_is_computed_in_float64_of_its_values() -> None:
    """float32 predictions: the clip is float32's, the logs and sums are float64 of the
    float32 values (scikit-learn computes them in float32, to about 1e-7)."""
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(5), 2000).astype(np.float32)
    y = rng.integers(0, 5, 2000)
    ours = crossent.log_loss(y, p)
    eps = np.finfo(np.float32).eps
    exact = -np.mean(np.log(np.clip(p, eps, 1 - eps)[np.arange(2000), y].astype(np.float64)))
    np.testing.assert_allclose(ours, exact, rtol=1e-13)
    theirs = sk(y, p)
    if theirs is not None:
        np.testing.assert_allclose(ours, theirs, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_predictions_are_read_in_place(dtype: Any) -> None:
    rng = np.random.default_rng(2)
    big = rng.dirichlet(np.ones(4), 600).astype(dtype)
    y = rng.integers(0, 4, 300)
    views = [big[::2], np.asfortranarray(big[:300]), big[::-2], big[:300]]
    for view in views:
        ours = crossent.log_loss(y, view)
        ref = crossent.log_loss(y, np.ascontiguousarray(view))
        assert ours == pytest.approx(ref, rel=1e-14)
    # A column of a 2-D array, for binary predictions.
    col = big[:300, 1]
    yb = y % 2
    assert crossent.log_loss(yb, col) == pytest.approx(
        crossent.log_loss(yb, np.ascontiguousarray(col)), rel=1e-14
    )


def test_errors_where_sklearn_raises() -> None:
    p = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    with pytest.raises(crossent.DomainError, match=r"'y_pred'.*\(1, 0\)"):
        crossent.log_loss([0, 1, 0], np.array([[0.2, 0.8], [np.nan, 0.4], [0.5, 0.5]]))
    with pytest.raises(crossent.DomainError, match="'y_pred'"):
        crossent.log_loss([0, 1, 0], np.array([[0.2, 0.8], [1.5, 0.4], [0.5, 0.5]]))
    with pytest.raises(crossent.DomainError, match="'y_pred'"):
        crossent.log_loss([0, 1, 0], np.array([0.2, -0.1, 0.5]))
    with pytest.raises(crossent.DomainError, match="'sample_weight'"):
        crossent.log_loss([0, 1, 0], p, sample_weight=[1.0, np.nan, 1.0])
    with pytest.raises(crossent.DomainError, match="'sample_weight'"):
        crossent.log_loss([0, 1, 0], p, sample_weight=[1.0, np.inf, 1.0])
    with pytest.raises(ValueError, match="at least one non-zero"):
        crossent.log_loss([0, 1, 0], p, sample_weight=[0, 0, 0])
    with pytest.raises(ValueError, match="at least one non-zero"):
        crossent.log_loss([0, 1, 0], p, sample_weight=[0, 0, 0], normalize=False)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        crossent.log_loss([0, 1, 0], p, sample_weight=[1, 1])
    with pytest.raises(ValueError, match="'sample_weight' must be 1-D"):
        crossent.log_loss([0, 1, 0], p, sample_weight=[[1], [1], [1]])
    with pytest.raises(ValueError, match="Unknown label type"):
        crossent.log_loss([0.5, 1, 0], p)
    with pytest.raises(ValueError, match="NaN"):
        crossent.log_loss([np.nan, 1.0, 0.0], p)
    with pytest.raises(ValueError, match="0 sample"):
        crossent.log_loss([], np.zeros((0, 2)))
    with pytest.raises(ValueError, match="at least two labels"):
        crossent.log_loss([0, 0, 0], p, labels=[0])
    with pytest.raises(ValueError, match="'y_pred' must be 1-D"):
        crossent.log_loss([0, 1, 0], p[:, :, None])
    with pytest.raises(ValueError, match="Mix of label input types"):
        crossent.log_loss(np.array(["a", 1, "a"], dtype=object), p)
    with pytest.raises(ValueError, match="Unknown label type"):
        crossent.log_loss(np.array([None, "a", "a"], dtype=object), p)
    with pytest.raises(ValueError, match="'y_pred' must hold"):
        crossent.log_loss([0, 1, 0], np.array([["a", "b"]] * 3))
    with pytest.raises(ValueError, match="number of classes in labels"):
        crossent.log_loss([0, 1, 0], np.full((3, 3), 1 / 3), labels=[0, 1])
    with pytest.raises(ValueError, match="different number of classes: 3 vs 2"):
        crossent.log_loss([0, 1, 2], np.array([0.2, 0.3, 0.4]))
    # Integer labels read in place, out of the fixed labels: scikit-learn's message.
    with pytest.raises(ValueError, match=re.escape("values {3} not belonging")):
        crossent.log_loss([0, 3, 1], p, labels=[0, 1])
    # Each of these raises in scikit-learn too (same exception type).
    if sk_log_loss is not None:
        cases: list[tuple[Any, Any, dict[str, Any]]] = [
            ([0, 1, 0], np.array([[0.2, 0.8], [np.nan, 0.4], [0.5, 0.5]]), {}),
            ([0, 1, 0], p, {"sample_weight": [1.0, np.nan, 1.0]}),
            ([0, 1, 0], p, {"sample_weight": [0, 0, 0]}),
            ([0.5, 1, 0], p, {}),
            ([0, 3, 1], p, {"labels": [0, 1]}),
            ([0, 1, 2], np.array([0.2, 0.3, 0.4]), {}),
        ]
        for y, pp, kw in cases:
            with pytest.raises(ValueError):
                sk(y, pp, **kw)


def test_negative_weights_are_refused() -> None:
    """scikit-learn sums negative weights; crossent refuses them (a weighted mean of losses
    with negative weights is not a loss), as every crossent function does."""
    p = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    with pytest.raises(crossent.DomainError, match=r"'sample_weight'.*-1\.0 at index \(1,\)"):
        crossent.log_loss([0, 1, 0], p, sample_weight=[1.0, -1.0, 1.0])


def test_same_bits_for_any_thread_count(threads: None) -> None:
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(7), 50_000)
    y = rng.integers(0, 7, 50_000)
    w = rng.uniform(0, 2, 50_000)
    crossent.set_num_threads(1)
    one = crossent.log_loss(y, p, sample_weight=w)
    for n in (2, 3, 8):
        crossent.set_num_threads(n)
        assert crossent.log_loss(y, p, sample_weight=w) == one


# --- fuzz against scikit-learn ---------------------------------------------------------------


@st.composite
def problems(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(1, 40))
    k = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    p = rng.dirichlet(np.full(k, draw(st.sampled_from([0.2, 1.0, 5.0]))), n)
    # Some exact 0s and 1s (clipped), some rows that do not sum to one (warned).
    if draw(st.booleans()):
        p[rng.random(n) < 0.2] = np.eye(k)[0]
    if draw(st.booleans()):
        p[0] *= 0.9
    p = p.astype(dtype)
    kind = draw(st.sampled_from(["codes", "shifted", "str", "object", "bool", "float"]))
    missing = draw(st.booleans()) and n > 1
    codes = rng.integers(0, k - 1 if missing else k, n)
    names = np.array([f"c{j:02d}" for j in range(k)])
    classes: Any
    if kind == "codes":
        y, classes = codes.astype(draw(st.sampled_from([np.int64, np.int32, np.uint8]))), range(k)
    elif kind == "shifted":
        y, classes = codes * 3 - 4, [3 * j - 4 for j in range(k)]
    elif kind == "str":
        y, classes = names[codes], names.tolist()
    elif kind == "object":
        y, classes = names[codes].astype(object), names.tolist()
    elif kind == "float":
        y, classes = codes.astype(np.float64), [float(j) for j in range(k)]
    else:
        k = 2
        p = p[:, :2] / p[:, :2].sum(axis=1, keepdims=True) if p.shape[1] > 2 else p
        p = p.astype(dtype)
        codes = codes % 2
        y, classes = codes.astype(bool), [False, True]
    binary = k == 2 and draw(st.booleans())
    y_pred = p[:, 1].copy() if binary else p
    if draw(st.booleans()):
        y_pred = np.asfortranarray(y_pred) if y_pred.ndim == 2 else y_pred
    w = rng.uniform(0.0, 3.0, n) if draw(st.booleans()) else None
    if w is not None and draw(st.booleans()):
        w = w.astype(np.float32)
    give_labels = missing or draw(st.booleans())
    return {
        "y_true": y,
        "y_pred": y_pred,
        "sample_weight": w,
        "labels": list(classes) if give_labels else None,
        "normalize": draw(st.booleans()),
    }


@live
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_fuzz_against_sklearn(case: dict[str, Any]) -> None:
    def run(f: Any, **kw: Any) -> tuple[str, Any, bool]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                value: Any = f(**{**case, **kw})
                outcome = "ok"
            except ValueError as e:
                value, outcome = e, "ValueError"
        warned = any("do not sum to one" in str(w.message) for w in caught)
        return outcome, value, warned

    ours = run(crossent.log_loss)
    theirs = run(sk_log_loss)
    assert ours[0] == theirs[0], (ours, theirs)
    if ours[0] != "ok":
        return
    y_pred = case["y_pred"]
    if y_pred.dtype == np.float64:
        assert ours[1] == pytest.approx(theirs[1], rel=RTOL, abs=1e-300)
    else:
        # scikit-learn computes float32 in float32; crossent in float64 of the float32
        # values, which is scikit-learn on those values clipped first and widened.
        eps = np.finfo(np.float32).eps
        # Binary predictions: the column 1 - p is formed in float32, as scikit-learn forms it.
        full = np.stack([1 - y_pred, y_pred], axis=1) if y_pred.ndim == 1 else y_pred
        wide = np.clip(full, eps, 1 - eps).astype(np.float64)
        assert ours[1] == pytest.approx(theirs[1], rel=2e-6)
        wide_case = {**case, "y_pred": wide}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert ours[1] == pytest.approx(sk_log_loss(**wide_case), rel=RTOL)
    assert ours[2] == theirs[2], "the 'do not sum to one' warning differs"


# --- the accumulator -------------------------------------------------------------------------


def _data(n: int = 1000, k: int = 4, seed: int = 0) -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, k, n), rng.dirichlet(np.ones(k), n), rng.uniform(0.1, 2.0, n)


@pytest.mark.parametrize("normalize", [True, False])
def test_accumulator_batches_equal_one_call(normalize: bool) -> None:
    y, p, w = _data(10_000)
    labels = [0, 1, 2, 3]
    acc = crossent.LogLossAccumulator(labels=labels, normalize=normalize)
    for start, stop in [(0, 1), (1, 777), (777, 777), (777, 4000), (4000, 10_000)]:
        acc.update(y[start:stop], p[start:stop], sample_weight=w[start:stop])
    one = crossent.log_loss(y, p, sample_weight=w, normalize=normalize)
    assert acc.result() == pytest.approx(one, rel=1e-13)
    assert acc.count == 10_000
    assert acc.weight_sum == pytest.approx(w.sum(), rel=1e-13)
    # Cut at the engine's blocks (CHUNK // 4 rows), the bits are one call's.
    block = crossent.CHUNK // 4
    y2, p2, _ = _data(3 * block + 5)
    acc2 = crossent.LogLossAccumulator(labels=labels, normalize=normalize)
    for start in range(0, y2.shape[0], block):
        acc2.update(y2[start : start + block], p2[start : start + block])
    assert acc2.result() == crossent.log_loss(y2, p2, normalize=normalize)


def test_accumulator_batches_missing_classes_just_work() -> None:
    labels = ["ant", "bee", "cat"]
    y = np.array(["ant", "ant", "cat", "bee", "bee", "cat"])
    p = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.6, 0.3, 0.1],
            [0.1, 0.1, 0.8],
            [0.2, 0.7, 0.1],
            [0.3, 0.6, 0.1],
            [0.2, 0.2, 0.6],
        ]
    )
    acc = crossent.LogLossAccumulator(labels=labels)
    acc.update(y[:2], p[:2])  # only "ant"
    acc.update(y[2:3], p[2:3])  # only "cat"
    acc.update(y[3:], p[3:])
    acc.update(y[:0], p[:0])  # empty
    assert acc.result() == pytest.approx(same_as_sklearn(y, p), rel=1e-14)
    with pytest.raises(ValueError, match="not belonging to the passed labels"):
        acc.update(np.array(["dog"]), p[:1])
    assert acc.count == 6


def test_accumulator_merge_pickle_reset_and_bad_batches() -> None:
    y, p, w = _data(500, 3)
    a = crossent.LogLossAccumulator(labels=[0, 1, 2])
    b = crossent.LogLossAccumulator(labels=[0, 1, 2])
    a.update(y[:200], p[:200], w[:200])
    b.update(y[200:], p[200:], w[200:])
    before = a.result()
    bad = p[:10].copy()
    bad[3, 1] = 2.0
    with pytest.raises(crossent.DomainError, match=r"'y_pred'.*\(3, 1\)"):
        a.update(y[:10], bad)
    assert a.result() == before
    a.merge(b)
    assert a.result() == pytest.approx(crossent.log_loss(y, p, sample_weight=w), rel=1e-13)
    c = pickle.loads(pickle.dumps(a))
    assert c.result() == a.result()
    assert c.labels == [0, 1, 2]
    assert c.normalize is True
    with pytest.raises(ValueError, match="normalize"):
        a.merge(crossent.LogLossAccumulator(labels=[0, 1, 2], normalize=False))
    with pytest.raises(ValueError, match="labels"):
        a.merge(crossent.LogLossAccumulator(labels=[0, 1, 3]))
    a.reset()
    assert a.count == 0
    with pytest.warns(UserWarning, match="do not sum to one"):
        a.update([0, 1], [[0.5, 0.2, 0.1], [0.1, 0.8, 0.1]])
    with pytest.warns(UserWarning, match="ordered lexicographically"):
        crossent.LogLossAccumulator(labels=[2, 0, 1])
    with pytest.raises(TypeError, match="'normalize'"):
        crossent.LogLossAccumulator(labels=[0, 1], normalize="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least two labels"):
        crossent.LogLossAccumulator(labels=[0])


def test_accumulator_shared_by_threads() -> None:
    y, p, w = _data(40_000, 5)
    acc = crossent.LogLossAccumulator(labels=range(5))
    parts = np.array_split(np.arange(40_000), 16)

    def work(idx: Any) -> None:
        acc.update(y[idx], p[idx], sample_weight=w[idx])

    pool = [threading.Thread(target=work, args=(i,)) for i in parts]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert acc.count == 40_000
    assert acc.result() == pytest.approx(crossent.log_loss(y, p, sample_weight=w), rel=1e-12)


# --- Dask -----------------------------------------------------------------------------------


def test_dask_log_loss_equals_one_call() -> None:
    da = pytest.importorskip("dask.array")
    import crossent.dask

    y, p, w = _data(5000, 4, seed=7)
    # Chunks of very different sizes: averaging chunk means (dask-ml) would be biased.
    chunks = ((10, 4000, 990),)
    yd = da.from_array(y, chunks=chunks)
    pd_ = da.from_array(p, chunks=(chunks[0], (2, 2)))
    wd = da.from_array(w, chunks=((2500, 2500),))
    got = float(crossent.dask.log_loss(yd, pd_, labels=[0, 1, 2, 3], sample_weight=wd).compute())
    assert got == pytest.approx(crossent.log_loss(y, p, sample_weight=w), rel=1e-13)
    biased = np.mean(
        [crossent.log_loss(y[a:b], p[a:b], labels=[0, 1, 2, 3]) for a, b in [(0, 10), (10, 4010)]]
        + [crossent.log_loss(y[4010:], p[4010:], labels=[0, 1, 2, 3])]
    )
    assert abs(biased - crossent.log_loss(y, p)) > 1e-3
    # Binary predictions, string labels, the sum.
    names = np.array(["no", "yes"])[y % 2]
    q = p[:, 0]
    got = crossent.dask.log_loss(
        da.from_array(names, chunks=700),
        da.from_array(q, chunks=300),
        labels=["no", "yes"],
        normalize=False,
    ).compute()
    assert float(got) == pytest.approx(crossent.log_loss(names, q, normalize=False), rel=1e-13)
    bad = p.copy()
    bad[4321, 2] = -0.5
    with pytest.raises(crossent.DomainError, match=r"\(4321, 2\)"):
        crossent.dask.log_loss(
            yd, da.from_array(bad, chunks=(chunks[0], 4)), labels=[0, 1, 2, 3]
        ).compute()
