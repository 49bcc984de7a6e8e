"""compressai's internals that the bit-exact format rests on are still there, as expected.

dvc_edic reads them only through dvc_edic/entropy/compressai_compat.py; if an
upgrade of compressai moves or retypes one, this fails first, naming the
attribute and the installed version, instead of the codec failing somewhere
deep in entropy coding (or, worse, writing different bytes).
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck

from dvc_edic.entropy import compressai_compat as compat


def test_compressai_internals_are_as_expected() -> None:
    problems = compat.internals_problems()
    assert not problems, "\n".join(problems)


def test_the_tables_read_through_the_module_are_the_bottlenecks_own() -> None:
    torch.manual_seed(0)
    eb = EntropyBottleneck(4)
    cdf, lengths, offsets = compat.integer_tables(eb)  # built on first use
    assert cdf.dtype == lengths.dtype == offsets.dtype == torch.int32
    assert cdf.shape[0] == lengths.shape[0] == offsets.shape[0] == 4
    assert compat.medians(eb).shape == (4,)
    assert compat.is_table_buffer("intra.z_bottleneck._quantized_cdf")
    assert not compat.is_table_buffer("intra.z_bottleneck.quantiles")
    values = torch.zeros(4, 1, 6, requires_grad=True)
    likelihood = compat.factorized_likelihood(eb, values)
    assert likelihood.shape == values.shape and bool(((likelihood > 0) & (likelihood <= 1)).all())
    likelihood.sum().backward()
    assert values.grad is not None


def test_a_changed_internal_is_reported_by_name_and_version(monkeypatch) -> None:
    """The failure message says which attribute and which compressai (not just 'failed')."""
    # as if compressai had renamed the method: the name compat looks for is gone
    monkeypatch.setattr(compat, "LIKELIHOOD", "_likelihood_renamed")
    problems = compat.internals_problems()
    assert len(problems) == 1, problems
    assert "EntropyBottleneck._likelihood_renamed must be a method, found NoneType" in problems[0]
    assert f"compressai {compat.compressai_version()}" in problems[0]
