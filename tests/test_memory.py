"""Memory: repeated calls (successful or failing) leave the resident set flat, operands of
every dtype combination are read in place, and a slow test runs binary cross-entropy on more
than 2^31 elements (no 32-bit index anywhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import peak
import pytest
from registry import FLOATS, FUNCS, full_args

import crossent

STATUS = Path("/proc/self/status")


def rss_kib() -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def one_round(calls: list[tuple[Any, dict[str, Any], dict[str, Any]]]) -> int:
    done = 0
    for f, args, extra in calls:
        try:
            f.call(args, **extra)
        except (ValueError, TypeError):
            pass
        done += 1
    return done


@pytest.mark.skipif(not STATUS.exists(), reason="reads /proc/self/status")
def test_rss_stays_flat_over_100k_calls_including_errors() -> None:
    calls: list[tuple[Any, dict[str, Any], dict[str, Any]]] = []
    for i, f in enumerate(FUNCS):
        for dtype in FLOATS:
            args = full_args(f, np.random.default_rng(i), (8, 16), dtype)
            calls.append((f, args, {}))
            calls.append((f, args, f.none()))
            out = np.empty(f.out_shape(args), dtype=dtype)
            calls.append((f, args, {"out": out, **f.none()}))
            # error paths: a bad dtype, a bad shape, a bad out, a value outside the domain
            first = f.positional[0]
            calls.append((f, {**args, first: np.asarray(args[first]).astype(complex)}, {}))
            calls.append((f, {**args, first: np.asarray(args[first])[:3]}, {}))
            bad_out: dict[str, Any] = {"out": np.empty(3, dtype=dtype), **f.none()}
            calls.append((f, args, bad_out))
            for arg, values in f.domain.items():
                bad = np.array(args[arg], copy=True)
                bad.flat[5] = values[0]
                calls.append((f, {**args, arg: bad}, {}))
    total = 0
    while total < 10_000:  # warm up: caches, the pool, NumPy's allocator
        total += one_round(calls)
    before = rss_kib()
    total = 0
    while total < 100_000:
        total += one_round(calls)
    grown = rss_kib() - before
    assert grown < 4 * 1024, f"RSS grew by {grown} KiB over {total} calls"


@pytest.mark.slow
def test_bce_over_more_than_2_31_elements() -> None:
    """2^31 + 2^20 elements: a float32 input broadcast from one row (zero stride) and a real
    uint8 target of 2.1 GB; the result and the position of a bad label past 2^31 must be
    right (a 32-bit flat index would wrap)."""
    cols = 1 << 20
    rows = (1 << 11) + 1
    rng = np.random.default_rng(0)
    row = rng.uniform(0.01, 0.99, size=cols).astype(np.float32)
    x = np.broadcast_to(row, (rows, cols))
    y = np.empty((rows, cols), dtype=np.uint8)
    for r in range(rows):
        y[r] = (rng.integers(0, 2, size=cols)).astype(np.uint8)
    assert x.size > 2**31
    # Chunked float64 reference, one row at a time.
    log_p = np.log(row.astype(np.float64))
    log_q = np.log1p(-row.astype(np.float64))
    total = 0.0
    for r in range(rows):
        total -= float(np.where(y[r] == 1, log_p, log_q).sum())
    got = crossent.binary_cross_entropy(x, y, reduction="sum")
    assert got == pytest.approx(total, rel=1e-9)
    assert crossent.binary_cross_entropy(x, y) == pytest.approx(total / x.size, rel=1e-9)
    y[rows - 1, 7] = 2
    with pytest.raises(ValueError, match=rf"\({rows - 1}, 7\)"):
        crossent.binary_cross_entropy(x, y)


MIXED_SCRIPT = """
    import itertools, json, sys
    import numpy as np
    import crossent

    F = (np.float32, np.float64)
    LABELS = (np.bool_, np.uint8, np.int8, np.int32, np.int64)
    SOFTMAX_LABELS = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32)
    ROWS, COLS = 1 << 12, 1 << 10  # 4 Mi elements: a float32 copy is 16 MiB
    rng = np.random.default_rng(0)

    def as_(a, dtype):
        return None if a is None else np.asarray(a).astype(dtype)

    def same(a, b):
        if isinstance(a, tuple):
            return all(same(x, y) for x, y in zip(a, b))
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))

    def new(dtype, low=0.05, high=0.95, shape=(ROWS, COLS)):
        return rng.uniform(low, high, shape).astype(dtype)

    probs = {d: new(d) for d in F}
    logits = {d: rng.normal(0, 3, (ROWS, COLS)).astype(d) for d in F}
    soft = {d: new(d, 0.0, 1.0) for d in F}
    hard = {d: (rng.uniform(size=(ROWS, COLS)) < 0.5).astype(d) for d in LABELS}
    weights = {d: new(d, 0.5, 2.0) for d in F}
    class_w = {d: new(d, 0.5, 2.0, (COLS,)) for d in F}
    dist = {d: new(d) for d in F}
    dist_q = {d: new(d) for d in F}
    dirichlet = rng.dirichlet(np.ones(COLS), ROWS)
    rows_t = {d: dirichlet.astype(d) for d in F}
    labels = {d: (np.arange(ROWS) % 100).astype(d) for d in SOFTMAX_LABELS}
    grads = {d: (np.ones((ROWS, COLS), d), np.ones((ROWS, COLS), d)) for d in F}

    def cases():
        c = crossent
        # Binary cross-entropy, on probabilities and logits, and the gradient: every input,
        # target, weight and pos_weight dtype. The reference converts each to the input's
        # dtype first, as the call did before reading them in place.
        for x, y, w in itertools.product(F, F + LABELS, (None,) + F):
            t = soft[y] if y in F else hard[y]
            w_ = None if w is None else weights[w]
            yield (f"binary_cross_entropy {x.__name__} {np.dtype(y)} {w and w.__name__}",
                   lambda: c.binary_cross_entropy(probs[x], t, weight=w_, reduction="sum"),
                   lambda: c.binary_cross_entropy(probs[x], as_(t, x) if y in F else t,
                                                  weight=as_(w_, x), reduction="sum"))
            for pw in (None,) + F:
                pw_ = None if pw is None else class_w[pw]
                names = f"{x.__name__} {np.dtype(y)} {w and w.__name__} {pw and pw.__name__}"
                kw = dict(weight=w_, pos_weight=pw_)
                ref = dict(weight=as_(w_, x), pos_weight=as_(pw_, x))
                t_ = as_(t, x) if y in F else t
                yield (f"binary_cross_entropy_with_logits {names}",
                       lambda kw=kw: c.binary_cross_entropy_with_logits(
                           logits[x], t, reduction="sum", **kw),
                       lambda ref=ref, t_=t_: c.binary_cross_entropy_with_logits(
                           logits[x], t_, reduction="sum", **ref))
                g = grads[x]
                yield (f"binary_cross_entropy_with_logits_grad {names}",
                       lambda kw=kw, g=g: c.binary_cross_entropy_with_logits_grad(
                           logits[x], t, out=g, **kw),
                       lambda ref=ref, t_=t_: c.binary_cross_entropy_with_logits_grad(
                           logits[x], t_, **ref))
        # The divergences: every pair of dtypes, computed in the wider one.
        for name in ("cross_entropy", "kl_divergence", "jensen_shannon"):
            f = getattr(c, name)
            for p, q in itertools.product(F, F):
                wide = np.float64 if np.float64 in (p, q) else np.float32
                for axis in (None, -1, 0):
                    yield (f"{name} {p.__name__} {q.__name__} axis={axis}",
                           lambda f=f, p=p, q=q, axis=axis: f(dist[p], dist_q[q], axis=axis),
                           lambda f=f, p=p, q=q, axis=axis, wide=wide: f(
                               dist[p].astype(wide), dist_q[q].astype(wide), axis=axis))
        for p in F:
            yield (f"entropy {p.__name__}", lambda p=p: c.entropy(dist[p], axis=None),
                   lambda p=p: c.entropy(dist[p], axis=None))
        # Softmax cross-entropy and its gradient: probability targets and class weights of
        # either dtype (read in the logits' precision), and every label dtype.
        for x, t, w in itertools.product(F, F + SOFTMAX_LABELS, (None,) + F):
            y = rows_t[t] if t in F else labels[t]
            w_ = None if w is None else class_w[w]
            y_ = as_(y, x) if t in F else y
            names = f"{x.__name__} {np.dtype(t)} {w and w.__name__}"
            for ls in (0.0, 0.1):
                yield (f"softmax_cross_entropy {names} {ls}",
                       lambda y=y, w_=w_, ls=ls: c.softmax_cross_entropy(
                           logits[x], y, weight=w_, label_smoothing=ls, reduction="sum"),
                       lambda y_=y_, w_=w_, ls=ls: c.softmax_cross_entropy(
                           logits[x], y_, weight=as_(w_, x), label_smoothing=ls,
                           reduction="sum"))
            g = grads[x]
            yield (f"softmax_cross_entropy_grad {names}",
                   lambda y=y, w_=w_, g=g: c.softmax_cross_entropy_grad(
                       logits[x], y, weight=w_, label_smoothing=0.1, out=g),
                   lambda y_=y_, w_=w_: c.softmax_cross_entropy_grad(
                       logits[x], y_, weight=as_(w_, x), label_smoothing=0.1))
        # Accumulators: the same in-place reads, batch by batch.
        for x, o in itertools.product(F, F):
            def acc_run(make, *args):
                acc = make()
                acc.update(*args)
                return acc.result()
            wide = np.float64 if np.float64 in (x, o) else np.float32
            for name in ("CrossEntropy", "KLDivergence"):
                make = getattr(c, name + "Accumulator")
                yield (f"{name}Accumulator {x.__name__} {o.__name__}",
                       lambda make=make: acc_run(make, dist[x], dist_q[o]),
                       lambda make=make: acc_run(make, as_(dist[x], wide), as_(dist_q[o], wide)))
            yield (f"BinaryCrossEntropyWithLogitsAccumulator {x.__name__} {o.__name__}",
                   lambda: acc_run(c.BinaryCrossEntropyWithLogitsAccumulator, logits[x], soft[o]),
                   lambda: acc_run(c.BinaryCrossEntropyWithLogitsAccumulator, logits[x],
                                   as_(soft[o], x)))
            yield (f"SoftmaxCrossEntropyAccumulator {x.__name__} {o.__name__}",
                   lambda: acc_run(c.SoftmaxCrossEntropyAccumulator, logits[x], rows_t[o]),
                   lambda: acc_run(c.SoftmaxCrossEntropyAccumulator, logits[x],
                                   as_(rows_t[o], x)))

    report = []
    # Gradients are written into `out` (shared by the cases: compared before the next one).
    for name, call, reference in cases():
        call()  # warm up: the pool, the allocator, NumPy's caches
        grown, got = peak(call)
        report.append({"case": name, "kib": grown, "same": same(got, reference())})
    print(json.dumps(report))
    """


@peak.needs_clear_refs
def test_every_dtype_combination_is_read_in_place() -> None:
    """Operands of every supported dtype combination (float32 with float64, float targets and
    weights of the other precision, integer and bool labels) are read where they lie: over
    4 Mi elements the peak resident memory grows by less than a copy of one operand would
    take (16 MiB in float32), and the results have the very bits of the same call on
    operands converted first (what crossent did before it read them in place)."""
    report = peak.run(MIXED_SCRIPT, timeout=1200)
    assert len(report) > 300
    copied = [f"{r['case']}: +{r['kib']} KiB" for r in report if r["kib"] >= 2048]
    assert not copied, "peak memory grew by a copy:\n" + "\n".join(copied)
    differ = [r["case"] for r in report if not r["same"]]
    assert not differ, "results differ from the converted operands':\n" + "\n".join(differ)


LOG_LOSS_SCRIPT = """
    import json
    import numpy as np
    import crossent

    ROWS, COLS = 1 << 18, 64  # float32 y_pred: 64 MiB; a float64 one-hot: 128 MiB
    rng = np.random.default_rng(0)
    p = rng.random((ROWS, COLS), dtype=np.float32)
    p /= p.sum(axis=1, keepdims=True)
    codes = (np.arange(ROWS) % COLS).astype(np.int64)
    names = np.array([f"c{i:02d}" for i in range(COLS)])[codes]
    w = rng.random(ROWS)
    small, fortran = codes.astype(np.uint8), np.asfortranarray(p)
    report = {
        "int codes": growth(lambda: crossent.log_loss(codes, p)),
        "int codes, labels, weights": growth(
            lambda: crossent.log_loss(codes, p, sample_weight=w, labels=range(COLS))
        ),
        "uint8 codes, fortran": growth(lambda: crossent.log_loss(small, fortran)),
        "accumulator": growth(
            lambda: crossent.LogLossAccumulator(labels=range(COLS)).update(codes, p)
        ),
        "str labels": growth(lambda: crossent.log_loss(names, p)),
        "str labels given": growth(lambda: crossent.log_loss(names, p, labels=sorted(set(names)))),
    }
    print(json.dumps(report))
    """


@peak.needs_clear_refs
def test_log_loss_makes_no_one_hot_and_no_copy_of_y_pred() -> None:
    """log_loss over 2^18 x 64 float32 predictions (64 MiB; scikit-learn's one-hot is 128 MiB
    and its clipped copy 64 MiB): integer codes 0..K-1 are read in place, so the peak resident
    memory grows by less than 2 MiB; other labels cost their code array (1 MiB of int32) and,
    when the classes are inferred, the sort of a copy of y_true, far below one y_pred."""
    report = peak.run(LOG_LOSS_SCRIPT)
    for case in ("int codes", "int codes, labels, weights", "uint8 codes, fortran", "accumulator"):
        assert report[case] < 2048, f"{case}: +{report[case]} KiB"
    for case in ("str labels", "str labels given"):
        assert report[case] < 16 * 1024, f"{case}: +{report[case]} KiB"
