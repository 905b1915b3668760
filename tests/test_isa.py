"""Every instruction-set path against the float64 NumPy reference.

``CROSSENT_ISA`` (read once, at import) selects the path, so each path runs in a fresh
process: the vectorised logs and exponentials must agree with NumPy on every path the CPU has.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import reference

import crossent
import crossent._core as core

KNOWN = ("generic", "avx2", "avx512")

# name -> (function, input key, target key, keyword argument keys)
CASES = {
    "bce_soft": ("bce", "p", "soft", ()),
    "bce_hard_bool": ("bce", "p", "hard", ()),
    "bce_hard_float_weighted": ("bce", "p", "hard_f", ("weight",)),
    "logits_soft": ("logits", "x", "soft", ()),
    "logits_hard_pos_weight": ("logits", "x", "hard_u8", ("pos_weight",)),
}

# The child loads the inputs, computes every case ("sum" and "none") and saves the results.
CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    import crossent, crossent._core as core

    cases = {cases!r}
    src, dst = sys.argv[1], sys.argv[2]
    d = dict(np.load(src))
    res = {{"isa": np.array(core._isa())}}
    for name, (fn, xk, yk, kws) in cases.items():
        f = (crossent.binary_cross_entropy if fn == "bce"
             else crossent.binary_cross_entropy_with_logits)
        kw = {{k: d[k] for k in kws}}
        res[name + "_sum"] = np.array(f(d[xk], d[yk], reduction="sum", **kw))
        res[name + "_none"] = f(d[xk], d[yk], reduction="none", **kw)
    np.savez(dst, **res)
    """
).format(cases=CASES)


def make_inputs(dtype: type[np.floating]) -> dict[str, npt.NDArray[np.generic]]:
    rng = np.random.default_rng(7)
    n = 100_003
    tiny = 1e-45 if dtype == np.float32 else 5e-324
    p = rng.random(n).astype(dtype)
    p[:8] = [0.0, 1.0, tiny, 1e-30, 0.5, 1 - 1e-7, 1e-8, 0.3]
    hard = rng.random(n) < 0.5
    x = (rng.standard_normal(n) * 30).astype(dtype)
    x[:6] = [0.0, -1e4, 1e4, 88.0, -88.0, 1e-7]
    return {
        "p": p,
        "x": x,
        "soft": rng.random(n).astype(dtype),
        "hard": hard,
        "hard_f": hard.astype(dtype),
        "hard_u8": hard.astype(np.uint8),
        "weight": rng.random(n).astype(dtype),
        "pos_weight": np.array([1.5], dtype=dtype),
    }


def run_child(isa: str, inputs: Path, tmp: Path) -> dict[str, npt.NDArray[np.generic]]:
    out = tmp / f"out_{isa}.npz"
    env = dict(os.environ, CROSSENT_ISA=isa)
    subprocess.run([sys.executable, "-c", CHILD, str(inputs), str(out)], env=env, check=True)
    with np.load(out) as f:
        return dict(f)


def test_isa_name_is_known() -> None:
    assert core._isa() in KNOWN


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("isa", KNOWN)
def test_every_isa_matches_float64_reference(
    isa: str, dtype: type[np.floating], tmp_path: Path
) -> None:
    data = make_inputs(dtype)
    src = tmp_path / "in.npz"
    np.savez(src, **data)  # type: ignore[arg-type]
    got = run_child(isa, src, tmp_path)
    best = run_child("avx512", src, tmp_path)["isa"].item()
    assert best in KNOWN
    # A request above what the CPU has is clamped to the best it has.
    assert got["isa"].item() == KNOWN[min(KNOWN.index(isa), KNOWN.index(best))]
    eps = float(np.finfo(dtype).eps)
    for name, (fn, xk, yk, kws) in CASES.items():
        kw = {k: data[k] for k in kws}
        if fn == "bce":
            ref = reference.bce(data[xk], data[yk], **kw)
        else:
            ref = reference.bce_with_logits(data[xk], data[yk], **kw)
        total = float(got[name + "_sum"])
        assert total == pytest.approx(float(ref.sum()), rel=16 * eps), (isa, name)
        # The logits formula subtracts terms of the size of |x| (in the input's precision, as
        # torch does), so its error is relative to |x| as well as to the loss.
        scale = np.abs(ref) + (np.abs(data[xk].astype(np.float64)) if fn == "logits" else 0.0)
        err = np.abs(got[name + "_none"].astype(np.float64) - ref)
        bad = ~(err <= 4 * eps * scale + 2e-45)
        assert not bad.any(), (isa, name, np.flatnonzero(bad)[:5], err[bad][:5], ref[bad][:5])


def test_unknown_isa_warns_and_falls_back() -> None:
    env = dict(os.environ, CROSSENT_ISA="sse9")
    code = "import crossent._core as c; print(c._isa())"
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() in KNOWN
    assert "CROSSENT_ISA" in proc.stderr


def test_bits_do_not_depend_on_threads(threads: None) -> None:
    rng = np.random.default_rng(3)
    p = rng.random(1_000_000, dtype=np.float32)
    y = rng.random(1_000_000) < 0.3
    sums = set()
    for n in (1, 2, 3, 7):
        crossent.set_num_threads(n)
        sums.add(crossent.binary_cross_entropy(p, y, reduction="sum"))
    assert len(sums) == 1
