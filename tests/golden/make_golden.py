"""Writes the golden files: PyTorch's, SciPy's and mpmath's results on the cases of cases.py.

Run where torch, scipy and mpmath are installed (any CPU build of torch):

    python tests/golden/make_golden.py            # every family
    python tests/golden/make_golden.py softmax    # one family

Each family becomes one compressed `<family>.npz` beside this script, holding every case's
input arrays (`<case>/<argument>`), each call's outputs (`<case>/<call>/<reference>/<output>`,
reference one of torch, torch64, scipy, exact), packed into one array per dtype, and a JSON
`__meta__` (UTF-8 bytes) with the index of those arrays, the cases' parameters, the errors
PyTorch raised, and the versions of the libraries that computed them.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golden import refs
from golden.cases import FAMILIES, Call, Case

HERE = Path(__file__).resolve().parent
FORMAT = 1


def versions() -> dict[str, str]:
    import mpmath
    import scipy
    import torch

    return {
        "torch": torch.__version__,
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "mpmath": mpmath.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"


def call_meta(call: Call) -> dict[str, Any]:
    return {
        "label": call.label,
        "func": call.func,
        "params": call.params,
        "ref": call.ref,
        "exact": call.exact,
        "expect": call.expect,
        "tags": list(call.tags),
        "note": call.note,
    }


def case_meta(case: Case) -> dict[str, Any]:
    return {
        "id": case.id,
        "arrays": {k: [v.dtype.str, list(v.shape)] for k, v in case.arrays.items()},
        "calls": [call_meta(c) for c in case.calls],
    }


def references(call: Call, arrays: refs.Arrays) -> tuple[dict[str, refs.Arrays], dict[str, str]]:
    """Every reference's outputs for one call, and the errors raised instead."""
    outputs: dict[str, refs.Arrays] = {}
    errors: dict[str, str] = {}
    wanted: list[str] = []
    if call.ref == "scipy":
        wanted.append("scipy")
    else:
        wanted.append("torch")
        if refs.input_dtype(call, arrays) != np.float64:
            wanted.append("torch64")
    if call.exact:
        wanted.append("exact")
    for name in wanted:
        try:
            with np.errstate(all="ignore"):
                if name == "scipy":
                    outputs[name] = refs.scipy_outputs(call, arrays)
                elif name == "exact":
                    outputs[name] = refs.exact_outputs(call, arrays)
                else:
                    outputs[name] = refs.torch_outputs(call, arrays, upcast=name == "torch64")
        except Exception as e:  # what the reference raises is part of the record
            errors[name] = _error(e)
    return outputs, errors


def pack(store: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """Few large arrays compress better than many small ones: every array is stored raveled
    in one blob per dtype; the JSON index (in `__meta__`, as UTF-8 bytes) says where."""
    blobs: dict[str, list[np.ndarray]] = {}
    sizes: dict[str, int] = {}
    index: dict[str, list[Any]] = {}
    for key, a in store.items():
        code = a.dtype.str
        offset = sizes.get(code, 0)
        index[key] = [code, list(a.shape), offset]
        blobs.setdefault(code, []).append(np.ascontiguousarray(a).ravel())
        sizes[code] = offset + a.size
    packed = {f"blob{code}": np.concatenate(parts) for code, parts in blobs.items()}
    text = json.dumps({**meta, "index": index}, separators=(",", ":"))
    packed["__meta__"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    return packed


def write(family: str) -> Path:
    cases = FAMILIES[family]()
    ids = [c.id for c in cases]
    assert len(set(ids)) == len(ids), f"duplicate case ids in {family}"
    store: dict[str, np.ndarray] = {}
    meta_cases = []
    for case in cases:
        for name, a in case.arrays.items():
            store[f"{case.id}/{name}"] = np.asarray(a)
        meta = case_meta(case)
        for call, cmeta in zip(case.calls, meta["calls"], strict=True):
            outputs, errors = references(call, case.arrays)
            cmeta["outputs"] = {ref: sorted(o) for ref, o in outputs.items()}
            cmeta["errors"] = errors
            for ref, o in outputs.items():
                for out_name, value in o.items():
                    store[f"{case.id}/{call.label}/{ref}/{out_name}"] = np.asarray(value)
        meta_cases.append(meta)
    meta_all = {
        "format": FORMAT,
        "family": family,
        "generator": "tests/golden/make_golden.py",
        "versions": versions(),
        "cases": meta_cases,
    }
    path = HERE / f"{family}.npz"
    savez: Any = np.savez_compressed  # (its stub types keyword arrays as its own options)
    savez(path, **pack(store, meta_all))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("families", nargs="*", help=f"any of {', '.join(FAMILIES)}")
    args = parser.parse_args()
    unknown = set(args.families) - set(FAMILIES)
    if unknown:
        parser.error(f"unknown families: {', '.join(sorted(unknown))}")
    import torch

    torch.set_num_threads(1)  # the same summation order wherever the files are made
    for family in args.families or FAMILIES:
        path = write(family)
        print(f"{path.name}: {path.stat().st_size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
