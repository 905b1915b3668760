"""crossent against PyTorch's and SciPy's answers frozen in tests/golden/*.npz, always; and
against live PyTorch where it is installed.

The cases are those of tests/golden/cases.py (every function, dtype, reduction, weight,
pos_weight, ignore_index, label smoothing, class-index and probability targets, gradients, and
the edge values 0, 1, ±inf, NaN, huge logits, empty arrays); tests/golden/make_golden.py
writes the files where torch, SciPy and mpmath are installed. Each comparison uses the
tolerance of the family's parity tests, per dtype:

- float64 input: against PyTorch's float64 result (SciPy's for the divergences);
- float32 input: against PyTorch's float64 result on the same float32 values (crossent
  accumulates in float64), and against PyTorch's own float32 result with ten times the
  tolerance (PyTorch's float32 rounding comes on top).

Where crossent is meant to be more accurate than PyTorch (calls with `exact`: huge logits in
softmax cross-entropy, the cancellation of BCE with logits), it is compared with an mpmath
reference of the same inputs instead of with PyTorch, so that being right is never a failure.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from golden import cases as golden_cases
from golden.cases import AT, POSITIONAL, Call
from registry import FUNCS

import crossent

GOLDEN = Path(__file__).parent / "golden"
Arrays = dict[str, np.ndarray]


@functools.cache
def load(family: str) -> tuple[dict[str, Any], Arrays]:
    with np.load(GOLDEN / f"{family}.npz", allow_pickle=False) as npz:
        meta = json.loads(npz["__meta__"].tobytes().decode("utf-8"))
        blobs = {k: npz[k] for k in npz.files if k != "__meta__"}
    data = {}
    for key, (code, shape, offset) in meta["index"].items():
        size = math.prod(shape)
        data[key] = blobs[f"blob{code}"][offset : offset + size].reshape(shape)
    return meta, data


def items() -> list[Any]:
    out = []
    for family in golden_cases.FAMILIES:
        meta, _ = load(family)
        for case in meta["cases"]:
            for call in case["calls"]:
                out.append(
                    pytest.param(
                        family, case["id"], call, id=f"{family}/{case['id']}/{call['label']}"
                    )
                )
    return out


ITEMS = items()


def to_call(c: dict[str, Any]) -> Call:
    return Call(
        label=c["label"],
        func=c["func"],
        params=c["params"],
        ref=c["ref"],
        exact=c["exact"],
        expect=c["expect"],
        tags=tuple(c["tags"]),
        note=c["note"],
    )


def arrays_of(family: str, case_id: str) -> Arrays:
    meta, data = load(family)
    (case,) = (c for c in meta["cases"] if c["id"] == case_id)
    return {name: data[f"{case_id}/{name}"] for name in case["arrays"]}


def stored(family: str, case_id: str, call: dict[str, Any], ref: str) -> Arrays:
    _, data = load(family)
    return {o: data[f"{case_id}/{call['label']}/{ref}/{o}"] for o in call["outputs"][ref]}


def run(call: Call, arrays: Arrays) -> Arrays:
    """crossent's result for the call, named as the references name theirs."""
    f = getattr(crossent, call.func)
    positional = POSITIONAL[call.func]
    kwargs = {k: v for k, v in arrays.items() if k in ("weight", "pos_weight")}
    kwargs.update(call.params)
    with np.errstate(all="ignore"):
        r = f(*(arrays[k] for k in positional), **kwargs)
    if call.func.endswith("_grad"):
        g, h = r
        return {"grad": g, "hess": h}
    return {"value": r}


# --- tolerances: those of the family's parity tests --------------------------------------


def _eps(dtype: Any) -> float:
    return float(np.finfo(dtype).eps)


def _scale(arrays: Arrays) -> float:
    x = np.abs(arrays["logits"].astype(np.float64))
    return float(x[np.isfinite(x)].max(initial=1.0))


def tolerance(call: Call, arrays: Arrays, output: str) -> tuple[float, Any]:
    """(rtol, atol) against a float64 reference; atol may be per element ("none") or reduced
    as the loss is."""
    dtype = arrays[POSITIONAL[call.func][0]].dtype
    f64 = dtype == np.float64
    if "softmax-huge-logits" in call.tags:
        # The promise for huge logits: the loss's error follows the loss (relative), not the
        # size of the logits; the derivatives', a few ulp of their scale, 1.
        return (1e-12, 0.0) if output == "value" else (1e-12, 1e-14)
    if call.func == "binary_cross_entropy":
        return (1e-13 if f64 else 2e-6), 0.0
    if call.func.startswith("binary_cross_entropy_with_logits"):
        shape = arrays["input"].shape
        x = np.abs(arrays["input"].astype(np.float64))
        factor = np.ones(shape)
        for name in ("weight", "pos_weight"):
            if name in arrays:
                factor = factor * np.maximum(np.abs(arrays[name].astype(np.float64)), 1)
        if call.func.endswith("_grad"):
            # test_grad.py: 1e-12 (gradient) and 1e-10 (Hessian) in float64.
            rtol = (1e-12 if output == "grad" else 1e-10) if f64 else 4e-6
            return rtol, 1e-15 if f64 else 4 * _eps(dtype) * factor
        # test_bce.py: (1 - y) x and the log-sigmoid term cancel for soft targets: the
        # formula's own rounding error is a few ulp of |x|, times the weights.
        atol = np.broadcast_to(4 * _eps(dtype) * (x + 1) * factor, shape)
        reduction = call.params["reduction"]
        if reduction == "sum":
            return (1e-13 if f64 else 2e-6), float(atol.sum())
        if reduction == "mean":
            return (1e-13 if f64 else 2e-6), float(atol.mean()) if atol.size else 0.0
        return (1e-13 if f64 else 2e-6), atol
    if call.func.startswith("softmax_cross_entropy"):
        # test_softmax.py: relative, plus absolute in proportion to the largest logit.
        rtol = 1e-12 if f64 else 1e-6
        if call.func.endswith("_grad"):
            return rtol, (1e-15 if f64 else 1e-7) * _scale(arrays)
        return rtol, rtol * _scale(arrays)
    if call.ref == "torch-kl_div":
        rtol = 1e-10 if f64 else 1e-4
        return rtol, rtol * 1e-2
    # test_divergence.py
    return (1e-10, 1e-12) if f64 else (2e-5, 2e-6)


def check(got: Any, want: np.ndarray, rtol: float, atol: Any, what: str) -> None:
    """NaN where the reference is NaN, the same infinities, finite values within tolerance."""
    g = np.asarray(got, dtype=np.float64)
    w = np.asarray(want, dtype=np.float64)
    assert g.shape == w.shape, (what, g.shape, w.shape)
    nan = np.isnan(w)
    assert (np.isnan(g) == nan).all(), (what, "NaN differs", g, w)
    inf = np.isinf(w)
    assert (g[inf] == w[inf]).all() and (np.isinf(g) == inf).all(), (what, "inf differs", g, w)
    fin = ~nan & ~inf
    tol = rtol * np.abs(w) + np.broadcast_to(np.asarray(atol, dtype=np.float64), w.shape)
    with np.errstate(invalid="ignore"):
        err = np.abs(g - w)
    bad = fin & ~(err <= tol)
    assert not bad.any(), (what, g[bad], w[bad], err[bad], tol[bad])


def check_type(call: Call, arrays: Arrays, out: Arrays) -> None:
    """Results in the input's float dtype; a Python float for a full reduction."""
    dtype = arrays[POSITIONAL[call.func][0]].dtype
    for value in out.values():
        if call.params.get("reduction") in ("sum", "mean") and not call.func.endswith("_grad"):
            assert isinstance(value, float), type(value)
        elif dtype.kind == "f" and not call.func.startswith(golden_cases.DIVERGENCES):
            assert isinstance(value, np.ndarray) and value.dtype == dtype, value


# --- behaviour that other work may change: decided by what crossent does ----------------


@functools.cache
def refuses_targets_outside_01() -> bool:
    """Whether BCE with logits refuses a target outside [0, 1] (a documented difference from
    PyTorch, which computes the loss of any real target)."""
    try:
        crossent.binary_cross_entropy_with_logits(np.zeros(1), np.array([1.5]))
    except ValueError:
        return True
    return False


@functools.cache
def softmax_loses_huge_logits() -> bool:
    """Whether softmax cross-entropy still loses the loss of logits [m, m, 0] for large m
    (ln 2 exactly; an error of about eps·|x| gives 0)."""
    got = crossent.softmax_cross_entropy(np.array([1e16, 1e16, 0.0]), 0)
    return abs(got - math.log(2)) > 4e-16


@functools.cache
def kl_overflows() -> bool:
    """Whether kl_divergence forms p/q before normalising and overflows where SciPy is finite."""
    return not math.isfinite(crossent.kl_divergence([3e5, 7e5], [1.0, 1e-304]))


def special_argument(arrays: Arrays) -> str:
    (name,) = (k for k, v in arrays.items() if v.dtype.kind == "f" and not np.isfinite(v).all())
    return name


def mark_pending(request: pytest.FixtureRequest, call: Call) -> None:
    """Cases whose promise crossent does not keep yet (issue items being fixed elsewhere) fail
    as expected, strictly: once crossent keeps it, they must pass."""
    if "softmax-huge-logits" in call.tags and softmax_loses_huge_logits():
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="softmax cross-entropy loses accuracy at huge logits (error ~ eps·|x|)",
            )
        )
    if "kl-overflow" in call.tags and kl_overflows():
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="kl_divergence forms p/q before normalising: it overflows or loses "
                "digits where SciPy is finite",
            )
        )


# --- the golden comparison ----------------------------------------------------------------


@pytest.mark.parametrize(("family", "case_id", "meta"), ITEMS)
def test_golden(
    family: str, case_id: str, meta: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    call = to_call(meta)
    arrays = arrays_of(family, case_id)
    mark_pending(request, call)
    if "targets-outside-01" in call.tags:
        # PyTorch computes a loss for any real target. While crossent refuses targets outside
        # [0, 1] (documented), it must refuse these; once it accepts them, it must give
        # PyTorch's values, stored here (an infinite target may stay refused).
        infinite = not np.isfinite(arrays["target"]).all()
        if refuses_targets_outside_01() or infinite:
            try:
                run(call, arrays)
            except ValueError as e:
                assert "'target'" in str(e), e
                return
            assert not refuses_targets_outside_01(), "a target outside [0, 1] was accepted"
    if call.expect == "ValueError":
        # A documented difference: crossent refuses the value, naming the argument.
        with pytest.raises(ValueError, match=f"'{special_argument(arrays)}'"):
            run(call, arrays)
        return
    got = run(call, arrays)
    check_type(call, arrays, got)
    if call.expect == "nan":
        # PyTorch raises here (see the file's errors); crossent propagates NaN to its element.
        assert meta["errors"], "expected PyTorch to raise"
        value = np.asarray(got["value"])
        if value.ndim:
            assert (
                np.isnan(value[AT])
                and np.isfinite(
                    np.delete(value.ravel(), np.ravel_multi_index(AT, value.shape))
                ).all()
            )
        else:
            assert np.isnan(value)
        return
    assert not meta["errors"], meta["errors"]
    if call.exact:
        primary = "exact"  # crossent is meant to be more accurate than PyTorch here
    elif call.ref == "scipy":
        primary = "scipy"
    else:
        primary = "torch64" if "torch64" in meta["outputs"] else "torch"
    want = stored(family, case_id, meta, primary)
    for name, value in want.items():
        rtol, atol = tolerance(call, arrays, name)
        check(got[name], value, rtol, atol, f"{name} against {primary}")
    if primary == "torch64":
        for name, value in stored(family, case_id, meta, "torch").items():
            rtol, atol = tolerance(call, arrays, name)
            check(
                got[name], value, 10 * rtol, 10 * np.asarray(atol), f"{name} against torch float32"
            )


# --- accumulators: the same answers, fed in two batches ----------------------------------

ACCUMULATORS: dict[str, Callable[..., Any]] = {
    "binary_cross_entropy": crossent.BinaryCrossEntropyAccumulator,
    "binary_cross_entropy_with_logits": crossent.BinaryCrossEntropyWithLogitsAccumulator,
    "softmax_cross_entropy": crossent.SoftmaxCrossEntropyAccumulator,
    "entropy": crossent.EntropyAccumulator,
    "cross_entropy": crossent.CrossEntropyAccumulator,
    "kl_divergence": crossent.KLDivergenceAccumulator,
    "jensen_shannon": crossent.JensenShannonAccumulator,
}


def _accumulates(meta: dict[str, Any]) -> bool:
    call = to_call(meta)
    if call.func not in ACCUMULATORS or call.expect != "reference" or call.tags or meta["errors"]:
        return False
    if call.func in golden_cases.DIVERGENCES:
        # Accumulators compute axis=None; Jensen-Shannon's only on normalised rows.
        return call.params.get("axis", -1) is None and (
            call.func != "jensen_shannon" or call.params.get("normalize") is False
        )
    return call.params["reduction"] in ("sum", "mean")


# (The edge table's cells are about special values, which the functions' tests cover.)
ACC_ITEMS = [p for p in ITEMS if p.values[0] != "readme_cells" and _accumulates(p.values[2])]


def _split(a: np.ndarray, along: int, rows: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Two batches of `a` cut along `along`, or None where `a` broadcasts instead."""
    if a.ndim <= along or a.shape[along] != rows or rows < 2:
        return None
    cut = rows // 2
    return np.take(a, range(cut), axis=along), np.take(a, range(cut, rows), axis=along)


@pytest.mark.parametrize(("family", "case_id", "meta"), ACC_ITEMS)
def test_accumulator(family: str, case_id: str, meta: dict[str, Any]) -> None:
    call = to_call(meta)
    arrays = arrays_of(family, case_id)
    params = dict(call.params)
    positional = POSITIONAL[call.func]
    fixed = {}
    if call.func == "binary_cross_entropy_with_logits" and "pos_weight" in arrays:
        fixed["pos_weight"] = arrays["pos_weight"]
    if call.func == "softmax_cross_entropy" and "weight" in arrays:
        fixed["weight"] = arrays["weight"]
    batch_args = {k: v for k, v in arrays.items() if k in positional or k == "weight"}
    batch_args = {k: v for k, v in batch_args.items() if k not in fixed}
    first = arrays[positional[0]]
    if call.func in golden_cases.DIVERGENCES:
        params.pop("axis")
        batch_args = {k: v.ravel() for k, v in batch_args.items()}
        along = 0
    elif call.func == "softmax_cross_entropy":
        # Cut along the first axis that is not the class axis (labels lose that axis).
        axis = params.get("axis", -1) % max(first.ndim, 1)
        along = 1 if axis == 0 else 0
    else:
        along = 0
    acc = ACCUMULATORS[call.func](**fixed, **params)
    rows = first.shape[along] if first.ndim > along else 0
    halves: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    for k, v in batch_args.items():
        # Class indices have the rows' shape: the cut axis is their first one either way.
        labels = call.func == "softmax_cross_entropy" and k == "target" and v.dtype.kind != "f"
        halves[k] = _split(v, 0 if labels else along, rows)
    if halves[positional[0]] is None:
        batches = [batch_args]
    else:
        batches = [
            {k: (h[i] if h is not None else batch_args[k]) for k, h in halves.items()}
            for i in (0, 1)
        ]
    with np.errstate(all="ignore"):
        for b in batches:
            args = [b.pop(k) for k in positional]
            acc.update(*args, **b)
    primary = (
        "scipy" if call.ref == "scipy" else ("torch64" if "torch64" in meta["outputs"] else "torch")
    )
    if call.exact:
        primary = "exact"
    want = stored(family, case_id, meta, primary)["value"]
    rtol, atol = tolerance(call, arrays, "value")
    check(acc.result(), want, rtol, atol, f"accumulator against {primary}")


# --- live PyTorch, where installed ---------------------------------------------------------


TORCH_ITEMS = [p for p in ITEMS if p.values[2]["ref"] != "scipy"]


@pytest.mark.parametrize(("family", "case_id", "meta"), TORCH_ITEMS)
def test_live_torch(family: str, case_id: str, meta: dict[str, Any]) -> None:
    """PyTorch as installed agrees with the file (its semantics have not moved since the file
    was made), and crossent agrees with it, on the same inputs and with the same tolerances."""
    pytest.importorskip("torch")
    from golden import refs

    call = to_call(meta)
    arrays = arrays_of(family, case_id)
    live: dict[str, Arrays] = {}
    for ref in ("torch", "torch64"):
        if ref not in meta["outputs"] and ref not in meta["errors"]:
            continue
        try:
            with np.errstate(all="ignore"):
                live[ref] = refs.torch_outputs(call, arrays, upcast=ref == "torch64")
        except Exception as e:
            assert ref in meta["errors"], f"torch raised {e!r}; the file holds a result"
            continue
        assert ref not in meta["errors"], f"torch computed; the file holds {meta['errors'][ref]}"
        # PyTorch's own float32 rounding: ten times the tolerance, as in test_golden.
        factor = 10.0 if ref == "torch" and "torch64" in meta["outputs"] else 1.0
        for name, value in stored(family, case_id, meta, ref).items():
            rtol, atol = tolerance(call, arrays, name)
            check(live[ref][name], value, factor * rtol, factor * np.asarray(atol), f"live {ref}")
    refused = "targets-outside-01" in call.tags and refuses_targets_outside_01()
    if call.expect != "reference" or call.exact or refused or meta["errors"]:
        return  # (test_golden checks these against the file: refusals, mpmath references)
    got = run(call, arrays)
    ref = "torch64" if "torch64" in live else "torch"
    for name, value in live[ref].items():
        rtol, atol = tolerance(call, arrays, name)
        check(got[name], value, rtol, atol, f"{name} against live {ref}")


# --- the files hold the case tables, with their provenance --------------------------------


@pytest.mark.parametrize("family", list(golden_cases.FAMILIES))
def test_files_hold_the_case_tables(family: str) -> None:
    """The golden files were made from the case tables as they are: a case changed in
    tests/golden/cases.py without running make_golden.py fails here."""
    meta, data = load(family)
    assert meta["format"] == 1 and meta["family"] == family
    for lib in ("torch", "scipy", "numpy", "mpmath"):
        assert re.match(r"\d+\.\d+", meta["versions"][lib]), meta["versions"]
    table = golden_cases.FAMILIES[family]()
    assert [c.id for c in table] == [c["id"] for c in meta["cases"]]
    for case, stored_case in zip(table, meta["cases"], strict=True):
        for name, a in case.arrays.items():
            assert stored_case["arrays"][name] == [a.dtype.str, list(a.shape)], (case.id, name)
            np.testing.assert_array_equal(data[f"{case.id}/{name}"], a, err_msg=f"{case.id}/{name}")
        for call, c in zip(case.calls, stored_case["calls"], strict=True):
            assert to_call(c) == call, (case.id, call.label)


def test_files_are_small() -> None:
    total = sum(p.stat().st_size for p in GOLDEN.glob("*.npz"))
    assert total < 400 * 1024, total


# --- the NaN/infinities table of the docs: a golden case for every cell ----------------------


def edge_table() -> list[tuple[str, str, str]]:
    """(function, argument, value) for every cell of the NaN / infinities table that
    docs/errors.md renders from ``tests/registry.py`` (``Func.special``)."""
    cells: list[tuple[str, str, str]] = []
    for f in FUNCS:
        name, _, variant = f.name.partition("[")
        # "softmax_cross_entropy[probabilities]": the target argument of that kind.
        kind = f" ({variant.rstrip(']')})" if variant else ""
        for arg, value in f.special:
            text = "nan" if math.isnan(value) else ("+inf" if value > 0 else "-inf")
            cells.append((name, arg + (kind if arg == "target" else ""), text))
    return cells


def test_every_edge_table_cell_has_a_golden_case() -> None:
    table = edge_table()
    assert len(table) >= 30, table
    have = {(c.function, c.argument, c.value) for c, _ in golden_cases.readme_cells()}
    missing = [cell for cell in table if cell not in have]
    assert not missing, missing
