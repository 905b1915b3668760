"""Gradients and Hessians of binary cross-entropy with logits: against finite differences,
an independent float64 formula, and a LightGBM model trained with them. (Against torch.autograd:
tests/test_golden.py, from the golden files and with live torch where it is installed.)"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import crossent
from crossent import binary_cross_entropy_with_logits as bce_logits
from crossent import binary_cross_entropy_with_logits_grad as bce_grad


def sample(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-8, 8, shape), rng.uniform(0, 1, shape)


def reference(x: Any, y: Any, w: Any = 1.0, c: Any = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The derivatives in float64, written from the loss ``softplus(x) - y x`` (c = 1) and
    its pos_weight form, independently of the library's kernel."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    s = 0.5 * (1 + np.tanh(x / 2))  # the logistic function through tanh
    lw = 1 + (np.asarray(c) - 1) * y
    g = w * (lw * s - np.asarray(c) * y)
    h = w * lw * 0.25 / np.cosh(x / 2) ** 2  # s (1 - s), without cancellation
    return np.asarray(g), np.asarray(h)


def test_matches_finite_differences_of_the_loss() -> None:
    x, y = sample((40, 3))
    w = np.random.default_rng(1).uniform(0.2, 2, (40, 3))
    c = np.array([0.5, 1.0, 3.0])
    g, h = bce_grad(x, y, weight=w, pos_weight=c)
    d = 1e-5

    def loss(xx: np.ndarray) -> np.ndarray:
        out = bce_logits(xx, y, weight=w, pos_weight=c, reduction="none")
        assert isinstance(out, np.ndarray)
        return out

    fd = (loss(x + d) - loss(x - d)) / (2 * d)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
    # The Hessian is the derivative of the gradient.
    fd2 = (
        bce_grad(x + d, y, weight=w, pos_weight=c)[0]
        - bce_grad(x - d, y, weight=w, pos_weight=c)[0]
    ) / (2 * d)
    np.testing.assert_allclose(h, fd2, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "target_dtype", [np.float32, np.float64, np.bool_, np.uint8, np.int8, np.int32, np.int64]
)
def test_matches_reference_for_every_dtype(dtype: Any, target_dtype: Any) -> None:
    x, y = sample((1000,), seed=2)
    if np.dtype(target_dtype).kind != "f":
        y = y > 0.5
    y = y.astype(target_dtype)
    x = x.astype(dtype)
    g, h = bce_grad(x, y, pos_weight=[2.0])
    assert g.dtype == dtype and h.dtype == dtype and g.shape == x.shape
    rg, rh = reference(x, y.astype(np.float64), c=2.0)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(g, rg, rtol=tol, atol=tol)
    np.testing.assert_allclose(h, rh, rtol=tol * 10, atol=tol * 1e-3)


def test_mean_divides_by_the_count() -> None:
    x, y = sample((7, 11))
    g, h = bce_grad(x, y, reduction="mean")
    gs, hs = bce_grad(x, y)
    np.testing.assert_allclose(g, gs / 77, rtol=1e-15)
    np.testing.assert_allclose(h, hs / 77, rtol=1e-15)


def test_extreme_logits() -> None:
    x = np.array([1e4, -1e4, 40.0, -40.0, 700.0, -745.0])
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    g, h = bce_grad(x, y)
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(h))
    # e^-745 is the smallest subnormal: the gradient keeps it. With y = 1 at x = 700 the
    # gradient is -(1 - sigmoid(700)) = -e^-700, not the 0 of a rounded sigmoid minus 1.
    np.testing.assert_allclose(
        g, [0.0, 0.0, 1.0, -1.0, -np.exp(-700.0), np.exp(-745.0)], rtol=1e-15, atol=0
    )
    assert g[5] > 0
    # sigmoid(40) (1 - sigmoid(40)) = e^-40 (to 1e-17): kept, not rounded to 0.
    assert h[2] == pytest.approx(np.exp(-40.0), rel=1e-14)
    assert h[3] == pytest.approx(np.exp(-40.0), rel=1e-14)
    assert np.isnan(bce_grad(np.array([np.nan]), np.array([1.0]))[0][0])


def test_layouts_and_out() -> None:
    base, yb = sample((30, 40), seed=4)
    for x, y in [(base.T, yb.T), (base[::3, 1::2], yb[::3, 1::2]), (np.asfortranarray(base), yb)]:
        g, h = bce_grad(x, y)
        rg, rh = reference(x, y)
        np.testing.assert_allclose(g, rg, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(h, rh, rtol=1e-13, atol=1e-16)
    g_out = np.empty((40, 30))[:, :]
    h_out = np.empty((30, 40)).T  # a transposed output
    g, h = bce_grad(base.T, yb.T, out=(g_out, h_out))
    assert g is g_out and h is h_out
    np.testing.assert_allclose(h_out, reference(base.T, yb.T)[1], rtol=1e-13, atol=1e-16)
    assert bce_grad(np.zeros((0, 3)), np.zeros((0, 3)))[0].shape == (0, 3)
    g0, h0 = bce_grad(np.array(0.0), np.array(1.0))
    assert g0.shape == () and float(g0) == -0.5 and float(h0) == 0.25


def test_same_bits_for_any_thread_count(threads: None) -> None:
    x, y = sample((300_001,), seed=5)
    outs = []
    for n in (1, 2, 3, 7):
        crossent.set_num_threads(n)
        outs.append(bce_grad(x, y, pos_weight=[1.5]))
    for g, h in outs[1:]:
        assert np.array_equal(g, outs[0][0]) and np.array_equal(h, outs[0][1])


def test_bad_input() -> None:
    x, y = sample((10,))
    # Labels other than 0/1 (float targets may be any real number, as for the loss).
    with pytest.raises(ValueError, match=r"'target'.*index \(3,\)"):
        bce_grad(x, np.where(np.arange(10) == 3, 2, 1).astype(np.int32))
    with pytest.raises(ValueError, match="'target'"):
        bce_grad(x, y[:5])
    with pytest.raises(ValueError, match="'weight'"):
        bce_grad(x, y, weight=np.ones(3))
    with pytest.raises(ValueError, match="'reduction'"):
        bce_grad(x, y, reduction="none")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'input'"):
        bce_grad(x.astype(np.complex128), y)
    with pytest.raises(TypeError, match="'target'"):
        bce_grad(x, y.astype(np.uint16))
    with pytest.raises(TypeError, match="'out'"):
        bce_grad(x, y, out=np.empty(10))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'out'"):
        bce_grad(x, y, out=(np.empty(10),))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'out'"):
        bce_grad(x, y, out=(np.empty(10), np.empty(9)))
    with pytest.raises(TypeError, match="'out'"):
        bce_grad(x, y, out=(np.empty(10), np.empty(10, np.float32)))
    same = np.empty(10)
    with pytest.raises(ValueError, match="'out'"):
        bce_grad(x, y, out=(same, same))
    with pytest.raises(ValueError, match="'out'"):
        bce_grad(x, y, out=(x, np.empty(10)))


def _trees(model: Any) -> list[Any]:
    def walk(node: dict[str, Any]) -> Any:
        if "leaf_value" in node:
            return ("leaf", node["leaf_value"])
        return (
            node["split_feature"],
            node["threshold"],
            walk(node["left_child"]),
            walk(node["right_child"]),
        )

    return [walk(t["tree_structure"]) for t in model.dump_model()["tree_info"]]


def _same_structure(a: Any, b: Any) -> bool:
    if a[0] == "leaf" or b[0] == "leaf":
        return bool(a[0] == b[0] and abs(a[1] - b[1]) <= 1e-6 * max(1.0, abs(a[1])))
    return bool(
        a[0] == b[0]
        and a[1] == b[1]
        and _same_structure(a[2], b[2])
        and _same_structure(a[3], b[3])
    )


def test_lightgbm_custom_objective_gives_the_builtin_model() -> None:
    lgb = pytest.importorskip("lightgbm")
    rng = np.random.default_rng(8)
    X = rng.standard_normal((3000, 6))
    logit = X @ np.array([1.0, -2.0, 0.5, 0.0, 1.5, -0.7]) + 0.3 * rng.standard_normal(3000)
    y = (rng.random(3000) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    w = rng.uniform(0.5, 2.0, 3000)
    common = {
        "learning_rate": 0.1,
        "num_leaves": 15,
        "min_data_in_leaf": 20,
        "verbose": -1,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "seed": 0,
    }

    def objective(preds: np.ndarray, data: Any) -> tuple[np.ndarray, np.ndarray]:
        return bce_grad(preds, data.get_label(), weight=data.get_weight())

    # The built-in objective would start from the log-odds of the mean label; a custom one
    # starts from 0: compare like with like.
    builtin = lgb.train(
        {**common, "objective": "binary", "boost_from_average": False},
        lgb.Dataset(X, y, weight=w),
        num_boost_round=40,
    )
    custom = lgb.train(
        {**common, "objective": objective}, lgb.Dataset(X, y, weight=w), num_boost_round=40
    )
    tb, tc = _trees(builtin), _trees(custom)
    assert len(tb) == len(tc) == 40
    assert all(_same_structure(a, b) for a, b in zip(tb, tc, strict=True))
    np.testing.assert_allclose(
        custom.predict(X, raw_score=True), builtin.predict(X, raw_score=True), rtol=1e-6, atol=1e-9
    )
    # And crossent's loss of the trained model equals LightGBM's own evaluation.
    raw = custom.predict(X, raw_score=True)
    p = 1 / (1 + np.exp(-raw))
    ll = -np.sum(w * (y * np.log(p) + (1 - y) * np.log1p(-p))) / np.sum(w)
    assert bce_logits(raw, y, weight=w, reduction="sum") / np.sum(w) == pytest.approx(ll, rel=1e-10)


def _xgboost_splits(model: Any) -> list[Any]:
    """Each tree's splits (feature, threshold), leaves left out: the trees' structure."""

    def walk(node: dict[str, Any]) -> Any:
        if "leaf" in node:
            return "leaf"
        return (node["split"], node["split_condition"], *map(walk, node["children"]))

    return [walk(json.loads(tree)) for tree in model.get_dump(dump_format="json")]


def test_xgboost_custom_objective_gives_the_builtin_model() -> None:
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(8)
    X = rng.standard_normal((3000, 6))
    logit = X @ np.array([1.0, -2.0, 0.5, 0.0, 1.5, -0.7]) + 0.3 * rng.standard_normal(3000)
    y = (rng.random(3000) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    w = rng.uniform(0.5, 2.0, 3000)
    common = {"eta": 0.1, "max_depth": 4, "tree_method": "hist", "nthread": 1, "seed": 0}

    def data() -> Any:
        # Both models start from the margin 0: XGBoost's base score would otherwise be
        # estimated for the built-in objective and taken as a margin for a custom one.
        return xgb.DMatrix(X, label=y, weight=w, base_margin=np.zeros(len(y)))

    def objective(preds: np.ndarray, dtrain: Any) -> tuple[np.ndarray, np.ndarray]:
        return bce_grad(preds, dtrain.get_label(), weight=dtrain.get_weight())

    builtin = xgb.train({**common, "objective": "binary:logistic"}, data(), num_boost_round=40)
    custom = xgb.train(
        {**common, "disable_default_eval_metric": True}, data(), num_boost_round=40, obj=objective
    )
    splits = _xgboost_splits(builtin)
    assert len(splits) == 40 and splits == _xgboost_splits(custom)
    # XGBoost keeps gradients and margins in float32.
    raw = custom.predict(data(), output_margin=True).astype(np.float64)
    np.testing.assert_allclose(
        raw, builtin.predict(data(), output_margin=True), rtol=1e-6, atol=1e-6
    )
    # And crossent's loss of the trained model is the weighted log-loss of its margins.
    p = 1 / (1 + np.exp(-raw))
    ll = -np.sum(w * (y * np.log(p) + (1 - y) * np.log1p(-p))) / np.sum(w)
    assert bce_logits(raw, y, weight=w, reduction="sum") / np.sum(w) == pytest.approx(ll, rel=1e-10)


# --- softmax cross-entropy ---------------------------------------------------------------

sce = crossent.softmax_cross_entropy
sce_grad = crossent.softmax_cross_entropy_grad


def _softmax_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((9, 5, 4)) * 2  # classes along axis 1
    labels = rng.integers(0, 5, (9, 4))
    labels[::4, 1] = -100
    t = rng.random((9, 5, 4))
    t /= t.sum(axis=1, keepdims=True)
    w = rng.uniform(0.5, 2, 5)
    return x, labels, t, w


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.15])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_softmax_grad_matches_finite_differences(soft: bool, eps: float, reduction: str) -> None:
    x, labels, t, w = _softmax_case()
    target = t if soft else labels
    kw: dict[str, Any] = {"axis": 1, "weight": w, "label_smoothing": eps}
    g, h = sce_grad(x, target, reduction=reduction, **kw)  # type: ignore[arg-type]
    d = 1e-5
    fd_g = np.empty_like(x)
    fd_h = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = d
        fd_g[idx] = (
            sce(x + e, target, reduction=reduction, **kw)
            - sce(x - e, target, reduction=reduction, **kw)
        ) / (2 * d)
        # The Hessian's diagonal: the derivative of each gradient element along its own logit.
        gp = sce_grad(x + e, target, reduction=reduction, **kw)[0]  # type: ignore[arg-type]
        gm = sce_grad(x - e, target, reduction=reduction, **kw)[0]  # type: ignore[arg-type]
        fd_h[idx] = (gp[idx] - gm[idx]) / (2 * d)
    np.testing.assert_allclose(g, fd_g, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(h, fd_h, rtol=1e-6, atol=1e-8)
    if not soft:
        assert np.all(g[::4, :, 1] == 0) and np.all(h[::4, :, 1] == 0)  # ignored rows


def test_softmax_grad_layouts_threads_and_errors(threads: None) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3000, 40)).astype(np.float32)
    labels = rng.integers(0, 40, 3000)
    outs = []
    for n in (1, 3):
        crossent.set_num_threads(n)
        outs.append(sce_grad(x, labels))
    assert all(np.array_equal(a, b) for a, b in zip(outs[0], outs[1], strict=True))
    g, h = outs[0]
    assert g.dtype == np.float32 and g.shape == x.shape
    # Each row's gradient sums to 0 without weights (softmax minus a one-hot).
    np.testing.assert_allclose(g.sum(axis=1), 0, atol=1e-6)
    gt, ht = sce_grad(np.ascontiguousarray(x.T), labels, axis=0)
    np.testing.assert_allclose(gt.T, g, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ht.T, h, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"'target'.*index \(7,\)"):
        sce_grad(x, np.where(np.arange(3000) == 7, 40, labels))
    # The loss and its gradient word a bad label alike.
    bad = np.where(np.arange(3000) == 7, 40, labels)
    with pytest.raises(ValueError) as loss_error:
        crossent.softmax_cross_entropy(x, bad)
    with pytest.raises(ValueError) as grad_error:
        sce_grad(x, bad)
    assert "or ignore_index (-100)" in str(loss_error.value)
    assert "or ignore_index (-100)" in str(grad_error.value)
    # ... and labels of the wrong shape.
    with pytest.raises(ValueError) as loss_error:
        crossent.softmax_cross_entropy(x, labels[:10])
    with pytest.raises(ValueError) as grad_error:
        sce_grad(x, labels[:10])
    assert str(grad_error.value) == str(loss_error.value)
    assert "'target' of class indices must have the shape of 'logits'" in str(grad_error.value)
    with pytest.raises(ValueError, match="'weight'"):
        sce_grad(x, labels, weight=np.ones(3))
    with pytest.raises(ValueError, match="'axis'"):
        sce_grad(x, labels, axis=2)
    with pytest.raises(ValueError, match="'reduction'"):
        sce_grad(x, labels, reduction="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'label_smoothing'"):
        sce_grad(x, labels, label_smoothing=1.5)
    with pytest.raises(TypeError, match="'logits'"):
        sce_grad(x.astype(np.complex128), labels)


def test_softmax_grad_converts_logits_as_the_loss_does() -> None:
    """Integer and bool logits are taken as float64 (float16 is read in place, computed in
    float32, and its gradient is float16: tests/test_half.py): the loss's rule."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 40)
    conversions: list[tuple[Any, Any]] = [
        (np.int32, np.float64),
        (np.bool_, np.float64),
    ]
    for dtype, as_dtype in conversions:
        x: Any = (rng.standard_normal((40, 5)) * 3).astype(dtype)
        got = sce_grad(x, labels)
        want = sce_grad(x.astype(as_dtype), labels)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == as_dtype
            assert g.tobytes() == w.tobytes()
        loss = crossent.softmax_cross_entropy(x, labels, reduction="sum")
        assert loss == crossent.softmax_cross_entropy(x.astype(as_dtype), labels, reduction="sum")
