"""Every use of compressai's internals, in one module.

The bit-exact stream format rests on a few things compressai does not promise
to keep: the integer CDF tables that ``EntropyBottleneck.update()`` stores in
private buffers (``_quantized_cdf``, ``_offset``, ``_cdf_length``, which travel
inside our weights files and drive the ANS coder of z), the factorized density
``_likelihood`` (priced by the encoder's latent refinement), the ``quantiles``
parameter whose middle column is the centre z is rounded around, and the
names under which an EntropyBottleneck's tensors appear in a state dict (the
keys of the shipped weights). dvc_edic reads them only through the functions
here, and tests/test_compressai_compat.py checks each of them against the
installed compressai (:func:`internals_problems`), naming the attribute and the
version when one disappears or changes type. pyproject.toml pins compressai to
the range tested (``TESTED_RANGE``).

The subclass of compressai's GDN in dvc_edic/models/layers.py reads the GDN's
``beta``, ``gamma``, ``beta_reparam``, ``gamma_reparam`` and ``inverse``; those
are checked here too (``GDN_ATTRIBUTES``).
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN
from torch import nn

TESTED_RANGE = ">=1.2.8,<1.3"  # as pinned in pyproject.toml
QUANTILES = "quantiles"  # the bottleneck's auxiliary parameter (C, 1, 3): lower, median, upper
CDF, OFFSET, CDF_LENGTH = "_quantized_cdf", "_offset", "_cdf_length"
# The integer CDF tables' buffers: their shapes depend on the trained density, so
# loading weights replaces them instead of copying into them.
TABLE_BUFFERS = (CDF, OFFSET, CDF_LENGTH)
LIKELIHOOD = "_likelihood"
# What an EntropyBottleneck's state dict holds besides its per-layer density
# parameters (``matrices.k``, ``biases.k``, ``factors.k``): the weights files'
# tensor names. compressai 1.2.6 used other names (``_bias0``...).
STATE_NAMES = (QUANTILES, *TABLE_BUFFERS, "target", "likelihood_lower_bound.bound")
DENSITY_PARAMETERS = ("matrices", "biases", "factors")
GDN_ATTRIBUTES = ("beta", "gamma", "beta_reparam", "gamma_reparam", "inverse")


def compressai_version() -> str:
    """The installed compressai's version, for messages."""
    import compressai

    return str(getattr(compressai, "__version__", "unknown"))


def is_table_buffer(tensor_name: str) -> bool:
    """Whether a state-dict key (``...z_bottleneck._offset``) is one of the CDF tables."""
    return tensor_name.rsplit(".", 1)[-1] in TABLE_BUFFERS


def integer_tables(eb: EntropyBottleneck) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The bottleneck's integer tables: CDFs (C, L+1), their lengths (C,) and offsets (C,).

    Each length counts the overflow slot and the final CDF entry; the offset is
    minus the lowest symbol. Built (from the density, once) if never built.
    """
    if getattr(eb, OFFSET).numel() == 0:
        eb.update(force=True)
    return getattr(eb, CDF), getattr(eb, CDF_LENGTH), getattr(eb, OFFSET)


def medians(eb: EntropyBottleneck) -> torch.Tensor:
    """The per-channel centres (C,) that z is rounded around: the quantiles' middle column."""
    return getattr(eb, QUANTILES)[:, 0, 1]


def quantiles(eb: EntropyBottleneck) -> nn.Parameter:
    """The parameter compressai fits by the bottleneck's auxiliary loss."""
    return getattr(eb, QUANTILES)


def factorized_likelihood(eb: EntropyBottleneck, values: torch.Tensor) -> torch.Tensor:
    """P(v - 1/2 < Z < v + 1/2) for ``values`` laid out (C, 1, N), differentiable in them.

    ``EntropyBottleneck.forward`` rounds (or adds noise to) its input itself,
    so pricing already-rounded values with a gradient needs the density directly.
    """
    likelihood, _, _ = getattr(eb, LIKELIHOOD)(values)
    return likelihood


def internals_problems() -> list[str]:
    """What of the above the installed compressai no longer provides, one line each.

    Empty when everything is as dvc_edic expects. Each line names the attribute
    and the installed version, so a failed upgrade says what to adapt.
    """
    version = compressai_version()
    problems: list[str] = []

    def bad(what: str, found: str) -> None:
        problems.append(
            f"compressai {version} (tested: {TESTED_RANGE}): {what}, found {found}; "
            "dvc_edic's bit-exact format depends on it (dvc_edic/entropy/compressai_compat.py)"
        )

    channels = 3
    eb = EntropyBottleneck(channels)
    try:
        eb.update(force=True)
    except Exception as exc:  # any failure is the finding
        bad("EntropyBottleneck.update(force=True) must build the integer tables", repr(exc))
        return problems
    buffers = dict(eb.named_buffers())
    for name in TABLE_BUFFERS:
        value = getattr(eb, name, None)
        if not isinstance(value, torch.Tensor):
            bad(f"EntropyBottleneck.{name} must be a tensor", type(value).__name__)
        elif value.dtype != torch.int32:
            bad(f"EntropyBottleneck.{name} must hold int32", str(value.dtype))
        elif name not in buffers:
            bad(f"EntropyBottleneck.{name} must be a registered buffer (saved with the weights)",
                "a plain attribute")
    if not problems:
        cdf, lengths, offsets = integer_tables(eb)
        if cdf.dim() != 2 or lengths.shape != (channels,) or offsets.shape != (channels,):
            bad(f"the tables must be shaped (C, L), (C,), (C,) for C = {channels}",
                f"{tuple(cdf.shape)}, {tuple(lengths.shape)}, {tuple(offsets.shape)}")
        elif int(lengths.max()) > cdf.shape[1]:
            bad("EntropyBottleneck._cdf_length must not exceed the CDF rows' length",
                f"{int(lengths.max())} > {cdf.shape[1]}")
    q = getattr(eb, QUANTILES, None)
    if not isinstance(q, nn.Parameter) or q.shape != (channels, 1, 3):
        bad(f"EntropyBottleneck.{QUANTILES} must be a parameter shaped ({channels}, 1, 3)",
            type(q).__name__ if not isinstance(q, torch.Tensor) else str(tuple(q.shape)))
    method = getattr(eb, LIKELIHOOD, None)
    if not callable(method):
        bad(f"EntropyBottleneck.{LIKELIHOOD} must be a method", type(method).__name__)
    else:
        values = torch.zeros(channels, 1, 5, requires_grad=True)
        try:
            out = method(values)
            likelihood = out[0] if isinstance(out, tuple) else None
        except Exception as exc:  # any failure is the finding
            likelihood, out = None, exc
        if not isinstance(likelihood, torch.Tensor) or likelihood.shape != values.shape:
            bad(f"EntropyBottleneck.{LIKELIHOOD}(values (C, 1, N)) must return a tuple whose "
                "first item is the likelihood, shaped like the values", repr(out)[:200])
        elif not likelihood.requires_grad:
            bad(f"EntropyBottleneck.{LIKELIHOOD} must be differentiable in its input",
                "a result without a gradient")
    names = set(eb.state_dict())
    expected = set(STATE_NAMES)
    density = {n for n in names if n.split(".")[0] in DENSITY_PARAMETERS}
    if not expected <= names or names - expected - density or not density:
        bad("EntropyBottleneck's state-dict names (the weights files' tensor names) must be "
            f"{sorted(expected)} plus {list(DENSITY_PARAMETERS)}.k",
            f"missing {sorted(expected - names)}, unexpected {sorted(names - expected - density)}")
    gdn = GDN(channels)
    for name in GDN_ATTRIBUTES:
        if not hasattr(gdn, name):
            bad(f"GDN.{name} must exist (dvc_edic.models.layers.GDN reads it)", "nothing")
    for name in ("beta_reparam", "gamma_reparam"):
        if hasattr(gdn, name) and not callable(getattr(gdn, name)):
            bad(f"GDN.{name} must be callable", type(getattr(gdn, name)).__name__)
    return problems
