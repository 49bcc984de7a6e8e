"""Entropy models and coders for the latents.

y: a K-component Gaussian mixture per element, trained with a float likelihood
and coded with integer-only, decoder-exact tables (:class:`GmmEntropyCoder`).
"""

from __future__ import annotations

from dvc_edic.entropy.coder import GmmEntropyCoder
from dvc_edic.entropy.config import GmmConfig
from dvc_edic.entropy.likelihood import gmm_likelihood
from dvc_edic.entropy.quantize import QuantizedGmm, dequantize_gmm, quantize_gmm
from dvc_edic.lowerbound import lower_bound

__all__ = [
    "GmmConfig",
    "GmmEntropyCoder",
    "QuantizedGmm",
    "dequantize_gmm",
    "gmm_likelihood",
    "lower_bound",
    "quantize_gmm",
]
