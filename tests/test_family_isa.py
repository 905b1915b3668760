"""The divergences and softmax cross-entropy on every instruction-set path.

``CROSSENT_ISA`` is read once, at import, so each path runs in a fresh process; every path must
agree with the float64 SciPy/NumPy references, on short rows (batched) and long rows (chunked).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.stats
from scipy.spatial.distance import jensenshannon

CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    import crossent, crossent._core as core

    d = dict(np.load(sys.argv[1]))
    res = {"isa": np.array(core._isa())}
    for shape in ("short", "long"):
        p, q, x, y = (d[f"{k}_{shape}"] for k in "pqxy")
        res[f"entropy_{shape}"] = np.asarray(crossent.entropy(p))
        res[f"kl_{shape}"] = np.asarray(crossent.kl_divergence(p, q))
        res[f"ce_{shape}"] = np.asarray(crossent.cross_entropy(p, q))
        res[f"js_{shape}"] = np.asarray(crossent.jensen_shannon(p, q))
        res[f"sce_{shape}"] = crossent.softmax_cross_entropy(x, y, reduction="none")
        res[f"sce_smooth_{shape}"] = crossent.softmax_cross_entropy(
            x, y, reduction="none", label_smoothing=0.1, weight=d[f"w_{shape}"]
        )
        res[f"sce_probs_{shape}"] = crossent.softmax_cross_entropy(x, p, reduction="none")
    np.savez(sys.argv[2], **res)
    """
)


def inputs(dtype: Any) -> dict[str, Any]:
    rng = np.random.default_rng(11)
    d: dict[str, Any] = {}
    for shape, (r, c) in {"short": (3001, 7), "long": (3, 70_001)}.items():
        p = rng.random((r, c))
        p[rng.random((r, c)) < 0.1] = 0.0
        d[f"p_{shape}"] = p.astype(dtype)
        d[f"q_{shape}"] = (rng.random((r, c)) + 1e-3).astype(dtype)
        x = rng.standard_normal((r, c)) * 20
        x[0, :2] = [1e4, -1e4]
        d[f"x_{shape}"] = x.astype(dtype)
        d[f"y_{shape}"] = rng.integers(0, c, r)
        d[f"w_{shape}"] = rng.random(c) + 0.5
    return d


def references(d: dict[str, Any], shape: str) -> dict[str, Any]:
    p, q, x, w = (np.asarray(d[f"{k}_{shape}"], dtype=np.float64) for k in "pqxw")
    y = np.asarray(d[f"y_{shape}"], dtype=np.int64)
    m = x.max(-1, keepdims=True)
    logp = x - (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))
    nll = -np.take_along_axis(logp, y[:, None], -1)[:, 0]
    c = x.shape[-1]
    smooth = 0.9 * nll * w[y] + 0.1 / c * -(logp * w).sum(-1)
    a, b = p / p.sum(-1, keepdims=True), q / q.sum(-1, keepdims=True)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return {
            "entropy": scipy.stats.entropy(p, axis=-1),
            "kl": scipy.stats.entropy(p, q, axis=-1),
            "ce": np.where(a == 0, 0.0, -a * np.log(b)).sum(-1),
            "js": jensenshannon(p, q, axis=-1) ** 2,
            "sce": nll,
            "sce_smooth": smooth,
            "sce_probs": -(logp * p).sum(-1),
        }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_isa_path_matches_the_references(dtype: Any, tmp_path: Path) -> None:
    d = inputs(dtype)
    src = tmp_path / "in.npz"
    np.savez(src, **d)
    ran = set()
    for isa in ("generic", "avx2", "avx512"):
        dst = tmp_path / f"{isa}.npz"
        env = dict(os.environ, CROSSENT_ISA=isa)
        subprocess.run([sys.executable, "-c", CHILD, str(src), str(dst)], env=env, check=True)
        got = dict(np.load(dst))
        ran.add(str(got["isa"]))
        rtol = 1e-12 if dtype == np.float64 else 2e-6
        for shape in ("short", "long"):
            for name, want in references(d, shape).items():
                scale = 1e4 if name.startswith("sce") else 1.0
                np.testing.assert_allclose(
                    got[f"{name}_{shape}"],
                    want,
                    rtol=rtol,
                    atol=rtol * scale,
                    err_msg=f"{name} {shape} on {isa}",
                )
    assert "generic" in ran
