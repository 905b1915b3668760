"""``crossent bench``: times every crossent function against NumPy, SciPy and PyTorch CPU.

Data are generated (fixed seed). Each library computes the same quantity on the same arrays;
the table reports the median time per call, the throughput in millions of input elements per
second, and each peer's time divided by crossent's (``x3.0`` = crossent is 3 times faster),
all measured in the same run. Every peer's result is also checked against crossent's: a
disagreement is flagged in the table (``!``) and on stderr.

Functions are found by name in the ``crossent`` module, so each one is benchmarked as soon as
it exists.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crossent._cli import CliError, Progress, atomic_output, check_output

DESCRIPTION = __doc__.split("\n\n")[0] if __doc__ else ""

PEERS = ("numpy", "scipy", "torch")
DEFAULT_SIZES = (10**3, 10**4, 10**5, 10**6, 10**7)
QUICK_SIZES = (10**3, 10**5, 10**6)
DTYPES = ("float32", "float64")

Thunk = Callable[[], Any]
Data = tuple[Any, ...]


# --------------------------------------------------------------------------------------------
# The cases: data, and one thunk per library
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One crossent function and its peers.

    ``rows``: the function works along the last axis of a (rows, classes) array.
    ``make(rng, shape, dtype)`` returns the arrays; ``impls[lib](data, mod)`` returns a thunk
    computing the result with library ``lib`` (module ``mod``), or ``None`` if it has no
    equivalent.
    """

    name: str
    rows: bool
    make: Callable[[np.random.Generator, tuple[int, ...], np.dtype[Any]], Data]
    impls: dict[str, Callable[[Data, Any], Thunk | None]] = field(default_factory=dict)


def _probs(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Any:
    return rng.uniform(1e-3, 1 - 1e-3, shape).astype(dtype)


def _labels01(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Any:
    return (rng.random(shape) < 0.5).astype(dtype)


def _bce_make(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Data:
    return _probs(rng, shape, dtype), _labels01(rng, shape, dtype)


def _logits_make(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Data:
    return (rng.standard_normal(shape) * 3).astype(dtype), _labels01(rng, shape, dtype)


def _dist_make(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Data:
    # Unnormalised positive weights: every library normalises each row itself.
    return (rng.random(shape) + 1e-3).astype(dtype), (rng.random(shape) + 1e-3).astype(dtype)


def _dist1_make(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Data:
    return ((rng.random(shape) + 1e-3).astype(dtype),)


def _softmax_make(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Data:
    logits = (rng.standard_normal(shape) * 3).astype(dtype)
    labels = rng.integers(0, shape[-1], shape[:-1], dtype=np.int64)
    return logits, labels


def _crossent(name: str) -> Callable[[Data, Any], Thunk | None]:
    def impl(d: Data, ce: Any) -> Thunk | None:
        f = getattr(ce, name, None)
        if f is None:
            return None
        return lambda: f(*d)

    return impl


# NumPy: the straightforward formulas, in the input's dtype.


def _np_bce(d: Data, np_: Any) -> Thunk:
    p, y = d

    def run() -> float:
        lp = np_.maximum(np_.log(p), -100)
        lq = np_.maximum(np_.log(1 - p), -100)
        return float(-np_.mean(y * lp + (1 - y) * lq))

    return run


def _np_bce_logits(d: Data, np_: Any) -> Thunk:
    x, y = d
    return lambda: float(np_.mean(np_.maximum(x, 0) - x * y + np_.log1p(np_.exp(-np_.abs(x)))))


def _np_norm(a: Any) -> Any:
    return a / a.sum(axis=-1, keepdims=True)


def _np_entropy(d: Data, np_: Any) -> Thunk:
    (p,) = d

    def run() -> Any:
        pn = _np_norm(p)
        return -np_.sum(pn * np_.log(pn), axis=-1)

    return run


def _np_kl(d: Data, np_: Any) -> Thunk:
    p, q = d

    def run() -> Any:
        pn, qn = _np_norm(p), _np_norm(q)
        return np_.sum(pn * np_.log(pn / qn), axis=-1)

    return run


def _np_cross(d: Data, np_: Any) -> Thunk:
    p, q = d
    return lambda: -np_.sum(_np_norm(p) * np_.log(_np_norm(q)), axis=-1)


def _np_js(d: Data, np_: Any) -> Thunk:
    p, q = d

    def run() -> Any:
        pn, qn = _np_norm(p), _np_norm(q)
        m = (pn + qn) / 2
        return (np_.sum(pn * np_.log(pn / m), axis=-1) + np_.sum(qn * np_.log(qn / m), axis=-1)) / 2

    return run


def _np_softmax_ce(d: Data, np_: Any) -> Thunk:
    x, labels = d

    def run() -> float:
        m = x.max(axis=-1, keepdims=True)
        lse = np_.log(np_.sum(np_.exp(x - m), axis=-1)) + m[..., 0]
        picked = np_.take_along_axis(x, labels[..., None], axis=-1)[..., 0]
        return float(np_.mean(lse - picked))

    return run


# SciPy: its own functions where it has one.


def _sp_bce(d: Data, sp: Any) -> Thunk:
    p, y = d
    xlogy = sp.special.xlogy
    return lambda: float(-np.mean(xlogy(y, p) + xlogy(1 - y, 1 - p)))


def _sp_bce_logits(d: Data, sp: Any) -> Thunk:
    x, y = d
    le = sp.special.log_expit
    return lambda: float(-np.mean(y * le(x) + (1 - y) * le(-x)))


def _sp_entropy(d: Data, sp: Any) -> Thunk:
    (p,) = d
    return lambda: sp.stats.entropy(p, axis=-1)


def _sp_kl(d: Data, sp: Any) -> Thunk:
    p, q = d
    return lambda: sp.stats.entropy(p, q, axis=-1)


def _sp_cross(d: Data, sp: Any) -> Thunk:
    p, q = d
    return lambda: sp.stats.entropy(p, axis=-1) + sp.stats.entropy(p, q, axis=-1)


def _sp_js(d: Data, sp: Any) -> Thunk:
    p, q = d
    return lambda: sp.spatial.distance.jensenshannon(p, q, axis=-1) ** 2


def _sp_softmax_ce(d: Data, sp: Any) -> Thunk:
    x, labels = d
    log_softmax = sp.special.log_softmax
    return lambda: float(
        -np.mean(np.take_along_axis(log_softmax(x, axis=-1), labels[..., None], axis=-1))
    )


# PyTorch (CPU): tensors share the NumPy arrays' memory (torch.from_numpy does not copy).


def _torch_args(d: Data, torch: Any) -> list[Any]:
    return [torch.from_numpy(a) for a in d]


def _t_bce(d: Data, torch: Any) -> Thunk:
    p, y = _torch_args(d, torch)
    f = torch.nn.functional.binary_cross_entropy
    return lambda: float(f(p, y))


def _t_bce_logits(d: Data, torch: Any) -> Thunk:
    x, y = _torch_args(d, torch)
    f = torch.nn.functional.binary_cross_entropy_with_logits
    return lambda: float(f(x, y))


def _t_norm(a: Any) -> Any:
    return a / a.sum(dim=-1, keepdim=True)


def _t_entropy(d: Data, torch: Any) -> Thunk:
    (p,) = _torch_args(d, torch)
    return lambda: torch.special.entr(_t_norm(p)).sum(dim=-1).numpy()


def _t_kl(d: Data, torch: Any) -> Thunk:
    p, q = _torch_args(d, torch)
    kl_div = torch.nn.functional.kl_div
    return lambda: kl_div(_t_norm(q).log(), _t_norm(p), reduction="none").sum(dim=-1).numpy()


def _t_cross(d: Data, torch: Any) -> Thunk:
    p, q = _torch_args(d, torch)
    return lambda: (-(_t_norm(p) * _t_norm(q).log()).sum(dim=-1)).numpy()


def _t_js(d: Data, torch: Any) -> Thunk:
    p, q = _torch_args(d, torch)
    kl_div = torch.nn.functional.kl_div

    def run() -> Any:
        pn, qn = _t_norm(p), _t_norm(q)
        lm = ((pn + qn) / 2).log()
        kp = kl_div(lm, pn, reduction="none").sum(dim=-1)
        kq = kl_div(lm, qn, reduction="none").sum(dim=-1)
        return ((kp + kq) / 2).numpy()

    return run


def _t_softmax_ce(d: Data, torch: Any) -> Thunk:
    x, labels = _torch_args(d, torch)
    f = torch.nn.functional.cross_entropy
    if x.ndim == 1:
        return lambda: float(f(x[None, :], labels[None]))
    return lambda: float(f(x.reshape(-1, x.shape[-1]), labels.reshape(-1)))


def _cases() -> list[Case]:
    def case(name: str, rows: bool, make: Any, np_: Any, sp: Any, t: Any) -> Case:
        impls = {"crossent": _crossent(name), "numpy": np_, "scipy": sp, "torch": t}
        return Case(name, rows, make, impls)

    return [
        case("binary_cross_entropy", False, _bce_make, _np_bce, _sp_bce, _t_bce),
        case(
            "binary_cross_entropy_with_logits",
            False,
            _logits_make,
            _np_bce_logits,
            _sp_bce_logits,
            _t_bce_logits,
        ),
        case("entropy", True, _dist1_make, _np_entropy, _sp_entropy, _t_entropy),
        case("kl_divergence", True, _dist_make, _np_kl, _sp_kl, _t_kl),
        case("cross_entropy", True, _dist_make, _np_cross, _sp_cross, _t_cross),
        case("jensen_shannon", True, _dist_make, _np_js, _sp_js, _t_js),
        case(
            "softmax_cross_entropy",
            True,
            _softmax_make,
            _np_softmax_ce,
            _sp_softmax_ce,
            _t_softmax_ce,
        ),
    ]


CASE_NAMES = tuple(c.name for c in _cases())


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def measure(
    thunks: dict[str, Thunk], *, min_time: float, min_samples: int, max_samples: int
) -> dict[str, float]:
    """Median seconds per call of each thunk.

    Each thunk gets one warm-up call, which also sets how many calls make one sample (about a
    millisecond's worth). Samples are then taken round-robin, one per library per round, so
    that a slow spell of a shared machine hits every library alike; at least ``min_samples``
    rounds, then more until each library has spent ``min_time`` seconds or ``max_samples``
    rounds have run.
    """
    calls: dict[str, int] = {}
    for lib, thunk in thunks.items():
        t0 = time.perf_counter()
        thunk()
        first = time.perf_counter() - t0
        calls[lib] = max(1, int(1e-3 / first)) if first > 0 else 1000
    samples: dict[str, list[float]] = {lib: [] for lib in thunks}
    spent = dict.fromkeys(thunks, 0.0)
    rounds = 0
    while rounds < min_samples or (
        rounds < max_samples and min(spent.values(), default=min_time) < min_time
    ):
        for lib, thunk in thunks.items():
            k = calls[lib]
            t0 = time.perf_counter()
            for _ in range(k):
                thunk()
            dt = time.perf_counter() - t0
            spent[lib] += dt
            samples[lib].append(dt / k)
        rounds += 1
    return {lib: statistics.median(ts) for lib, ts in samples.items()}


def _agree(a: Any, b: Any, dtype: np.dtype[Any]) -> bool:
    """Do two results agree to within the input dtype's accuracy?"""
    rtol = 1e-3 if dtype == np.float32 else 1e-7
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=rtol * 1e-3))


@dataclass
class Row:
    function: str
    dtype: str
    shape: tuple[int, ...]
    times: dict[str, float]
    mismatch: set[str]

    @property
    def n(self) -> int:
        return math.prod(self.shape)


def _shape(case: Case, n: int, classes: int) -> tuple[int, ...]:
    if not case.rows:
        return (n,)
    c = min(classes, n)
    return (max(1, n // c), c)


def _load_peers(names: list[str]) -> dict[str, Any]:
    mods: dict[str, Any] = {}
    for name in names:
        try:
            if name == "numpy":
                mods[name] = np
            elif name == "scipy":
                sp = importlib.import_module("scipy")
                for sub in ("scipy.special", "scipy.stats", "scipy.spatial.distance"):
                    importlib.import_module(sub)
                mods[name] = sp
            elif name == "torch":
                mods[name] = importlib.import_module("torch")
        except ImportError:
            continue
    return mods


def run(
    *,
    functions: list[str],
    sizes: list[int],
    dtypes: list[str],
    peers: list[str],
    classes: int,
    min_time: float,
    min_samples: int,
    max_samples: int,
    progress: Progress | None = None,
    warn: Callable[[str], None] = lambda s: None,
) -> tuple[list[Row], list[str]]:
    """Times every (function, dtype, size); returns the rows and the peers actually used."""
    import crossent

    mods = _load_peers(peers)
    libs = ["crossent", *[p for p in peers if p in mods]]
    cases = [c for c in _cases() if c.name in functions and hasattr(crossent, c.name)]
    rng = np.random.default_rng(20261127)
    jobs = [(c, dt, n) for c in cases for dt in dtypes for n in sizes]
    # Progress is weighted by element count, the best guess at time spent.
    total = sum(math.prod(_shape(c, n, classes)) * len(libs) for c, _, n in jobs)
    if progress is not None:
        progress.total = max(float(total), 1.0)
    done = 0.0
    rows: list[Row] = []
    for case, dt, n in jobs:
        dtype = np.dtype(dt)
        shape = _shape(case, n, classes)
        try:
            data = case.make(rng, shape, dtype)
        except MemoryError:
            raise CliError(
                f"not enough memory for the {dt} data of {case.name} at size {n:.3g} "
                f"({_fmt_size(shape)} elements): choose smaller --sizes"
            ) from None
        thunks: dict[str, Thunk] = {}
        mismatch: set[str] = set()
        reference: Any = None
        for lib in libs:
            thunk = case.impls[lib](data, crossent if lib == "crossent" else mods[lib])
            if thunk is None:
                continue
            try:
                result = thunk()
            except MemoryError:
                raise CliError(
                    f"not enough memory for {lib}'s {case.name} on {dt} data at size {n:.3g}: "
                    "choose smaller --sizes, or leave that peer out (--peers)"
                ) from None
            if lib == "crossent":
                reference = result
            elif not _agree(result, reference, dtype):
                mismatch.add(lib)
                warn(
                    f"{case.name} {dt} n={n}: {lib} gives {_short(result)}, "
                    f"crossent {_short(reference)}"
                )
            thunks[lib] = thunk
        if progress is not None:
            progress.update(done, f"{case.name} {dt} {_fmt_size(shape)}")
        times = measure(thunks, min_time=min_time, min_samples=min_samples, max_samples=max_samples)
        done += math.prod(shape) * len(libs)
        rows.append(Row(case.name, dt, shape, times, mismatch))
        del data
    if progress is not None:
        progress.update(total, "done")
        progress.close()
    return rows, libs[1:]


def _short(x: Any) -> str:
    a = np.asarray(x)
    return f"{float(a):.9g}" if a.ndim == 0 else f"array{a.shape}[0]={a.flat[0]:.9g}"


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _fmt_time(t: float) -> str:
    if t < 1e-3:
        return f"{t * 1e6:.1f} µs"
    if t < 1:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.3f} s"


def _fmt_size(shape: tuple[int, ...]) -> str:
    def e(n: int) -> str:
        if n >= 1000 and n == 10 ** round(math.log10(n)):
            return f"10^{round(math.log10(n))}"
        return str(n)

    return " x ".join(e(s) for s in shape)


def machine() -> str:
    """One line naming the machine, the libraries and the thread counts."""
    import crossent

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    parts = [
        f"{cpu}, {os.cpu_count()} logical CPUs",
        f"Python {platform.python_version()}",
        f"crossent {crossent.__version__} ({crossent.get_num_threads()} threads)",
        f"NumPy {np.__version__}",
    ]
    # Only the peers imported (a None entry in sys.modules marks a module that failed to).
    if sys.modules.get("scipy") is not None:
        parts.append(f"SciPy {sys.modules['scipy'].__version__}")
    torch = sys.modules.get("torch")
    if torch is not None:
        parts.append(f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads)")
    return "; ".join(parts)


def table(rows: list[Row], peers: list[str]) -> str:
    """The Markdown table: per row, crossent's median time and throughput, then each peer's
    median time and its ratio to crossent's (>1: crossent is faster)."""
    head = ["function", "dtype", "size", "crossent", "Melem/s"]
    for p in peers:
        head += [p, f"{p}/crossent"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        ce = r.times.get("crossent")
        cells = [
            f"`{r.function}`",
            r.dtype,
            _fmt_size(r.shape),
            _fmt_time(ce) if ce else "—",
            f"{r.n / ce / 1e6:,.0f}" if ce else "—",
        ]
        for p in peers:
            t = r.times.get(p)
            if t is None or not ce:
                cells += ["—", "—"]
            else:
                flag = " !" if p in r.mismatch else ""
                cells += [_fmt_time(t), f"x{t / ce:.1f}{flag}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: One colour per library, the same in every panel and every plot (matplotlib's default cycle).
COLOURS = {"crossent": "tab:blue", "numpy": "tab:orange", "scipy": "tab:green", "torch": "tab:red"}
#: One line style per dtype.
STYLES = {"float32": "-", "float64": "--"}
#: Where to get each peer that is not installed.
INSTALL = {
    "scipy": "pip install 'crossent[bench]' (SciPy and matplotlib)",
    "torch": "pip install torch --index-url https://download.pytorch.org/whl/cpu "
    "(optional: PyTorch CPU)",
}


def skipped_note(skipped: list[str]) -> str:
    """A line naming the peers that were not timed and how to install them ("" if none)."""
    if not skipped:
        return ""
    how = "; ".join(INSTALL[p] for p in skipped if p in INSTALL)
    return f"Not timed, not installed: {', '.join(skipped)}." + (f" To add: {how}." if how else "")


def figure(rows: list[Row], peers: list[str]) -> Any:
    """Throughput against array size on log axes: one panel per function, one colour per
    library (the same in every panel), one line style per dtype, one legend below the panels
    (never over the data), the machine and versions in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogLocator, NullFormatter

    functions = list(dict.fromkeys(r.function for r in rows))
    dtypes = list(dict.fromkeys(r.dtype for r in rows))
    libs = ["crossent", *peers]
    extra = iter(("tab:purple", "tab:brown", "tab:pink"))
    colours = {lib: COLOURS.get(lib) or next(extra, "tab:gray") for lib in libs}
    cols = min(2, len(functions)) or 1
    nrows = math.ceil(len(functions) / cols) or 1
    fig, axes = plt.subplots(
        nrows, cols, figsize=(6.5 * cols, 3.6 * nrows + 1.6), squeeze=False, layout="constrained"
    )
    for ax, fn in zip(axes.flat, functions, strict=False):
        for lib in libs:
            for dt in dtypes:
                pts = [
                    (r.n, r.n / r.times[lib] / 1e6)
                    for r in rows
                    if r.function == fn and r.dtype == dt and lib in r.times
                ]
                if pts:
                    xs, ys = zip(*sorted(pts), strict=True)
                    ax.plot(
                        xs,
                        ys,
                        STYLES.get(dt, ":"),
                        color=colours[lib],
                        marker="o",
                        markersize=3.5,
                        label=f"{lib} {dt}",
                    )
        ax.set_xscale("log")
        ax.set_yscale("log")
        # Whole decades, labelled at the powers of ten only (unlabelled minor ticks between):
        # every panel gets at least two labels, none of them crowded.
        for axis, set_lim in ((ax.xaxis, ax.set_xlim), (ax.yaxis, ax.set_ylim)):
            lo, hi = (float(v) for v in axis.get_data_interval())
            if 0 < lo <= hi < math.inf:
                first = math.floor(math.log10(lo))
                last = max(math.ceil(math.log10(hi)), first + 1)
                set_lim(10.0**first, 10.0**last)
            axis.set_major_locator(LogLocator(base=10, numticks=12))
            axis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10)), numticks=12))
            axis.set_minor_formatter(NullFormatter())
        ax.set_title(fn, fontsize="medium")
        ax.set_xlabel("elements")
        ax.set_ylabel("million elements / s")
        ax.grid(True, which="major", alpha=0.4)
        ax.grid(True, which="minor", alpha=0.12)
    for ax in list(axes.flat)[len(functions) :]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colours[lib], lw=2.5, label=lib) for lib in libs]
    handles += [Line2D([], [], color="black", ls=STYLES.get(dt, ":"), label=dt) for dt in dtypes]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    fig.suptitle(_title(), fontsize="small")
    return fig


def _title() -> str:
    """The machine line of the table, cut into at most three lines for a figure title."""
    parts = machine().split("; ")
    lines = [parts[0], "; ".join(parts[1:4]), "; ".join(parts[4:])]
    return "\n".join(line for line in lines if line)


def plot(rows: list[Row], peers: list[str], path: str, fmt: str | None = None) -> None:
    """Writes :func:`figure` to ``path`` in the format ``fmt`` (png, svg, pdf, ...), by default
    the one ``path``'s extension says."""
    import matplotlib.pyplot as plt

    fig = figure(rows, peers)
    try:
        fig.savefig(path, dpi=120, format=fmt)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parse_count(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 1 or value != int(value) or value > 1e10:
        raise argparse.ArgumentTypeError(f"not a positive whole number up to 1e10: {text!r}")
    return int(value)


def _list_of(parse: Callable[[str], Any], allowed: tuple[str, ...] | None = None) -> Any:
    def parse_list(text: str) -> list[Any]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        out = []
        for t in items:
            if allowed is not None and t not in allowed:
                raise argparse.ArgumentTypeError(
                    f"unknown value {t!r} (choose from {', '.join(allowed)})"
                )
            out.append(parse(t))
        return out

    return parse_list


def _aliases() -> dict[str, str]:
    short = {
        "bce": "binary_cross_entropy",
        "bce_logits": "binary_cross_entropy_with_logits",
        "bce_with_logits": "binary_cross_entropy_with_logits",
        "kl": "kl_divergence",
        "js": "jensen_shannon",
        "softmax_ce": "softmax_cross_entropy",
    }
    return {**{n: n for n in CASE_NAMES}, **short}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sizes",
        type=_list_of(_parse_count),
        metavar="N,N,...",
        help="element counts, e.g. 1e3,1e5,1e7 (default 1e3..1e7; --quick: 1e3,1e5,1e6)",
    )
    p.add_argument(
        "--dtypes",
        type=_list_of(str, DTYPES),
        metavar="DTYPE,...",
        help="float32 and/or float64 (default both)",
    )
    p.add_argument(
        "--functions",
        type=_list_of(lambda t: _aliases()[t], tuple(_aliases())),
        metavar="NAME,...",
        help="functions to time, by name or alias (bce, bce_logits, kl, js, softmax_ce); "
        "default: every crossent function available",
    )
    p.add_argument(
        "--peers",
        type=_list_of(str, PEERS),
        metavar="LIB,...",
        help="peer libraries among numpy, scipy, torch (default: those installed)",
    )
    p.add_argument(
        "--classes",
        type=_parse_count,
        default=1000,
        metavar="C",
        help="row length for the per-distribution functions: an n-element case is "
        "(n // C) rows of C (default 1000)",
    )
    p.add_argument(
        "--threads", type=_parse_count, metavar="T", help="crossent thread count (default: all)"
    )
    p.add_argument(
        "--min-time",
        type=float,
        default=None,
        metavar="S",
        help="seconds spent timing each library per case (default 0.3; --quick: 0.05)",
    )
    p.add_argument("--quick", action="store_true", help="fewer sizes and samples: a smoke run")
    p.add_argument(
        "--plot",
        metavar="OUT.png",
        help="also draw throughput against size on log axes (needs matplotlib)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    import crossent

    if args.plot is not None:
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            raise CliError(
                "--plot needs matplotlib, which is not installed (pip install matplotlib)"
            ) from None
        # Checked before the (long) run, not after it.
        check_output("--plot", args.plot, [])
        folder = os.path.dirname(os.path.realpath(args.plot))
        if not os.path.isdir(folder):
            raise CliError(f"--plot {args.plot}: no such directory {folder}")
    if args.min_time is not None and not (0 <= args.min_time <= 600):
        raise CliError(f"--min-time must be between 0 and 600 seconds, got {args.min_time}")
    if args.threads is not None:
        crossent.set_num_threads(args.threads)
    functions = args.functions or list(CASE_NAMES)
    missing = [f for f in functions if not hasattr(crossent, f)]
    if args.functions and missing:
        raise CliError(f"this crossent has no {', '.join(missing)}")
    sizes = args.sizes or list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    min_time = args.min_time if args.min_time is not None else (0.05 if args.quick else 0.3)

    def warn(msg: str) -> None:
        sys.stderr.write(f"\nwarning: results differ: {msg}\n")

    progress = Progress(1, label="bench", enabled=not args.quiet, delay=0.5)
    rows, peers = run(
        functions=functions,
        sizes=sizes,
        dtypes=args.dtypes or list(DTYPES),
        peers=args.peers or list(PEERS),
        classes=args.classes,
        min_time=min_time,
        min_samples=3 if args.quick else 5,
        max_samples=50 if args.quick else 200,
        progress=progress,
        warn=warn,
    )
    out = sys.stdout
    out.write(f"Machine: {machine()}\n\n")
    out.write(table(rows, peers) + "\n\n")
    out.write(
        "Median time per call; Melem/s = input elements per second; "
        "<peer>/crossent = peer's time over crossent's (>1: crossent faster). "
        "Per-distribution functions: rows x classes, along the last axis.\n"
    )
    note = skipped_note([p for p in (args.peers or list(PEERS)) if p not in peers])
    if note:
        out.write(note + "\n")
    out.flush()
    if args.plot is not None:
        # Drawn under a temporary name beside the destination, renamed over it once complete.
        fmt = os.path.splitext(args.plot)[1][1:].lower() or "png"
        try:
            with atomic_output("--plot", args.plot) as tmp:
                plot(rows, peers, tmp, fmt)
        except OSError as e:
            raise CliError(f"cannot write --plot {args.plot}: {e.strerror or e}") from None
        sys.stderr.write(f"plot written to {args.plot}\n")
    return 0
