"""Probabilities to an integer CDF whose every symbol keeps at least one count.

The factorized bottleneck of z (dvc_edic.entropy.factorized) turns its learned
density into integer tables once, at export, and the weights files carry
those tables; the ANS coder of z then works from integers only. The tables in
the shipped weights were built by compressai's C++ ``pmf_to_quantized_cdf``,
so a model whose tables are rebuilt here (an untrained model, a new export)
must get the very same integers: this is that procedure, step for step, in
numpy. tests/test_compressai_equivalence.py compares the two on random and
adversarial inputs.

The procedure: scale each probability to the table's total and round it (half
away from zero, as C's ``round`` does), rescale the counts so they sum to at
most the total (flooring), accumulate, and pin the last entry to the total.
Then, walking the symbols in order, every symbol left with no count takes one
from the symbol with the smallest count above one (the first such on a tie),
by shifting the CDF entries between the two.
"""

from __future__ import annotations

import numpy as np

PRECISION = 16  # the tables count in units of 2**-16: what the weights' tables were built with
# Adding one half and flooring rounds half away from zero for non-negative values; done in
# float64, it is exact for any float32 probability scaled by 2**precision (precision <= 32).
ROUNDING_HALF = 0.5


def quantized_cdf(probabilities: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """The integer CDF (len + 1 entries, 0 to ``2**precision``) of ``probabilities``.

    ``probabilities`` (1-D) are read as float32, as the C++ original receives
    them; they need not sum to one (the last one is usually the tails' mass).
    Raises ValueError for a negative or non-finite probability, for all of them
    rounding to zero counts, and where no symbol has a count to give (more
    symbols than counts), which the original leaves undefined.
    """
    p = np.asarray(probabilities, dtype=np.float32).reshape(-1)
    if not bool(np.isfinite(p).all()) or bool((p < 0).any()):
        raise ValueError(f"probabilities must be finite and non-negative, got {p.tolist()[:8]}")
    scale = 1 << precision
    counts = np.floor(p.astype(np.float64) * scale + ROUNDING_HALF).astype(np.int64)
    total = int(counts.sum())
    if total == 0:
        raise ValueError("probabilities: at least one must be large enough to get a count")
    cdf = np.zeros(p.size + 1, dtype=np.int64)
    np.cumsum(counts * scale // total, out=cdf[1:])
    cdf[-1] = scale
    for symbol in range(p.size):
        if cdf[symbol] == cdf[symbol + 1]:
            _give_one_count(cdf, symbol)
    return cdf


def _give_one_count(cdf: np.ndarray, empty: int) -> None:
    """Move one count to symbol ``empty`` from the symbol with the fewest counts above one."""
    freqs = np.diff(cdf)
    spare = np.where(freqs > 1, freqs, np.iinfo(np.int64).max)
    donor = int(np.argmin(spare))  # the first of equals, as the original's strict '<' scan
    if freqs[donor] <= 1:
        raise ValueError(f"no symbol has a count to spare for symbol {empty} ({cdf.size - 1} "
                         "symbols): the precision is too low for this many")
    if donor < empty:
        cdf[donor + 1 : empty + 1] -= 1  # the entries between them move down: donor shrinks
    else:
        cdf[empty + 1 : donor + 1] += 1  # the entries between them move up: donor shrinks
