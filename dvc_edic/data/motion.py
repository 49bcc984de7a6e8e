"""Camera paths and moving patches with exactly known motion, for synthetic clips.

Coordinates are (x, y) pixel indices (pixel centres at integers). A camera path
maps an output pixel p of frame t to a point of the still picture:
    s = A_t(p) = M_t (p - c) + b_t,   M_t = z_t R(theta_t),
with zoom z_t = exp(zoom_rate * t), rotation theta_t = rotation_rate * t and pan
b_t = b_0 + t * velocity. Frame t shows the picture at A_t(p), so frame t+1 at p
equals frame t at A_t^-1(A_{t+1}(p)); the backward flow is that point minus p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MotionLimits:
    """Largest per-frame motion a clip draws (each draw is uniform up to these)."""

    max_translation: float  # pan speed, output pixels per frame
    max_zoom: float  # |log of the scale change| per frame (0.02 ~ 2 %)
    max_rotation: float  # degrees per frame


@dataclass(frozen=True)
class CameraPath:
    centre: np.ndarray  # c: (x, y) of the crop's centre, output pixels
    origin: np.ndarray  # b_0: picture point shown at c in frame 0
    velocity: np.ndarray  # picture pixels per frame
    zoom_rate: float
    rotation_rate: float  # radians per frame

    @staticmethod
    def draw(rng: np.random.Generator, limits: MotionLimits, size: tuple[int, int]) -> CameraPath:
        height, width = size
        angle = rng.uniform(0.0, 2.0 * math.pi)
        speed = rng.uniform(0.0, limits.max_translation)
        zoom = rng.uniform(-limits.max_zoom, limits.max_zoom)
        rotation = math.radians(rng.uniform(-limits.max_rotation, limits.max_rotation))
        return CameraPath(
            centre=np.array([(width - 1) / 2.0, (height - 1) / 2.0]),
            origin=np.zeros(2),
            velocity=speed * np.array([math.cos(angle), math.sin(angle)]),
            zoom_rate=zoom,
            rotation_rate=rotation,
        )

    def moved_to(self, origin: np.ndarray) -> CameraPath:
        return CameraPath(self.centre, origin, self.velocity, self.zoom_rate, self.rotation_rate)

    def matrix(self, t: float) -> np.ndarray:
        theta = self.rotation_rate * t
        scale = math.exp(self.zoom_rate * t)
        cos, sin = math.cos(theta), math.sin(theta)
        return scale * np.array([[cos, -sin], [sin, cos]])

    def to_picture(self, t: float, points: np.ndarray) -> np.ndarray:
        """A_t for (..., 2) output points."""
        return (points - self.centre) @ self.matrix(t).T + self.origin + t * self.velocity

    def from_picture(self, t: float, points: np.ndarray) -> np.ndarray:
        """A_t^-1 for (..., 2) picture points."""
        inverse = np.linalg.inv(self.matrix(t))
        return (points - self.origin - t * self.velocity) @ inverse.T + self.centre

    def flow(self, t: int, points: np.ndarray) -> np.ndarray:
        """Backward flow from frame t+1 to frame t at (..., 2) output points."""
        return self.from_picture(t, self.to_picture(t + 1, points)) - points

    def footprint(self, frames: int, size: tuple[int, int], margin: float) -> np.ndarray:
        """[[xmin, ymin], [xmax, ymax]] of the picture area all frames read (origin at 0)."""
        height, width = size
        corners = np.array(
            [
                [-margin, -margin],
                [width - 1 + margin, -margin],
                [-margin, height - 1 + margin],
                [width - 1 + margin, height - 1 + margin],
            ]
        )
        at_zero = self.moved_to(np.zeros(2))
        points = np.concatenate([at_zero.to_picture(t, corners) for t in range(frames)])
        return np.stack([points.min(axis=0), points.max(axis=0)])


@dataclass(frozen=True)
class MovingPatch:
    """A rectangle of its own texture sliding in a straight line over the frame."""

    texture: np.ndarray  # (ph, pw, 3) float32
    corner: np.ndarray  # (x, y) of its top-left pixel centre in frame 0
    velocity: np.ndarray  # output pixels per frame

    @property
    def size(self) -> tuple[int, int]:
        return int(self.texture.shape[0]), int(self.texture.shape[1])

    def corner_at(self, t: float) -> np.ndarray:
        return self.corner + t * self.velocity

    def inside(self, t: float, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Whether each (..., 2) point lies in the patch's area (grown by margin) at t."""
        height, width = self.size
        x0, y0 = self.corner_at(t) - 0.5 - margin
        x1, y1 = self.corner_at(t) + np.array([width, height]) - 0.5 + margin
        x, y = points[..., 0], points[..., 1]
        return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)

    def coverage(self, t: float, size: tuple[int, int]) -> np.ndarray:
        """(H, W) share of each output pixel the patch covers (anti-aliased edges)."""
        height, width = size
        ph, pw = self.size
        cx, cy = self.corner_at(t)

        def overlap(centres: np.ndarray, start: float, length: int) -> np.ndarray:
            low = np.maximum(centres - 0.5, start - 0.5)
            high = np.minimum(centres + 0.5, start + length - 0.5)
            return np.clip(high - low, 0.0, 1.0)

        cover_x = overlap(np.arange(width, dtype=np.float64), cx, pw)
        cover_y = overlap(np.arange(height, dtype=np.float64), cy, ph)
        return cover_y[:, None] * cover_x[None, :]


def layer_map(
    patches: list[MovingPatch], t: float, points: np.ndarray, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """(layer, ambiguous) at (..., 2) points: 0 for the background, k+1 for patch k
    (later patches on top); ambiguous where a margin either way changes the answer."""
    shrunk = np.zeros(points.shape[:-1], dtype=np.int64)
    grown = np.zeros_like(shrunk)
    for k, patch in enumerate(patches):
        shrunk[patch.inside(t, points, -margin)] = k + 1
        grown[patch.inside(t, points, margin)] = k + 1
    return grown, shrunk != grown
