"""Real entropy coding of the hyper-latent z.

Training uses the learned, factorized density of
:class:`~dvc_edic.entropy.factorized.FactorizedBottleneck`. For bytes we take
the integer CDF tables that its ``update()`` stores as buffers (so they travel
inside the weights file and never depend on float noise at decode time) and
drive constriction's ANS coder with them: constriction checks its input
bounds, which makes corrupted streams fail cleanly instead of reading past a
buffer.
"""

from __future__ import annotations

import numpy as np
import torch

from dvc_edic.entropy.ans import ans_decode, ans_encode
from dvc_edic.entropy.factorized import FactorizedBottleneck


def _tables(eb: FactorizedBottleneck) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel integer frequencies (C, L), pmf lengths (C,) and offsets (C,)."""
    cdf_t, lengths_t, offsets_t = eb.integer_tables()
    cdf = cdf_t.cpu().numpy().astype(np.int64)
    lengths = lengths_t.cpu().numpy().astype(np.int64) - 2  # drop the overflow slot
    width = int(lengths.max())
    freqs = np.diff(cdf, axis=1)[:, :width]
    cols = np.arange(width)[None, :]
    freqs = np.where(cols < lengths[:, None], freqs, 0)
    offsets = offsets_t.cpu().numpy().astype(np.int64)  # = -(lowest symbol)
    return freqs, lengths, offsets


def z_medians(eb: FactorizedBottleneck) -> torch.Tensor:
    """The per-channel centres z is rounded around, (1, C, 1, 1)."""
    return eb.medians().detach().reshape(1, -1, 1, 1)


def encode_z(z: torch.Tensor, eb: FactorizedBottleneck) -> tuple[bytes, torch.Tensor]:
    """Code z (1, C, h, w); returns the bytes and the decoder's z_hat.

    Values outside a channel's table are clamped to its ends; the returned
    z_hat is built from the clamped symbols, exactly as the decoder will.
    """
    freqs, lengths, offsets = _tables(eb)
    med = z_medians(eb)
    sym = torch.round(z - med).to(torch.int64).cpu().numpy()[0]  # (C, h, w)
    idx = np.clip(sym - offsets[:, None, None], 0, (lengths - 1)[:, None, None])
    chan = np.broadcast_to(np.arange(idx.shape[0])[:, None, None], idx.shape).reshape(-1)
    data = ans_encode(idx.reshape(-1), freqs[chan])
    return data, _dequantize(idx, offsets, med)


def decode_z(data: bytes, shape: tuple[int, int, int], eb: FactorizedBottleneck) -> torch.Tensor:
    """Inverse of :func:`encode_z` for a latent of ``shape`` = (C, h, w)."""
    freqs, _, offsets = _tables(eb)
    c, h, w = shape
    chan = np.repeat(np.arange(c), h * w)
    idx = ans_decode(data, freqs[chan], what="hyper-latent z").reshape(c, h, w).astype(np.int64)
    return _dequantize(idx, offsets, z_medians(eb))


def _dequantize(idx: np.ndarray, offsets: np.ndarray, med: torch.Tensor) -> torch.Tensor:
    sym = (idx + offsets[:, None, None]).astype(np.float32)
    return torch.from_numpy(sym)[None] + med


def z_likelihoods(eb: FactorizedBottleneck, z_hat: torch.Tensor) -> torch.Tensor:
    """P(z_hat - 1/2 < Z < z_hat + 1/2) per element, floored, differentiable in ``z_hat``.

    The bottleneck's ``forward`` rounds its input itself (no gradient), so the
    encoder's latent refinement, which must price already-rounded values and
    still pass a gradient, evaluates the density directly.
    """
    c = z_hat.shape[1]
    values = z_hat.transpose(0, 1).reshape(c, 1, -1)
    likelihood = eb.likelihood(values)
    b, _, *rest = z_hat.shape
    return likelihood.reshape(c, b, *rest).transpose(0, 1)
