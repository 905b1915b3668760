from typing import Literal, Self, final, overload

import numpy as np
import numpy.typing as npt

__all__ = [
    "BLOCK",
    "CHUNK",
    "BinaryCrossEntropyAccumulator",
    "BinaryCrossEntropyWithLogitsAccumulator",
    "CrossEntropyAccumulator",
    "EntropyAccumulator",
    "JensenShannonAccumulator",
    "KLDivergenceAccumulator",
    "SoftmaxCrossEntropyAccumulator",
    "__version__",
    "_isa",
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

__version__: str
BLOCK: int
CHUNK: int

_Reduction = Literal["mean", "sum", "none"]
_FloatArray = npt.NDArray[np.float32] | npt.NDArray[np.float64]

@overload
def binary_cross_entropy(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    weight: npt.ArrayLike | None = None,
    reduction: Literal["mean", "sum"] = "mean",
    out: None = None,
) -> float: ...
@overload
def binary_cross_entropy(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    weight: npt.ArrayLike | None = None,
    reduction: Literal["none"],
    out: _FloatArray | None = None,
) -> _FloatArray: ...
@overload
def binary_cross_entropy(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    weight: npt.ArrayLike | None = None,
    reduction: str = "mean",
    out: _FloatArray | None = None,
) -> float | _FloatArray: ...
@overload
def binary_cross_entropy_with_logits(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    weight: npt.ArrayLike | None = None,
    pos_weight: npt.ArrayLike | None = None,
    reduction: Literal["mean", "sum"] = "mean",
    out: None = None,
) -> float: ...
@overload
def binary_cross_entropy_with_logits(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    weight: npt.ArrayLike | None = None,
    pos_weight: npt.ArrayLike | None = None,
    reduction: Literal["none"],
    out: _FloatArray | None = None,
) -> _FloatArray: ...
@overload
def binary_cross_entropy_with_logits(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    weight: npt.ArrayLike | None = None,
    pos_weight: npt.ArrayLike | None = None,
    reduction: str = "mean",
    out: _FloatArray | None = None,
) -> float | _FloatArray: ...
def entropy(
    p: npt.ArrayLike,
    *,
    axis: int | None = -1,
    base: float | None = None,
    normalize: bool = True,
    out: _FloatArray | None = None,
) -> float | _FloatArray: ...
def cross_entropy(
    p: npt.ArrayLike,
    q: npt.ArrayLike,
    *,
    axis: int | None = -1,
    base: float | None = None,
    normalize: bool = True,
    out: _FloatArray | None = None,
) -> float | _FloatArray: ...
def kl_divergence(
    p: npt.ArrayLike,
    q: npt.ArrayLike,
    *,
    axis: int | None = -1,
    base: float | None = None,
    normalize: bool = True,
    out: _FloatArray | None = None,
) -> float | _FloatArray: ...
def jensen_shannon(
    p: npt.ArrayLike,
    q: npt.ArrayLike,
    *,
    axis: int | None = -1,
    base: float | None = None,
    normalize: bool = True,
    out: _FloatArray | None = None,
) -> float | _FloatArray: ...
@overload
def softmax_cross_entropy(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    axis: int = -1,
    weight: npt.ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: Literal["mean", "sum"] = "mean",
    out: None = None,
) -> float: ...
@overload
def softmax_cross_entropy(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    axis: int = -1,
    weight: npt.ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: Literal["none"],
    out: _FloatArray | None = None,
) -> _FloatArray: ...
@overload
def softmax_cross_entropy(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    axis: int = -1,
    weight: npt.ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    out: _FloatArray | None = None,
) -> float | _FloatArray: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...

@final
class BinaryCrossEntropyAccumulator:
    def __new__(cls, *, reduction: Literal["mean", "sum"] = "mean") -> Self: ...
    def update(
        self,
        input: npt.ArrayLike,
        target: npt.ArrayLike,
        *,
        weight: npt.ArrayLike | None = None,
    ) -> None: ...
    def merge(self, other: BinaryCrossEntropyAccumulator) -> None: ...
    def reset(self) -> None: ...
    def result(self) -> float: ...
    @property
    def count(self) -> int: ...
    @property
    def sum(self) -> float: ...
    @property
    def reduction(self) -> Literal["mean", "sum"]: ...
    def __reduce__(self) -> tuple[object, ...]: ...
    def __setstate__(self, state: tuple[float, float, int, float, float]) -> None: ...

@final
class BinaryCrossEntropyWithLogitsAccumulator:
    def __new__(
        cls,
        *,
        reduction: Literal["mean", "sum"] = "mean",
        pos_weight: npt.ArrayLike | None = None,
    ) -> Self: ...
    def update(
        self,
        input: npt.ArrayLike,
        target: npt.ArrayLike,
        *,
        weight: npt.ArrayLike | None = None,
    ) -> None: ...
    def merge(self, other: BinaryCrossEntropyWithLogitsAccumulator) -> None: ...
    def reset(self) -> None: ...
    def result(self) -> float: ...
    @property
    def count(self) -> int: ...
    @property
    def sum(self) -> float: ...
    @property
    def reduction(self) -> Literal["mean", "sum"]: ...
    @property
    def pos_weight(self) -> npt.NDArray[np.float64] | None: ...
    def __reduce__(self) -> tuple[object, ...]: ...
    def __setstate__(self, state: tuple[float, float, int, float, float]) -> None: ...

@final
class SoftmaxCrossEntropyAccumulator:
    def __new__(
        cls,
        *,
        axis: int = -1,
        weight: npt.ArrayLike | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: Literal["mean", "sum"] = "mean",
    ) -> Self: ...
    def update(self, logits: npt.ArrayLike, target: npt.ArrayLike) -> None: ...
    def merge(self, other: SoftmaxCrossEntropyAccumulator) -> None: ...
    def reset(self) -> None: ...
    def result(self) -> float: ...
    @property
    def count(self) -> int: ...
    @property
    def sum(self) -> float: ...
    @property
    def weight_sum(self) -> float: ...
    @property
    def reduction(self) -> Literal["mean", "sum"]: ...
    @property
    def axis(self) -> int: ...
    @property
    def weight(self) -> npt.NDArray[np.float64] | None: ...
    @property
    def ignore_index(self) -> int: ...
    @property
    def label_smoothing(self) -> float: ...
    def __reduce__(self) -> tuple[object, ...]: ...
    def __setstate__(self, state: tuple[float, float, int, float, float]) -> None: ...

@final
class EntropyAccumulator:
    def __new__(cls, *, base: float | None = None, normalize: bool = True) -> Self: ...
    def update(self, p: npt.ArrayLike) -> None: ...
    def merge(self, other: EntropyAccumulator) -> None: ...
    def reset(self) -> None: ...
    def result(self) -> float: ...
    @property
    def count(self) -> int: ...
    @property
    def sum(self) -> float: ...
    @property
    def base(self) -> float | None: ...
    @property
    def normalize(self) -> bool: ...
    def __reduce__(self) -> tuple[object, ...]: ...
    def __setstate__(self, state: tuple[float, float, int, float, float]) -> None: ...

@final
class CrossEntropyAccumulator:
    def __new__(cls, *, base: float | None = None, normalize: bool = True) -> Self: ...
    def update(self, p: npt.ArrayLike, q: npt.ArrayLike) -> None: ...
    def merge(self, other: CrossEntropyAccumulator) -> None: ...
    def reset(self) -> None: ...
    def result(self) -> float: ...
    @property
    def count(self) -> int: ...
    @property
    def sum(self) -> float: ...
    @property
    def base(self) -> float | None: ...
    @property
    def normalize(self) -> bool: ...
    def __reduce__(self) -> tuple[object, ...]: ...
    def __setstate__(self, state: tuple[float, float, int, float, float]) -> None: ...

@final
class KLDivergenceAccumulator:
    def __new__(cls, *, base: float | None = None, normalize: bool = True) -> Self: ...
    def update(self, p: npt.ArrayLike, q: npt.ArrayLike) -> None: ...
    def merge(self, other: KLDivergenceAccumulator) -> None: ...
    def reset(self) -> None: ...
    def result(self) -> float: ...
    @property
    def count(self) -> int: ...
    @property
    def sum(self) -> float: ...
    @property
    def base(self) -> float | None: ...
    @property
    def normalize(self) -> bool: ...
    def __reduce__(self) -> tuple[object, ...]: ...
    def __setstate__(self, state: tuple[float, float, int, float, float]) -> None: ...

@final
class JensenShannonAccumulator:
    # normalize=True (the default, as for jensen_shannon) raises ValueError: only the
    # unnormalised divergence can be accumulated.
    def __new__(cls, *, base: float | None = None, normalize: bool = True) -> Self: ...
    def update(self, p: npt.ArrayLike, q: npt.ArrayLike) -> None: ...
    def merge(self, other: JensenShannonAccumulator) -> None: ...
    def reset(self) -> None: ...
    def result(self) -> float: ...
    @property
    def count(self) -> int: ...
    @property
    def sum(self) -> float: ...
    @property
    def base(self) -> float | None: ...
    @property
    def normalize(self) -> bool: ...
    def __reduce__(self) -> tuple[object, ...]: ...
    def __setstate__(self, state: tuple[float, float, int, float, float]) -> None: ...

def binary_cross_entropy_with_logits_grad(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    weight: npt.ArrayLike | None = None,
    pos_weight: npt.ArrayLike | None = None,
    reduction: Literal["sum", "mean"] = "sum",
    out: tuple[_FloatArray, _FloatArray] | None = None,
) -> tuple[_FloatArray, _FloatArray]: ...
def _isa() -> str: ...
def softmax_cross_entropy_grad(
    logits: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    axis: int = -1,
    weight: npt.ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: Literal["sum", "mean"] = "sum",
    out: tuple[_FloatArray, _FloatArray] | None = None,
) -> tuple[_FloatArray, _FloatArray]: ...
