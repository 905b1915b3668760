"""Zero-copy interop: PyTorch CPU tensors, pyarrow arrays (nulls refused), pandas and polars
Series, np.memmap, and any object with ``__array_interface__`` or ``__dlpack__`` are read in
place. A subprocess measures the peak resident memory of each call (a copy of the 128 MiB
input would show); a byte-swapped array, which crossent must convert, is the control that
proves the measurement sees copies."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import crossent

HAVE_PROC = Path("/proc/self/clear_refs").exists()


class InterfaceOnly:
    """Exposes an array only through ``__array_interface__``."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a
        self.__array_interface__ = a.__array_interface__


class DLPackOnly:
    """Exposes an array only through DLPack."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self._a.__dlpack_device__()


def _wrappers() -> dict[str, Any]:
    """name -> function wrapping a NumPy array into that library's object (where installed)."""
    out: dict[str, Any] = {
        "__array_interface__": InterfaceOnly,
        "__dlpack__": DLPackOnly,
    }
    try:
        import torch

        out["torch"] = torch.from_numpy
    except ImportError:
        pass
    try:
        import pyarrow as pa

        out["pyarrow"] = pa.array
    except ImportError:
        pass
    try:
        import pandas as pd

        out["pandas"] = pd.Series
    except ImportError:
        pass
    try:
        import polars as pl

        out["polars"] = pl.Series
    except ImportError:
        pass
    return out


@pytest.mark.parametrize("kind", sorted(_wrappers()))
def test_same_result_as_numpy(kind: str) -> None:
    wrap = _wrappers()[kind]
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 100_000).astype(np.float32)
    x = rng.standard_normal(100_000)
    y = (rng.random(100_000) < 0.5).astype(np.uint8)
    assert crossent.binary_cross_entropy(wrap(p), wrap(y)) == crossent.binary_cross_entropy(p, y)
    got = crossent.binary_cross_entropy_with_logits(wrap(x), y, reduction="none")
    np.testing.assert_array_equal(
        got, crossent.binary_cross_entropy_with_logits(x, y, reduction="none")
    )
    g, h = crossent.binary_cross_entropy_with_logits_grad(wrap(x), wrap(y))
    g0, h0 = crossent.binary_cross_entropy_with_logits_grad(x, y)
    assert np.array_equal(g, g0) and np.array_equal(h, h0)
    q = rng.uniform(0.1, 1, 1000)
    assert crossent.entropy(wrap(q)) == crossent.entropy(q)


def test_memmap(tmp_path: Path) -> None:
    p = np.random.default_rng(1).uniform(0, 1, 50_000)
    np.save(tmp_path / "p.npy", p)
    mm = np.load(tmp_path / "p.npy", mmap_mode="r")
    y = p > 0.5
    assert crossent.binary_cross_entropy(mm, y) == crossent.binary_cross_entropy(p, y)


def test_torch_tensors_that_cannot_be_read_in_place_are_refused() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="'input'"):
        crossent.binary_cross_entropy(torch.zeros(3, requires_grad=True), torch.zeros(3))
    with pytest.raises(TypeError, match="'input'"):  # not in CPU memory
        crossent.binary_cross_entropy(torch.zeros(3, device="meta"), torch.zeros(3))
    # A detached view is read in place.
    t = torch.full((3,), 0.5, requires_grad=True)
    assert crossent.binary_cross_entropy(t.detach(), torch.ones(3)) == pytest.approx(np.log(2))


def test_pyarrow_float_nulls_are_nan() -> None:
    """Arrow arrays are read through the Arrow C data interface: a null in a float column is
    read as NaN (a copy of that column), which nan_policy then treats as any NaN."""
    pa = pytest.importorskip("pyarrow")
    p = pa.array([0.5, None, 0.25])
    got = crossent.binary_cross_entropy(p, np.array([1.0, 1.0, 1.0]), reduction="none")
    np.testing.assert_array_equal(got, [np.log(2), np.nan, np.log(4)])


def test_dlpack_errors_name_the_argument() -> None:
    class BadDevice(DLPackOnly):
        def __dlpack_device__(self) -> Any:
            return (2, 0)  # CUDA

        def __dlpack__(self, **kwargs: Any) -> Any:
            raise BufferError("not on the CPU")

    with pytest.raises(TypeError, match="'target'"):
        crossent.binary_cross_entropy(np.ones(3) / 2, BadDevice(np.ones(3)))  # type: ignore[call-overload]


SCRIPT = textwrap.dedent(
    """
    import json, sys, numpy as np, crossent
    sys.path.insert(0, sys.argv[2])
    from test_interop import _wrappers

    N = 1 << 25  # 128 MiB of float32

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def growth(x, y):
        crossent.binary_cross_entropy(np.full(1 << 17, 0.5, np.float32), np.ones(1 << 17))
        np.asarray(x).sum() if not hasattr(x, "__dlpack__") or hasattr(x, "__array__") else None
        before = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak to the current resident size
        crossent.binary_cross_entropy(x, y)
        return status("VmHWM") - before

    rng = np.random.default_rng(0)
    p = rng.random(N, dtype=np.float32)
    y = (p > 0.5).view(np.uint8)
    out = {}
    wrap = _wrappers()
    for name in sorted(wrap):
        out[name] = growth(wrap[name](p), wrap[name](y))
    np.save(sys.argv[1], p)
    mm = np.load(sys.argv[1], mmap_mode="r")
    mm.sum()  # fault the file's pages in: they are shared page cache, not a copy
    out["memmap"] = growth(mm, y)
    del mm
    out["numpy"] = growth(p, y)
    out["control: byte-swapped"] = growth(p.astype(">f4"), y)
    print(json.dumps(out))
    """
)


@pytest.mark.skipif(not HAVE_PROC, reason="needs Linux /proc/self/clear_refs")
def test_no_copy_peak_memory(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "p.npy"), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    growth = json.loads(proc.stdout)
    mib = 1 << 20
    # The measurement sees a copy: the control converts 128 MiB.
    assert growth.pop("control: byte-swapped") > 100 * mib
    assert {"numpy", "memmap", "__array_interface__", "__dlpack__"} <= set(growth)
    for name, g in growth.items():
        assert g < 4 * mib, f"{name}: peak memory grew by {g / mib:.1f} MiB"
