"""Optical-flow estimators, backward warping and correlation for dvc_edic.

Every estimator follows one interface: ``flow = estimator(target, reference)`` with
(B, C, H, W) inputs in [0, 1] and a (B, 2, H, W) flow in pixels (channel 0 = x,
channel 1 = y) such that target(p) ≈ reference(p + flow(p)), i.e. what
``backward_warp(reference, flow)`` needs to predict the target.
"""

from __future__ import annotations

from flows.build import ESTIMATOR_TYPES, FlowConfig, build_flow_estimator
from flows.correlation import HAVE_SAMPLER, correlation, correlation_torch
from flows.macs import conv_macs, macs_per_pixel
from flows.pwc import PwcLite
from flows.spynet import SpyNet
from flows.warp import PADDING_MODES, backward_warp

__all__ = [
    "ESTIMATOR_TYPES",
    "HAVE_SAMPLER",
    "PADDING_MODES",
    "FlowConfig",
    "PwcLite",
    "SpyNet",
    "backward_warp",
    "build_flow_estimator",
    "conv_macs",
    "correlation",
    "correlation_torch",
    "macs_per_pixel",
]
