"""Analytic 2-D shapes and their cel-shaded paint, for the synthetic cartoon generator.

Every shape is a signed distance function (negative inside) in the canonical coordinates of
its layer. Painting works on arbitrary point arrays, so the same code renders a pixel grid
and answers point queries (which layer is on top at a sub-pixel position) for the flow.
Edges are anti-aliased analytically: coverage ramps over one screen pixel around the zero
level set, which is cheaper than supersampling and gives the soft-but-crisp look of
digitally inked cels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special

# Shapes without a finite extent (hills, the sky) report this bound: never culled.
UNBOUNDED = (0.0, 0.0, np.inf)


def _safe_ratio(num: np.ndarray, den: np.ndarray, fallback: float) -> np.ndarray:
    out = np.full_like(num, fallback)
    np.divide(num, den, out=out, where=den > 1e-12)
    return out


def _floats(obj, *names: str) -> None:
    # Plain Python floats keep float32 point arrays in float32 (NumPy scalars would promote them).
    for name in names:
        setattr(obj, name, float(getattr(obj, name)))


class Shape:
    """A signed distance function; ``bound`` is a canonical (cx, cy, radius) circle enclosing it."""

    bound: tuple[float, float, float] = UNBOUNDED

    def sd(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@dataclass
class Ellipse(Shape):
    cx: float
    cy: float
    rx: float
    ry: float
    angle: float = 0.0

    def __post_init__(self):
        _floats(self, "cx", "cy", "rx", "ry", "angle")
        self.bound = (self.cx, self.cy, max(self.rx, self.ry))

    def sd(self, x, y):
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        u, v = c * dx + s * dy, -s * dx + c * dy
        f = np.sqrt((u / self.rx) ** 2 + (v / self.ry) ** 2)
        g = np.sqrt((u / self.rx**2) ** 2 + (v / self.ry**2) ** 2)
        # (f - 1) / |grad f| is a first-order distance: exact on the boundary, which is all the
        # anti-aliasing and the outline band need. f / |grad f| stays finite at the centre.
        return (f - 1.0) * _safe_ratio(f, g, min(self.rx, self.ry))


@dataclass
class Capsule(Shape):
    """A segment from a to b thickened by radius r (limbs, trunks)."""

    ax: float
    ay: float
    bx: float
    by: float
    r: float

    def __post_init__(self):
        _floats(self, "ax", "ay", "bx", "by", "r")
        half = 0.5 * math.hypot(self.bx - self.ax, self.by - self.ay)
        self.bound = (0.5 * (self.ax + self.bx), 0.5 * (self.ay + self.by), half + self.r)
        self._seg = np.array([[self.ax, self.ay, self.bx, self.by]], np.float32)

    def sd(self, x, y):
        return segment_distance(x, y, self._seg)[..., 0] - self.r


@dataclass
class RoundedPolygon(Shape):
    """A convex polygon (vertices counter- or clockwise) grown by ``radius`` with round corners."""

    vertices: np.ndarray
    radius: float = 0.0

    def __post_init__(self):
        v = np.asarray(self.vertices, dtype=np.float32)
        self.vertices = v
        self.radius = float(self.radius)
        c = v.mean(axis=0)
        self.bound = (float(c[0]), float(c[1]), float(np.max(np.hypot(*(v - c).T))) + self.radius)
        self._segs = np.concatenate([v, np.roll(v, -1, axis=0)], axis=1)
        # Orientation-free inside test: the centroid is inside, so a point is inside when it
        # lies on the centroid's side of every edge.
        e = self._segs
        self._side = np.sign((e[:, 2] - e[:, 0]) * (c[1] - e[:, 1]) - (e[:, 3] - e[:, 1]) * (c[0] - e[:, 0]))

    def sd(self, x, y):
        e = self._segs
        d = segment_distance(x, y, e).min(axis=-1)
        cross = (e[:, 2] - e[:, 0]) * (y[..., None] - e[:, 1]) - (e[:, 3] - e[:, 1]) * (x[..., None] - e[:, 0])
        inside = np.all(cross * self._side > 0, axis=-1)
        return np.where(inside, -d, d) - self.radius


@dataclass
class PolarBlob(Shape):
    """A star-shaped outline r(theta) = r0 (1 - a + 2a ((1 + cos(n theta + phase)) / 2)^p) + wobble.

    p = 1 gives a smooth flower/blob, large p sharp spikes (stars, anime hair tufts).
    """

    cx: float
    cy: float
    r0: float
    n: int = 5
    amount: float = 0.2
    sharp: float = 1.0
    phase: float = 0.0
    wobble: float = 0.0  # low-frequency irregularity, fraction of r0

    def __post_init__(self):
        _floats(self, "cx", "cy", "r0", "amount", "sharp", "phase", "wobble")
        self.n = int(self.n)
        self.bound = (self.cx, self.cy, self.r0 * (1.0 + self.amount + abs(self.wobble)) + 1e-6)

    def sd(self, x, y):
        dx, dy = x - self.cx, y - self.cy
        rho = np.hypot(dx, dy)
        th = np.arctan2(dy, dx)
        arg = self.n * th + self.phase
        h = 0.5 * (1.0 + np.cos(arg))
        hp = h ** self.sharp
        r = self.r0 * (1.0 - self.amount + 2.0 * self.amount * hp + self.wobble * np.sin(2 * th + 2 * self.phase))
        dh = -0.5 * self.n * np.sin(arg)
        dr = self.r0 * (2.0 * self.amount * self.sharp * _safe_ratio(hp, h, 0.0) * dh
                        + 2.0 * self.wobble * np.cos(2 * th + 2 * self.phase))
        # Distance to a polar curve, first order: radial gap over the slope of the curve. Near the
        # centre that estimate collapses (the slope term blows up), so bound it by the inscribed
        # and circumscribed circles, whose distances are exact lower bounds.
        sd = (rho - r) / np.sqrt(1.0 + _safe_ratio(dr, rho, 0.0) ** 2)
        r_min = self.r0 * (1.0 - self.amount - abs(self.wobble))
        r_max = self.r0 * (1.0 + self.amount + abs(self.wobble))
        return np.where(sd < 0, np.minimum(sd, rho - r_min), np.maximum(sd, rho - r_max))


@dataclass
class CircleUnion(Shape):
    """Union of circles (clouds, tree crowns, bushes)."""

    circles: np.ndarray  # (n, 3): cx, cy, r

    def __post_init__(self):
        c = np.asarray(self.circles, dtype=np.float32)
        self.circles = c
        lo, hi = (c[:, :2] - c[:, 2:]).min(axis=0), (c[:, :2] + c[:, 2:]).max(axis=0)
        mid = 0.5 * (lo + hi)
        self.bound = (float(mid[0]), float(mid[1]), float(np.hypot(*(hi - lo)) / 2))

    def sd(self, x, y):
        c = self.circles
        return (np.hypot(x[..., None] - c[:, 0], y[..., None] - c[:, 1]) - c[:, 2]).min(axis=-1)


@dataclass
class Terrain(Shape):
    """Everything below the curve y = base + sum a_i sin(f_i x + p_i) (image y points down)."""

    base: float
    amps: np.ndarray
    freqs: np.ndarray
    phases: np.ndarray

    def __post_init__(self):
        self.base = float(self.base)
        waves = zip(self.amps, self.freqs, self.phases, strict=True)
        self._waves = [(float(a), float(f), float(p)) for a, f, p in waves]

    def height(self, x):
        return self.base + sum(a * np.sin(f * x + p) for a, f, p in self._waves)

    @property
    def top(self) -> float:
        return self.base - sum(abs(a) for a, _, _ in self._waves)

    def sd(self, x, y):
        h, dh = self.base - y, 0.0
        for a, f, p in self._waves:
            arg = f * x + p
            h = h + a * np.sin(arg)
            dh = dh + (a * f) * np.cos(arg)
        return h / np.sqrt(1.0 + dh * dh)


class Everywhere(Shape):
    """Covers the whole plane (the sky)."""

    def sd(self, x, y):
        return np.full_like(x, -1e6)


def segment_distance(x: np.ndarray, y: np.ndarray, segs: np.ndarray) -> np.ndarray:
    """Distance from points (...,) to each segment (S, 4: ax, ay, bx, by) -> (..., S)."""
    ax, ay, bx, by = segs.T
    ex, ey = bx - ax, by - ay
    px, py = x[..., None] - ax, y[..., None] - ay
    h = np.clip((px * ex + py * ey) / np.maximum(ex * ex + ey * ey, 1e-12), 0.0, 1.0)
    return np.hypot(px - h * ex, py - h * ey)


@dataclass
class Stroke:
    """An inked detail line (a polyline in canonical units), drawn only inside its part."""

    points: np.ndarray  # (n, 2)
    width: float

    def __post_init__(self):
        p = np.asarray(self.points, dtype=np.float32)
        self.points = p
        self.width = float(self.width)
        self._segs = np.concatenate([p[:-1], p[1:]], axis=1)

    def distance(self, x, y):
        return segment_distance(x, y, self._segs).min(axis=-1)


@dataclass
class Part:
    """One flat-coloured, cel-shaded, outlined region of a layer.

    shade_offset: the lit area is the shape shifted by this vector; the rest of the shape gets
    the shadow tone ``fill * shade_mul``, which is how cel shading places a hard-edged shadow.
    gradient / texture: smooth colour variation in canonical units (painted backgrounds); it
    moves with the layer, so the flow stays exact.
    soft: edge softness in canonical units (clouds); 0 means a one-pixel anti-aliased edge.
    """

    shape: Shape
    fill: np.ndarray
    line_colour: np.ndarray = field(default_factory=lambda: np.array([0.12, 0.09, 0.11]))
    line_width: float = 0.0
    shade_mul: np.ndarray | None = None
    shade_offset: tuple[float, float] = (0.0, 0.0)
    strokes: list[Stroke] = field(default_factory=list)
    stroke_colour: np.ndarray | None = None
    gradient: tuple[float, float, np.ndarray] | None = None  # (gx, gy, colour change per unit)
    texture: list[tuple[float, float, float]] = field(default_factory=list)  # waves (fx, fy, phase)
    texture_amp: float = 0.0  # relative brightness swing of the texture
    soft: float = 0.0

    def __post_init__(self):
        for name in ("fill", "line_colour", "shade_mul", "stroke_colour"):
            if getattr(self, name) is not None:
                setattr(self, name, np.asarray(getattr(self, name), np.float32))
        self.shade_offset = tuple(float(v) for v in self.shade_offset)
        if self.gradient is not None:
            gx, gy, per_unit = self.gradient
            self.gradient = (float(gx), float(gy), np.asarray(per_unit, np.float32))
        self.texture = [tuple(float(v) for v in wave) for wave in self.texture]
        self.texture_amp = float(self.texture_amp)
        self.soft = float(self.soft)

    def paint(self, x: np.ndarray, y: np.ndarray, px: float, colour: bool = True):
        """Colour (n, 3) and coverage (n,) at canonical points; px = screen pixels per unit."""
        sd = self.shape.sd(x, y)
        alpha = _coverage(sd, px, self.soft)
        if not colour:
            return None, alpha
        col = self._fill_at(x, y)
        if self.shade_mul is not None:
            ox, oy = self.shade_offset
            lit = _coverage(self.shape.sd(x - ox, y - oy), px, 0.0)
            col = col * (self.shade_mul + (1.0 - self.shade_mul) * lit[:, None])
        if self.strokes:
            ink = np.zeros_like(sd)
            for s in self.strokes:
                ink = np.maximum(ink, _coverage(s.distance(x, y) - 0.5 * s.width, px, 0.0))
            sc = self.line_colour if self.stroke_colour is None else self.stroke_colour
            col = col + (sc - col) * ink[:, None]
        if self.line_width > 0:
            # The outline is the inner band -line_width < sd < 0, so it never widens the shape.
            band = _coverage(-(sd + self.line_width), px, 0.0)
            col = col + (self.line_colour - col) * band[:, None]
        return col, alpha

    def _fill_at(self, x, y):
        if self.gradient is None and not self.texture:
            return self.fill  # (3,): broadcasts against the (n, 3) arrays it meets
        col = self.fill
        if self.gradient is not None:
            gx, gy, per_unit = self.gradient
            col = col + (gx * x + gy * y)[:, None] * per_unit
        if self.texture:
            wave = sum(np.sin(fx * x + fy * y + p) for fx, fy, p in self.texture)
            col = col * (1.0 + (self.texture_amp / len(self.texture)) * wave)[:, None]
        return np.clip(col, 0.0, 1.0)


# Edges are Gaussian-filtered (coverage = Gaussian CDF of the signed distance in pixels): the
# band-limited ideal of anti-aliasing. Of the profiles we measured at the same sharpness (linear
# ramps, smoothstep), it is the one a bilinear warp resamples with the least error, which is what
# makes the exact flow visibly exact (docs/synthetic_dataset.md). sigma 0.7 px: 10-90 % rise 1.8 px.
EDGE_SIGMA_PX = 0.7
EDGE_REACH_PX = 3.0  # coverage is 0 or 1 to within 1e-5 beyond this distance from an edge


def _coverage(sd: np.ndarray, px: float, soft: float) -> np.ndarray:
    if soft > 0:  # painted soft edges (clouds): smoothstep over `soft` canonical units
        u = np.clip(0.5 - sd / soft, 0.0, 1.0)
        return u * u * (3.0 - 2.0 * u)
    return 0.5 * special.erfc(sd * (px / (EDGE_SIGMA_PX * np.sqrt(2.0))))
