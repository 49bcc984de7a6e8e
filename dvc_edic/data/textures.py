"""Procedural colour textures, so synthetic motion needs no photos (tests, CI).

A texture is 1/f^beta noise, which has the power spectrum of natural images
at beta ~ 2 and so gives flow estimators detail at every scale, with a few
soft-edged flat shapes painted over it for the sharp edges real scenes have.
"""

from __future__ import annotations

import numpy as np

# Power-spectrum exponent of the noise: natural images sit near 2; larger is smoother.
DEFAULT_SPECTRAL_SLOPE = 2.0
# Most shapes painted on one texture (the count is uniform in 0..this).
DEFAULT_MAX_SHAPES = 8
# Share of the colour variation that is not common to R, G and B (photos are mostly luma).
_CHROMA_SHARE = 0.35
# Output range, inside [0, 1] so that 4:2:0 conversion and interpolation overshoot clip little.
_LOW, _HIGH = 0.06, 0.94
# Shape radii / half-sides as a fraction of the texture's shorter side.
_SHAPE_SIZE = (0.03, 0.15)
# Share of shapes that are discs (the rest are rectangles, of this aspect range).
_DISC_SHARE = 0.5
_RECT_ASPECT = (0.5, 2.0)
# Width in pixels of the linear ramp at a shape's edge (anti-aliasing).
_EDGE_SOFTNESS = 1.0
# Shapes keep some of the underlying noise so that they are not perfectly flat.
_SHAPE_TEXTURE = 0.25


def spectral_noise(rng: np.random.Generator, height: int, width: int, slope: float) -> np.ndarray:
    """(H, W) zero-mean noise with power ~ 1/f^slope, scaled to unit peak."""
    white = rng.standard_normal((height, width))
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.hypot(fx, fy)
    radius[0, 0] = 1.0  # the mean is removed below; avoid dividing by zero
    shaped = np.fft.rfft2(white) * radius ** (-slope / 2.0)
    shaped[0, 0] = 0.0
    noise = np.fft.irfft2(shaped, s=(height, width))
    return noise / max(float(np.abs(noise).max()), np.finfo(np.float64).tiny)


def _paint_shapes(rng: np.random.Generator, rgb: np.ndarray, count: int) -> None:
    height, width = rgb.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    short = min(height, width)
    for _ in range(count):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        size = rng.uniform(*_SHAPE_SIZE) * short
        colour = rng.uniform(_LOW, _HIGH, size=3)
        if rng.random() < _DISC_SHARE:
            distance = np.hypot(xs - cx, ys - cy) - size
        else:  # axis-aligned rectangle of random aspect
            aspect = rng.uniform(*_RECT_ASPECT)
            distance = np.maximum(np.abs(xs - cx) - size * aspect, np.abs(ys - cy) - size)
        alpha = np.clip(0.5 - distance / _EDGE_SOFTNESS, 0.0, 1.0)[:, :, None]
        fill = colour * (1.0 - _SHAPE_TEXTURE) + rgb * _SHAPE_TEXTURE
        rgb *= 1.0 - alpha
        rgb += alpha * fill


def procedural_texture(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    slope: float = DEFAULT_SPECTRAL_SLOPE,
    max_shapes: int = DEFAULT_MAX_SHAPES,
) -> np.ndarray:
    """(H, W, 3) float32 R'G'B' in [0, 1]."""
    luma = spectral_noise(rng, height, width, slope)
    chroma = [spectral_noise(rng, height, width, slope) for _ in range(2)]
    tint = rng.uniform(-1.0, 1.0, size=(2, 3))
    colour_noise = sum(c[:, :, None] * t for c, t in zip(chroma, tint, strict=True))
    rgb = luma[:, :, None] + _CHROMA_SHARE * colour_noise
    rgb -= rgb.min()
    rgb *= (_HIGH - _LOW) / max(float(rgb.max()), np.finfo(np.float64).tiny)
    rgb += _LOW + rng.uniform(-_LOW, _LOW, size=3)  # a random overall colour cast
    _paint_shapes(rng, rgb, int(rng.integers(max_shapes + 1)))
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)
