"""Small helpers the tests share: a thread count for a block of code, and bit equality."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

import crossent


@contextmanager
def threads(n: int) -> Iterator[None]:
    """crossent's pool at `n` threads inside the block, the previous count restored after."""
    before = crossent.get_num_threads()
    crossent.set_num_threads(n)
    try:
        yield
    finally:
        crossent.set_num_threads(before)


def same_bits(a: Any, b: Any) -> bool:
    """The same dtype, shape and bytes (NaN payloads and signed zeros included)."""
    a, b = np.asarray(a), np.asarray(b)
    return bool(a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes())
