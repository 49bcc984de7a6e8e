"""The factorized prior of the hyper-latent z (Ballé et al. 2018's "entropy bottleneck").

Each channel of z gets its own learned, non-parametric density: a small
monotone network maps a value v to the logit of P(Z <= v), and the mass of a
rounding interval is the difference of two such CDFs. Training adds uniform
noise to z in place of rounding; a second, auxiliary loss fits three quantiles
per channel (the mass below the lower one and above the upper one is
``TAIL_MASS / 2`` each, the middle one is the median), which bound the integer
tables and give the centre z is rounded around.

dvc_edic held compressai's ``EntropyBottleneck`` here until it was found to
cost most of every command's start-up: ``import compressai`` takes seconds
(its package init imports torch_geometric and scipy.stats), and the decoder
needs none of it (docs/architecture.md, "Start-up"). This class computes the
same numbers bit for bit, trains the same way and keeps the same state-dict
names, so the shipped weights and the training checkpoints load unchanged;
tests/test_compressai_equivalence.py compares it with compressai 1.2.8.

The integer tables (``_quantized_cdf``, ``_offset``, ``_cdf_length``) are built
once from the density by :meth:`FactorizedBottleneck.update` and stored with
the weights, so the decoder never depends on floats it computed itself; the ANS
coder of z (dvc_edic.entropy.zcoder) reads them through
:meth:`FactorizedBottleneck.integer_tables`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dvc_edic.entropy.integer_cdf import PRECISION, quantized_cdf
from dvc_edic.lowerbound import LowerBound

# Hidden widths of each channel's density network (the paper's choice): 1 -> 3 -> 3 -> 3 -> 3 -> 1.
HIDDEN_WIDTHS = (3, 3, 3, 3)
# The density starts about this wide: the quantiles start at -10, 0, 10 and the slopes of
# the layers multiply to 1/INIT_SCALE, so the initial CDF rises over roughly that range.
INIT_SCALE = 10.0
# The probability the auxiliary loss leaves outside the outer quantiles (half on each side);
# the integer tables give it all to one overflow slot, so it bounds how long they get.
TAIL_MASS = 1e-9
# The training likelihood's floor: no element of z is priced above -log2(1e-9) ~ 30 bits.
LIKELIHOOD_FLOOR = 1e-9
HALF = 0.5  # half a quantization step: noise range in training, rounding interval's half-width

QUANTILES = "quantiles"  # the (C, 1, 3) parameter of lower quantile, median, upper quantile
CDF, OFFSET, CDF_LENGTH = "_quantized_cdf", "_offset", "_cdf_length"
# The integer tables' buffers: their shapes follow the trained density, so loading weights
# replaces them instead of copying into them (dvc_edic.weights.load_state).
TABLE_BUFFERS = (CDF, OFFSET, CDF_LENGTH)


def is_table_buffer(tensor_name: str) -> bool:
    """Whether a state-dict key (``...z_bottleneck._offset``) is one of the integer tables."""
    return tensor_name.rsplit(".", 1)[-1] in TABLE_BUFFERS


def _empty_table() -> torch.Tensor:
    return torch.empty(0, dtype=torch.int32)


class FactorizedBottleneck(nn.Module):
    """A per-channel learned density for z (B, C, ...), with its integer coding tables.

    ``forward`` is the training pass (noisy or rounded z, and its likelihood);
    ``loss`` is the auxiliary quantile loss, minimised by its own optimizer
    (dvc_edic.train.optim); ``update`` builds the integer tables.
    """

    _quantized_cdf: torch.Tensor
    _offset: torch.Tensor
    _cdf_length: torch.Tensor
    target: torch.Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = int(channels)
        # Registered in this order so that the state dict lists its tensors as the weights
        # files do, and named_parameters() its parameters in the order the optimizer
        # states of the training checkpoints were saved in.
        self.likelihood_lower_bound = LowerBound(LIKELIHOOD_FLOOR)
        for name in (OFFSET, CDF, CDF_LENGTH):
            self.register_buffer(name, _empty_table())
        widths = (1, *HIDDEN_WIDTHS, 1)
        layers = len(widths) - 1
        # A layer's weights are softplus(matrix). Starting each at 1 / (per_layer * fan_out)
        # gives the layer a gain of fan_in / (per_layer * fan_out); over the layers the fans
        # cancel and the network's initial slope is 1 / per_layer**layers = 1 / INIT_SCALE.
        per_layer = INIT_SCALE ** (1 / layers)
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(layers):
            fan_in, fan_out = widths[i], widths[i + 1]
            inverse_softplus = math.log(math.expm1(1 / per_layer / fan_out))
            self.matrices.append(
                nn.Parameter(torch.full((self.channels, fan_out, fan_in), inverse_softplus))
            )
            bias = torch.empty(self.channels, fan_out, 1).uniform_(-HALF, HALF)
            self.biases.append(nn.Parameter(bias))
            if i < len(HIDDEN_WIDTHS):  # a gate after every layer but the output one
                self.factors.append(nn.Parameter(torch.zeros(self.channels, fan_out, 1)))
        start = torch.tensor([-INIT_SCALE, 0.0, INIT_SCALE]).repeat(self.channels, 1, 1)
        self.quantiles = nn.Parameter(start)
        # What the auxiliary loss drives the CDF's logits to at the three quantiles:
        # logit(TAIL_MASS / 2), logit(1/2) = 0 and logit(1 - TAIL_MASS / 2).
        tail_logit = math.log(2 / TAIL_MASS - 1)
        self.register_buffer("target", torch.tensor([-tail_logit, 0.0, tail_logit]))

    # ------------------------------------------------------------- the density
    def medians(self) -> torch.Tensor:
        """The per-channel centres (C,) that z is rounded around: the quantiles' middle."""
        return self.quantiles[:, 0, 1]

    def _cdf_logits(self, values: torch.Tensor, frozen: bool) -> torch.Tensor:
        """logit P(Z <= v) for ``values`` (C, 1, N); ``frozen`` cuts the gradient into the
        network's own parameters (the auxiliary loss and the tables move only the inputs)."""

        def param(p: torch.Tensor) -> torch.Tensor:
            return p.detach() if frozen else p

        logits = values
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            logits = torch.matmul(F.softplus(param(matrix)), logits)
            logits = logits + param(bias)
            if i < len(self.factors):  # a gated tanh keeps the map monotone: tanh(f) > -1
                logits = logits + torch.tanh(param(self.factors[i])) * torch.tanh(logits)
        return logits

    def interval_mass(
        self, values: torch.Tensor, frozen: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """P(v - 1/2 < Z <= v + 1/2) for ``values`` (C, 1, N), unbounded, with the CDF
        logits at the lower and upper ends (the tables need them for the tails)."""
        lower = self._cdf_logits(values - HALF, frozen)
        upper = self._cdf_logits(values + HALF, frozen)
        return torch.sigmoid(upper) - torch.sigmoid(lower), lower, upper

    def likelihood(self, values: torch.Tensor) -> torch.Tensor:
        """:meth:`interval_mass` floored at ``LIKELIHOOD_FLOOR``, differentiable in ``values``.

        ``forward`` rounds (or adds noise to) its input itself, so the encoder's
        latent refinement, which prices already-rounded values and needs their
        gradient, calls this instead (dvc_edic.entropy.zcoder.z_likelihoods).
        """
        mass, _, _ = self.interval_mass(values)
        return self.likelihood_lower_bound(mass)

    def forward(
        self, x: torch.Tensor, training: bool | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(z with noise added, or rounded around the medians; its likelihood), both like ``x``.

        ``training`` defaults to the module's mode: noise in training, rounding otherwise.
        """
        if training is None:
            training = self.training
        swap = (1, 0, *range(2, x.dim()))  # channels first; the same swap undoes it
        per_channel = x.permute(swap).contiguous()
        shape = per_channel.shape
        values = per_channel.reshape(shape[0], 1, -1)
        if training:
            values = values + torch.empty_like(values).uniform_(-HALF, HALF)
        else:
            centres = self.quantiles[:, :, 1:2]
            values = torch.round(values - centres) + centres
        likelihood = self.likelihood(values)

        def back(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(shape).permute(swap).contiguous()

        return back(values), back(likelihood)

    def loss(self) -> torch.Tensor:
        """The auxiliary loss: how far the CDF's logits at the quantiles are from ``target``.

        Only the quantiles learn from it (the network is frozen here), so it
        places them without bending the density the rate loss trains.
        """
        logits = self._cdf_logits(self.quantiles, frozen=True)
        return torch.abs(logits - self.target).sum()

    # ---------------------------------------------------------- integer tables
    @torch.no_grad()
    def update(self, force: bool = False) -> bool:
        """Build the integer tables from the density; returns whether it did.

        Without ``force``, tables that exist are kept. Channel c codes the
        integers from ``ceil(lower - median)`` to ``ceil(upper - median)``
        around its median (each side at least 0), plus one overflow slot that
        takes the tails' mass: below the first symbol's interval, and above the
        interval as far from the first symbol as the longest channel's last one.
        A shorter channel's table therefore leaves out the little mass between
        its own last symbol and that point; compressai computes the tails so,
        and the shipped tables were built by it.
        """
        if getattr(self, OFFSET).numel() > 0 and not force:
            return False
        q = self.quantiles
        medians = q[:, 0, 1]
        below = torch.clamp(torch.ceil(medians - q[:, 0, 0]).int(), min=0)
        above = torch.clamp(torch.ceil(q[:, 0, 2] - medians).int(), min=0)
        lengths = below + above + 1
        width = int(lengths.max().item())
        samples = torch.arange(width)[None, :] + (medians - below)[:, None, None]
        mass, lower, upper = self.interval_mass(samples, frozen=True)
        tails = torch.sigmoid(lower[:, 0, :1]) + torch.sigmoid(-upper[:, 0, -1:])
        # Each row: the CDF's width + 1 entries (width symbols and the overflow slot), padded.
        cdf = torch.zeros((self.channels, width + 2), dtype=torch.int32)
        for c, length in enumerate(lengths.tolist()):
            probabilities = torch.cat((mass[c, 0, :length], tails[c])).numpy()
            row = quantized_cdf(probabilities, PRECISION)
            cdf[c, : row.size] = torch.from_numpy(row.astype("int32"))
        setattr(self, OFFSET, -below)
        setattr(self, CDF, cdf)
        setattr(self, CDF_LENGTH, lengths + 2)  # the symbols, the overflow slot, the final entry
        return True

    def integer_tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The CDFs (C, L+2), their lengths (C,) and offsets (C,), all int32.

        Each length counts the overflow slot and the final CDF entry; the offset is
        minus the lowest symbol. Built from the density first if never built.
        """
        self.update()
        return getattr(self, CDF), getattr(self, CDF_LENGTH), getattr(self, OFFSET)
