"""Short names of crossent's functions on the command line, one table for every subcommand."""

from __future__ import annotations

from collections.abc import Iterable

#: Short name -> crossent function name, accepted by ``--loss`` and ``--functions`` besides
#: the functions' own names.
ALIASES = {
    "bce": "binary_cross_entropy",
    "bce_logits": "binary_cross_entropy_with_logits",
    "bce_with_logits": "binary_cross_entropy_with_logits",
    "kl": "kl_divergence",
    "js": "jensen_shannon",
    "softmax_ce": "softmax_cross_entropy",
}


def names(functions: Iterable[str]) -> dict[str, str]:
    """Every name that picks one of ``functions`` (function names, then their short names) ->
    the function's name."""
    own = {f: f for f in functions}
    return {**own, **{short: f for short, f in ALIASES.items() if f in own}}
