"""crossent: information-theory losses over NumPy arrays, fast, exact and deterministic.

Every function reads NumPy arrays where they lie (contiguous or strided, float32 or float64),
releases the GIL, runs in parallel on crossent's own thread pool and returns the same bits for
any thread count. Sums are accumulated in float64, also for float32 input.

>>> import numpy as np, crossent
>>> p = np.array([0.9, 0.2, 0.6])
>>> y = np.array([1, 0, 1])
>>> round(crossent.binary_cross_entropy(p, y), 6)
0.279777
"""

from crossent._core import (
    BLOCK,
    CHUNK,
    BinaryCrossEntropyAccumulator,
    BinaryCrossEntropyWithLogitsAccumulator,
    CrossEntropyAccumulator,
    DomainError,
    EntropyAccumulator,
    JensenShannonAccumulator,
    KLDivergenceAccumulator,
    SoftmaxCrossEntropyAccumulator,
    __version__,
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_grad,
    cross_entropy,
    entropy,
    get_num_threads,
    jensen_shannon,
    kl_divergence,
    set_num_threads,
    softmax_cross_entropy,
    softmax_cross_entropy_grad,
)

__all__ = [
    "BLOCK",
    "CHUNK",
    "BinaryCrossEntropyAccumulator",
    "BinaryCrossEntropyWithLogitsAccumulator",
    "CrossEntropyAccumulator",
    "DomainError",
    "EntropyAccumulator",
    "JensenShannonAccumulator",
    "KLDivergenceAccumulator",
    "SoftmaxCrossEntropyAccumulator",
    "__version__",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
    "cross_entropy",
    "entropy",
    "get_num_threads",
    "jensen_shannon",
    "kl_divergence",
    "set_num_threads",
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
]
