"""Layered cartoon scenes rendered at any time, with exact optical flow between any two times.

A scene is a stack of layers (bottom to top). Each layer is a group of analytic parts in its own
canonical coordinates and a transform T(tau) that maps canonical points to the screen:
deformation (closed-form bend + squash), then scale, rotation, translation, plus a share of the
camera pan. Rendering inverts T per pixel; the flow of pixel p between tau_a and tau_b is
T_L(tau_b)(T_L(tau_a)^-1(p)) - p for the layer L on top at p. Both directions are closed form,
so the flow is exact up to floating point.

Screen coordinates are "reference units": the frame is 256 units wide whatever its pixel size,
and pixel (i, j) has its centre at ((j + 0.5) / k, (i + 0.5) / k) with k = width / 256 pixels
per unit. A scene built with the same seed at another resolution is the same picture.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from animvfi_pipeline.data.synthetic_shapes import EDGE_REACH_PX, Part

logger = logging.getLogger(__name__)

REF_WIDTH = 256.0
MOTION_TYPES = ("translation", "rotation", "scaling", "deformation")
# Level of a triplet from the largest displacement of moving foreground content, as a fraction
# of the frame width: easy < 3 %, medium < 8 %, hard >= 8 %.
LEVEL_THRESHOLDS = (0.03, 0.08)

# Transform parameters, in this order, in every parameter vector.
TX, TY, ANGLE, LOG_SCALE, BEND, SQUASH = range(6)
N_PARAMS = 6


def level_of(displacement_px: float, width: int) -> int:
    """Difficulty level (0 easy, 1 medium, 2 hard) of a displacement in pixels at this width."""
    frac = displacement_px / float(width)
    return int(frac >= LEVEL_THRESHOLDS[0]) + int(frac >= LEVEL_THRESHOLDS[1])


def _ease(kind: int, u: float) -> float:
    # Non-linear timing per window, as animators key it: ease-in, ease-out, ease-in-out, ...
    # LINEAR puts the middle frame at the midpoint of the motion, which two frames can reveal.
    if kind == LINEAR:
        return u
    if kind == 0:
        return u * u  # accelerating
    if kind == 1:
        return 1.0 - (1.0 - u) ** 2  # decelerating
    if kind == 2:
        return u * u * (3.0 - 2.0 * u)  # smoothstep
    if kind == 3:
        return u**3  # strongly accelerating
    return u**1.5


N_EASINGS = 5  # the eased kinds 0..4 drawn at random; LINEAR is chosen by the timing setting
LINEAR = N_EASINGS


@dataclass
class Path:
    """Piecewise-eased parameters: window k (scene time k..k+1) moves by steps[k] with easing[k]."""

    start: np.ndarray  # (P,)
    steps: np.ndarray  # (K, P)
    easing: np.ndarray  # (K,) ints

    def at(self, tau: float) -> np.ndarray:
        n = len(self.steps)
        k = min(max(int(np.floor(tau)), 0), n - 1)
        u = float(np.clip(tau - k, 0.0, 1.0))
        return self.start + self.steps[:k].sum(axis=0) + self.steps[k] * _ease(int(self.easing[k]), u)


@dataclass
class Layer:
    name: str
    parts: list[Part]
    path: Path
    pan_factor: float = 0.0  # share of the camera pan this layer follows (parallax)
    held: bool = False  # never moves on screen (a held cel)
    background: bool = False
    radius: float = 1.0  # canonical size used by the bend (and culling)
    base_y: float = 0.0  # canonical y that squash and bend keep fixed (feet, ground)
    samples: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # canonical points inside
    top_y: float = -np.inf  # canonical top of a terrain layer (for culling)

    def params(self, tau: float, pan: np.ndarray) -> np.ndarray:
        p = self.path.at(tau).copy()
        p[TX:TY + 1] += self.pan_factor * pan
        return p

    def forward(self, p: np.ndarray, x: np.ndarray, y: np.ndarray):
        """Canonical -> screen (reference units)."""
        tx, ty, ang, log_s, bend, squash = (float(v) for v in p)  # Python floats keep float32 arrays float32
        sq = math.exp(0.5 * squash)
        x1, y1 = x / sq, self.base_y + (y - self.base_y) * sq
        x1 = x1 + bend * (self.base_y - y1) ** 2 / (2.0 * self.radius)
        s, c, n = math.exp(log_s), math.cos(ang), math.sin(ang)
        return tx + s * (c * x1 - n * y1), ty + s * (n * x1 + c * y1)

    def inverse(self, p: np.ndarray, x: np.ndarray, y: np.ndarray):
        """Screen (reference units) -> canonical; the exact inverse of ``forward``."""
        tx, ty, ang, log_s, bend, squash = (float(v) for v in p)
        s, c, n = math.exp(log_s), math.cos(ang), math.sin(ang)
        dx, dy = x - tx, y - ty
        x1, y1 = (c * dx + n * dy) / s, (-n * dx + c * dy) / s
        x1 = x1 - bend * (self.base_y - y1) ** 2 / (2.0 * self.radius)
        sq = math.exp(0.5 * squash)
        return x1 * sq, self.base_y + (y1 - self.base_y) / sq

    def screen_box(self, p: np.ndarray, ref_w: float, ref_h: float, margin: float):
        """Conservative (x0, y0, x1, y1) screen box of the layer, reference units."""
        if self.background:  # backgrounds only pan, and terrain reaches the bottom
            y0 = self.top_y + float(p[TY]) - margin if np.isfinite(self.top_y) else 0.0
            return 0.0, max(0.0, y0), ref_w, ref_h
        cx, cy, r = _union_bound(self.parts)
        # The transform is a homeomorphism, so the image of the bounding disc is enclosed by the
        # image of its circle; the 5 % pad covers the bulge between the 48 samples.
        a = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
        x, y = self.forward(p, cx + 1.05 * r * np.cos(a), cy + 1.05 * r * np.sin(a))
        return float(x.min()) - margin, float(y.min()) - margin, float(x.max()) + margin, float(y.max()) + margin

    def paint(self, x, y, px: float, colour: bool = True):
        """Premultiplied colour (n, 3) and coverage (n,) of the whole layer at canonical points."""
        n = x.shape[0]
        col = np.zeros((n, 3), x.dtype) if colour else None
        alpha = np.zeros(n, x.dtype)
        for part in self.parts:
            cx, cy, r = part.shape.bound
            if np.isfinite(r):
                m = r + part.soft + EDGE_REACH_PX / px
                idx = np.flatnonzero((x - cx) ** 2 + (y - cy) ** 2 < m * m)
                if idx.size == 0:
                    continue
                if idx.size > 0.7 * n:
                    idx = None
            else:
                idx = None
            xs, ys = (x, y) if idx is None else (x[idx], y[idx])
            c, a = part.paint(xs, ys, px, colour)
            sel = slice(None) if idx is None else idx
            if colour:
                col[sel] = c * a[:, None] + col[sel] * (1.0 - a[:, None])
            alpha[sel] = a + alpha[sel] * (1.0 - a)
        return col, alpha


def _union_bound(parts: list[Part]):
    b = np.array([p.shape.bound for p in parts], dtype=float)
    lo = (b[:, :2] - b[:, 2:]).min(axis=0)
    hi = (b[:, :2] + b[:, 2:]).max(axis=0)
    mid = 0.5 * (lo + hi)
    return float(mid[0]), float(mid[1]), float(np.hypot(*(hi - lo)) / 2)


class CartoonScene:
    """A cartoon shot. render/flow/occlusion_mask take the local t of the current window.

    A clip of K triplets is one scene whose clock runs from 0 to K; ``window(k)`` is the view of
    triplet k (scene time k + t). ``level`` is the level the scene was generated for;
    ``measured_level()`` is what its pixels actually show.
    """

    def __init__(self, width: int, height: int, layers: list[Layer], camera: Path, level: int,
                 motion_type: str, behavior: str, camera_mode: str, offset: float = 0.0,
                 cache: dict | None = None, lighting: tuple[float, float, float] = (0.0, 0.0, 0.0)):
        self.width, self.height = int(width), int(height)
        self.layers = layers
        self.camera = camera
        self.level = level
        self.motion_type = motion_type
        self.behavior = behavior
        self.camera_mode = camera_mode
        self.offset = float(offset)
        # (amplitude, angular frequency per scene time unit, phase): a global brightness swing,
        # as in CG lighting changes. It breaks brightness constancy but moves nothing: flow is
        # unchanged.
        self.lighting = tuple(float(v) for v in lighting)
        self.k = self.width / REF_WIDTH  # pixels per reference unit
        self._cache = {} if cache is None else cache  # shared by all windows of the clip

    @property
    def n_windows(self) -> int:
        return len(self.camera.steps)

    def window(self, k: int) -> CartoonScene:
        if not 0 <= k < self.n_windows:
            raise IndexError(f"window {k} outside 0..{self.n_windows - 1}")
        return CartoonScene(self.width, self.height, self.layers, self.camera, self.level, self.motion_type,
                            self.behavior, self.camera_mode, offset=k, cache=self._cache, lighting=self.lighting)

    # -- rendering -----------------------------------------------------------------------------
    def render(self, t: float) -> np.ndarray:
        """The frame at local time t: uint8 (H, W, 3) RGB."""
        return self._raster(self.offset + t)[0].copy()

    def layer_ids(self, t: float) -> np.ndarray:
        """Index (into ``layers``) of the layer on top at each pixel centre, int16 (H, W)."""
        return self._raster(self.offset + t)[1].copy()

    def _raster(self, tau: float):
        hit = self._cache.get(tau)
        if hit is not None:
            return hit
        h, w, k = self.height, self.width, self.k
        img = np.zeros((h, w, 3), np.float32)
        ids = np.full((h, w), -1, np.int16)
        pan = self.camera.at(tau)[:2]
        for li, layer in enumerate(self.layers):
            p = layer.params(tau, pan)
            x0, y0, x1, y1 = layer.screen_box(p, w / k, h / k, EDGE_REACH_PX / k)
            c0, r0 = max(int(np.floor(x0 * k)), 0), max(int(np.floor(y0 * k)), 0)
            c1, r1 = min(int(np.ceil(x1 * k)) + 1, w), min(int(np.ceil(y1 * k)) + 1, h)
            if c1 <= c0 or r1 <= r0:
                continue
            gy, gx = np.mgrid[r0:r1, c0:c1].astype(np.float32)
            qx, qy = layer.inverse(p, ((gx + 0.5) / k).ravel(), ((gy + 0.5) / k).ravel())
            col, alpha = layer.paint(qx, qy, k * math.exp(p[LOG_SCALE]))
            box = img[r0:r1, c0:c1]
            box *= (1.0 - alpha).reshape(r1 - r0, c1 - c0, 1)
            box += col.reshape(r1 - r0, c1 - c0, 3)
            ids[r0:r1, c0:c1][(alpha >= 0.5).reshape(r1 - r0, c1 - c0)] = li
        amp, freq, phase = self.lighting
        if amp:
            img *= 1.0 + amp * math.sin(freq * tau + phase)
        rgb = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        self._remember(tau, (rgb, ids))
        return rgb, ids

    def _remember(self, key, value) -> None:
        # A few recent frames and flows: a clip's triplets share frames, and the writer asks for
        # a frame's flow, its level and its RoI in turn.
        if len(self._cache) >= 10:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = value

    def _top_layer_at(self, tau: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Top layer at arbitrary screen points (pixel coordinates), same rule as the raster."""
        k = self.k
        shape = x.shape
        rx, ry = (x.ravel() + 0.5) / k, (y.ravel() + 0.5) / k
        top = np.full(rx.shape, -1, np.int16)
        pan = self.camera.at(tau)[:2]
        for li, layer in enumerate(self.layers):
            p = layer.params(tau, pan)
            x0, y0, x1, y1 = layer.screen_box(p, self.width / k, self.height / k, EDGE_REACH_PX / k)
            idx = np.flatnonzero((rx >= x0) & (rx <= x1) & (ry >= y0) & (ry <= y1))
            if idx.size == 0:
                continue
            qx, qy = layer.inverse(p, rx[idx], ry[idx])
            _, alpha = layer.paint(qx, qy, k * math.exp(p[LOG_SCALE]), colour=False)
            top[idx[alpha >= 0.5]] = li
        return top.reshape(shape)

    # -- motion ----------------------------------------------------------------------------------
    def _static(self, layer: Layer, tau_a: float, tau_b: float) -> bool:
        pa = layer.params(tau_a, self.camera.at(tau_a)[:2])
        pb = layer.params(tau_b, self.camera.at(tau_b)[:2])
        return layer.held or bool(np.array_equal(pa, pb))

    def _matches(self, t_a: float, t_b: float):
        """Top layer ids at t_a and, per pixel, the matching position at t_b (pixels, float64)."""
        tau_a, tau_b = self.offset + t_a, self.offset + t_b
        ids = self._raster(tau_a)[1]
        h, w, k = self.height, self.width, self.k
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float64)
        mx, my = gx.copy(), gy.copy()
        pan_a, pan_b = self.camera.at(tau_a)[:2], self.camera.at(tau_b)[:2]
        for li, layer in enumerate(self.layers):
            m = ids == li
            if not m.any() or self._static(layer, tau_a, tau_b):
                continue  # held content: exactly zero flow, not 1e-6
            qx, qy = layer.inverse(layer.params(tau_a, pan_a), (gx[m] + 0.5) / k, (gy[m] + 0.5) / k)
            bx, by = layer.forward(layer.params(tau_b, pan_b), qx, qy)
            mx[m], my[m] = bx * k - 0.5, by * k - 0.5
        return ids, gx, gy, mx, my

    def flow(self, t_a: float, t_b: float) -> np.ndarray:
        """Exact flow from the frame at t_a to the frame at t_b: float32 (2, H, W), ch0 = x.

        warp(frame(t_b), flow(t_a, t_b)) reproduces frame(t_a) wherever occlusion_mask is False.
        """
        key = ("flow", self.offset + t_a, self.offset + t_b)
        if key not in self._cache:
            _, gx, gy, mx, my = self._matches(t_a, t_b)
            self._remember(key, np.stack([mx - gx, my - gy]).astype(np.float32))
        return self._cache[key].copy()

    def occlusion_mask(self, t_a: float, t_b: float, edge_band: float = 0.0) -> np.ndarray:
        """True where pixel p at t_a has no visible match at t_b: the match is covered by another
        layer at t_b or lies outside the frame.

        edge_band > 0 also marks pixels within that many pixels of a layer boundary at t_a, and
        pixels whose bilinear warp would read a pixel within that distance of a boundary at t_b.
        Anti-aliased edges mix two layers, so no single flow explains them.
        """
        ids, gx, gy, mx, my = self._matches(t_a, t_b)
        h, w = self.height, self.width
        occ = (mx < 0) | (mx > w - 1) | (my < 0) | (my > h - 1)
        occ |= self._top_layer_at(self.offset + t_b, mx, my) != ids
        if edge_band > 0:
            occ |= _near_edge(ids, edge_band)
            near_b = _near_edge(self._raster(self.offset + t_b)[1], edge_band)
            x0 = np.clip(np.floor(mx), 0, w - 1).astype(np.intp)
            y0 = np.clip(np.floor(my), 0, h - 1).astype(np.intp)
            x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
            occ |= near_b[y0, x0] | near_b[y0, x1] | near_b[y1, x0] | near_b[y1, x1]
        return occ

    def moving_layers(self, t_a: float = 0.0, t_b: float = 1.0) -> list[int]:
        """Indices of foreground layers that move on screen between t_a and t_b."""
        tau_a, tau_b = self.offset + t_a, self.offset + t_b
        return [i for i, layer in enumerate(self.layers)
                if not layer.background and not self._static(layer, tau_a, tau_b)]

    def motion_roi(self, t_a: float = 0.0, t_b: float = 1.0) -> tuple[int, int, int, int]:
        """(x, y, w, h) box around moving foreground content at t_a and t_b (whole frame if none)."""
        ids = [self._raster(self.offset + t)[1] for t in (t_a, t_b)]
        return roi_from_ids(ids, self.moving_layers(t_a, t_b))

    def max_displacement(self, t_a: float = 0.0, t_b: float = 1.0) -> float:
        """Largest displacement (pixels) of visible moving foreground content, both directions."""
        moving = self.moving_layers(t_a, t_b)
        return max(_max_flow(self.flow(t_a, t_b), self._raster(self.offset + t_a)[1], moving),
                   _max_flow(self.flow(t_b, t_a), self._raster(self.offset + t_b)[1], moving))

    def measured_level(self, t_a: float = 0.0, t_b: float = 1.0) -> int:
        return level_of(self.max_displacement(t_a, t_b), self.width)


def _near_edge(ids: np.ndarray, radius: float) -> np.ndarray:
    """Pixels with a different layer id within ``radius`` pixels (a disc of grid offsets)."""
    r = int(np.ceil(radius))
    h, w = ids.shape
    pad = np.pad(ids, r, mode="edge")
    near = np.zeros(ids.shape, bool)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if 0 < dx * dx + dy * dy <= radius * radius:
                near |= pad[r + dy:r + dy + h, r + dx:r + dx + w] != ids
    return near


def roi_from_ids(id_maps: list[np.ndarray], layers: list[int]) -> tuple[int, int, int, int]:
    mask = np.zeros(id_maps[0].shape, bool)
    for ids in id_maps:
        mask |= np.isin(ids, layers)
    if not mask.any():
        h, w = mask.shape
        return 0, 0, int(w), int(h)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def _max_flow(flow: np.ndarray, ids: np.ndarray, layers: list[int]) -> float:
    m = np.isin(ids, layers)
    return float(np.hypot(flow[0][m], flow[1][m]).max()) if m.any() else 0.0
