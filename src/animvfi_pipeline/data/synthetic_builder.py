"""make_scene: compose a random cartoon shot (background, props, characters) and plan its motion.

Sizes are in reference units (frame width 256, see synthetic_scene). The motion of every window
(triplet) is calibrated so that the largest displacement of moving foreground content hits a
target drawn from the requested level's band; the level actually shown is measured afterwards.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

from animvfi_pipeline.data.synthetic_scene import (
    ANGLE, BEND, LINEAR, LOG_SCALE, MOTION_TYPES, N_EASINGS, N_PARAMS, REF_WIDTH, SQUASH, TX, TY,
    CartoonScene, Layer, Path,
)
from animvfi_pipeline.data.synthetic_shapes import (
    Capsule, CircleUnion, Ellipse, Everywhere, Part, PolarBlob, RoundedPolygon, Stroke, Terrain,
)

# Target displacement bands (fraction of frame width) per level; inside the measured thresholds
# (3 % and 8 %) with a margin, so the measured level usually equals the target.
LEVEL_BANDS = ((0.004, 0.024), (0.036, 0.072), (0.09, 0.15))
BEHAVIORS = {
    "translation": ("walking", "fetching", "sporting"),
    "rotation": ("sporting", "fetching", "others"),
    "scaling": ("others", "speaking", "walking"),
    "deformation": ("speaking", "eating", "others"),
}
CAMERA_MODES = ("static", "pan_background", "pan_all")
SKIN = ((1.0, 0.87, 0.76), (0.98, 0.8, 0.66), (0.85, 0.64, 0.5), (0.62, 0.44, 0.33))
INK = np.array([0.1, 0.07, 0.1])


TIMINGS = ("linear", "eased")


@dataclass(frozen=True)
class StyleFamily:
    """How a family draws: the same shot geometry, painted differently.

    line: outline width range (reference units; 0 = no outlines); cel: hard cel shadows;
    gradient: soft shading across a part (share of its colour, CG-like); soft: edge softness
    (reference units); grain / bg_grain: high-frequency paint or paper texture on foreground
    parts / backgrounds (relative brightness swing); lighting: amplitude of a global brightness
    swing over time.
    """

    line: tuple[float, float] = (2.0, 3.0)
    cel: bool = True
    gradient: float = 0.0
    soft: float = 0.0
    grain: float = 0.0
    bg_grain: float = 0.0
    lighting: float = 0.0


STYLE_FAMILIES = {
    "cel": StyleFamily(),  # flat TV-anime cels: thick ink, hard two-tone shadows
    "paper": StyleFamily(line=(0.7, 1.3), cel=False, bg_grain=0.5),  # thin ink, flat fills, paper grain
    "cg": StyleFamily(line=(0.0, 0.0), cel=False, gradient=0.5, lighting=0.06),  # 3-D-shaded look
    "watercolor": StyleFamily(line=(0.0, 0.0), cel=False, gradient=0.25, soft=1.5, grain=0.35,
                              bg_grain=0.35, lighting=0.03),
}


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


class _Style:
    """Per-scene drawing style: light direction, line weight, shadow tint, and the family's paint."""

    def __init__(self, rng: np.random.Generator, family: StyleFamily, grain_seed: int):
        a = rng.uniform(-np.pi, 0)  # light from above, left or right
        self.light = np.array([np.cos(a), np.sin(a)])
        u = rng.uniform()  # drawn for every family, so a seed gives the same shot in each family
        self.line = family.line[0] + u * (family.line[1] - family.line[0])
        self.shade = np.array([0.7, 0.68, 0.84]) * rng.uniform(0.92, 1.05)
        self.family = family
        self.rng = rng
        # Grain waves from their own generator: the geometry draws above stay the same.
        grain_rng = np.random.default_rng(grain_seed)
        self.grain_waves = [(*(f * np.array([np.cos(d), np.sin(d)])), p) for f, d, p in zip(
            grain_rng.uniform(1.2, 3.2, 12), grain_rng.uniform(0, np.pi, 12), grain_rng.uniform(0, 6.3, 12))]

    def part(self, shape, fill, size: float, shade=True, line=True, strokes=(), **kw) -> Part:
        fam = self.family
        fill = np.asarray(fill, float)
        # Lit area = shape shifted toward the light; the crescent left over is the cel shadow.
        off = tuple(float(v) for v in self.light * 0.22 * size)
        if shade and fam.gradient > 0:  # brighter toward the light, across the part's size
            kw.setdefault("gradient", (*self.light, fill * fam.gradient / size))
        if fam.grain > 0:
            kw.setdefault("texture", self.grain_waves)
            kw.setdefault("texture_amp", fam.grain)
        return Part(shape, fill, line_colour=kw.pop("line_colour", INK),
                    line_width=self.line if line else 0.0,
                    shade_mul=self.shade if shade and fam.cel else None, shade_offset=off,
                    strokes=list(strokes) if self.line > 0 else [], soft=fam.soft, **kw)

    def stroke(self, pts) -> Stroke:
        return Stroke(np.asarray(pts, float), 0.7 * self.line)

    def background_texture(self, slow: list, amp: float) -> dict:
        """Texture of a background part: the slow painted waves, plus the family's grain."""
        if self.family.bg_grain > 0:
            return dict(texture=slow + self.grain_waves, texture_amp=amp + self.family.bg_grain)
        return dict(texture=slow, texture_amp=amp)

    def colour(self, s=(0.45, 0.85), v=(0.7, 0.98)) -> np.ndarray:
        return _hsv(self.rng.uniform(), self.rng.uniform(*s), self.rng.uniform(*v))


def _arc(cx, cy, r, a0, a1, n=8):
    a = np.linspace(a0, a1, n)
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)


# Foreground pieces are built in canonical units around their pivot (the centre), +y down.
def _character(st: _Style, h: float):
    """A chibi character of height h: parts (back to front), radius, y of the feet."""
    rng = st.rng
    j = lambda v: v * rng.uniform(0.88, 1.12)  # noqa: E731 - jitter the proportions
    skin = np.array(SKIN[rng.integers(len(SKIN))])
    cloth, pants, hair = st.colour(), st.colour(v=(0.3, 0.6)), st.colour(s=(0.5, 0.95))
    iris = st.colour(s=(0.6, 1.0), v=(0.4, 0.8))
    parts = []
    for sx in (-1, 1):  # legs
        leg = Capsule(sx * j(0.1) * h, 0.2 * h, sx * j(0.12) * h, 0.44 * h, j(0.06) * h)
        parts.append(st.part(leg, pants, 0.1 * h))
    bw, bt = j(0.2) * h, j(0.17) * h  # body: a trapezoid, wider at the hem, with a collar line
    body = RoundedPolygon(np.array([[-bt, -0.05 * h], [bt, -0.05 * h], [bw, 0.26 * h], [-bw, 0.26 * h]]), 0.04 * h)
    collar = st.stroke(np.array([[-0.08, -0.02], [0.0, 0.06], [0.08, -0.02]]) * h)
    parts.append(st.part(body, cloth, 0.35 * h, strokes=[collar]))
    for sx in (-1, 1):  # arms at a random angle from the shoulder, hands on the end
        a = rng.uniform(0.2, 1.3)
        ex, ey = sx * (0.18 * h + 0.22 * h * math.sin(a)), -0.02 * h + 0.22 * h * math.cos(a)
        parts.append(st.part(Capsule(sx * 0.17 * h, 0.0, ex, ey, j(0.05) * h), cloth, 0.1 * h))
        parts.append(st.part(Ellipse(ex, ey, 0.055 * h, 0.055 * h), skin, 0.1 * h))
    hy, hr = -0.25 * h, j(0.2) * h
    # Spiky back hair behind the head, the face with its mouth, then a fringe cap over the top.
    back_hair = PolarBlob(0.0, hy - 0.03 * h, hr * 1.12, n=int(rng.integers(6, 10)), amount=0.18,
                          sharp=rng.uniform(1.5, 3.0), phase=rng.uniform(0, 6.3))
    parts.append(st.part(back_hair, hair, 0.2 * h))
    mouth = st.stroke(_arc(0, hy + 0.05 * h, 0.04 * h, 0.5, 2.6, 6))
    parts.append(st.part(Ellipse(0.0, hy, hr, hr * 0.95), skin, 0.4 * h, strokes=[mouth]))
    fringe = Ellipse(0.0, hy - 0.62 * hr, hr * 1.02, hr * 0.5, rng.uniform(-0.2, 0.2))
    parts.append(st.part(fringe, hair, 0.25 * h))
    for sx in (-1, 1):  # eyes: outlined white, iris, highlight
        ex, ey = sx * 0.08 * h, hy + 0.01 * h
        parts.append(st.part(Ellipse(ex, ey, 0.04 * h, 0.055 * h), (1.0, 1.0, 1.0), 0.05 * h, shade=False))
        parts.append(Part(Ellipse(ex, ey + 0.01 * h, 0.026 * h, 0.04 * h), iris))
        parts.append(Part(Ellipse(ex - 0.01 * h, ey - 0.008 * h, 0.015 * h, 0.015 * h), np.ones(3)))
    return parts, 0.5 * h, 0.47 * h


def _prop(st: _Style, kind: str, r: float):
    rng = st.rng
    c = st.colour()
    if kind == "ball":
        return [st.part(Ellipse(0, 0, r, r), c, 2 * r, strokes=[st.stroke(_arc(-1.6 * r, 0, 1.7 * r, -0.6, 0.6))]),
                Part(Ellipse(-0.35 * r, -0.4 * r, 0.18 * r, 0.12 * r, -0.6), np.ones(3))]
    if kind == "star":
        # No cel shadow: a shifted copy of a spiky shape leaves hairline slivers, not a shadow.
        star = PolarBlob(0, 0, r, n=5, amount=0.32, sharp=1.3, phase=-np.pi / 2)
        return [st.part(star, _hsv(0.13, 0.8, 1.0), 2 * r, shade=False),
                Part(Ellipse(-0.2 * r, -0.25 * r, 0.12 * r, 0.08 * r, -0.5), np.ones(3))]
    if kind == "slime":
        body = st.part(PolarBlob(0, 0, r, n=3, amount=0.08, wobble=0.08, phase=float(rng.uniform(0, 6))), c, 2 * r)
        eyes = [Part(Ellipse(sx * 0.3 * r, -0.2 * r, 0.1 * r, 0.16 * r), INK) for sx in (-1, 1)]
        return [body] + eyes
    if kind == "box":
        w, hh = r * rng.uniform(0.7, 1.0), r * rng.uniform(0.6, 0.9)
        v = np.array([[-w, -hh], [w, -hh], [w, hh], [-w, hh]])
        planks = [st.stroke([[-w, y], [w, y]]) for y in (-hh / 3, hh / 3)]
        return [st.part(RoundedPolygon(v, 0.1 * r), _hsv(0.08, 0.55, 0.75), 2 * r, strokes=planks)]
    if kind == "gem":
        a = np.arange(6) * np.pi / 3
        v = np.stack([r * 0.9 * np.cos(a), r * 0.9 * np.sin(a)], axis=1)
        return [st.part(RoundedPolygon(v, 0.06 * r), c, 2 * r, strokes=[st.stroke([v[i], [0, 0]]) for i in (0, 2, 4)])]
    if kind == "rock":
        a = np.sort(rng.uniform(0, 2 * np.pi, 7))
        v = np.stack([r * np.cos(a), 0.7 * r * np.sin(a)], axis=1)
        return [st.part(RoundedPolygon(v, 0.15 * r), _hsv(0.1, 0.15, rng.uniform(0.5, 0.7)), 2 * r)]
    if kind == "bush":
        xs = np.linspace(-0.8 * r, 0.8 * r, 5)
        circ = np.array([[x, 0.25 * r - 0.3 * r * math.cos(x / r), 0.45 * r] for x in xs])
        return [st.part(CircleUnion(circ), _hsv(rng.uniform(0.25, 0.38), 0.6, 0.55), 2 * r)]
    # tree
    return [st.part(Capsule(0, 0.2 * r, 0, r, 0.14 * r), _hsv(0.07, 0.5, 0.45), r),
            st.part(CircleUnion(np.array([[-0.3 * r, -0.2 * r, 0.45 * r], [0.3 * r, -0.2 * r, 0.45 * r],
                                          [0, -0.55 * r, 0.45 * r], [0, 0.05 * r, 0.4 * r]])),
                    _hsv(rng.uniform(0.25, 0.4), 0.65, 0.6), 2 * r)]


def _background(st: _Style, ref_w: float, ref_h: float, K: int) -> list[Layer]:
    rng = st.rng
    hue = rng.uniform(0.5, 0.68) if rng.random() < 0.7 else rng.uniform(0.75, 1.05)  # day or dusk
    top, horizon = _hsv(hue, 0.55, 0.85), _hsv(hue + 0.05, 0.25, 1.0)
    # Painted look: a faint brightness swing from three slow waves.
    tex = lambda: [(*rng.uniform(-0.06, 0.06, 2), rng.uniform(0, 6.3)) for _ in range(3)]  # noqa: E731
    sky = [Part(Everywhere(), top, gradient=(0.0, 1.0, (horizon - top) / (0.7 * ref_h)),
                **st.background_texture(tex(), 0.04))]
    span = (-ref_w * (1 + 0.2 * K), ref_w * (2 + 0.2 * K))  # the camera may pan either way
    for _ in range(int(rng.integers(3, 7))):
        cx, cy, r = rng.uniform(*span), rng.uniform(0.05, 0.45) * ref_h, rng.uniform(8, 18)
        # A big puff in the middle, smaller and lower ones to the sides.
        circ = np.array([[cx + dx * r, cy + 0.25 * r * dx * dx, r * (1 - 0.3 * abs(dx))]
                         for dx in np.linspace(-1.4, 1.4, int(rng.integers(3, 6)))])
        sky.append(Part(CircleUnion(circ), np.array([1.0, 1.0, 1.0]), shade_mul=np.array([0.86, 0.87, 0.96]),
                        shade_offset=(0.0, -0.3 * r), soft=2.5))
    layers = [Layer("sky", sky, _still(), pan_factor=0.25, background=True)]
    for name, base, factor, sat in (("far_hills", 0.58, 0.55, 0.3), ("ground", 0.8, 1.0, 0.6)):
        n = 3
        terr = Terrain(base * ref_h + rng.uniform(-0.05, 0.05) * ref_h, rng.uniform(2, 7, n) * (1.5 - factor),
                       rng.uniform(0.01, 0.05, n), rng.uniform(0, 6.3, n))
        fill = _hsv(rng.uniform(0.2, 0.36), sat, 0.75 if factor < 1 else 0.65)
        parts = [Part(terr, fill, line_colour=fill * 0.6, line_width=1.2 if st.line > 0 else 0.0,
                      gradient=(0.0, 1.0, -fill * 0.5 / ref_h), **st.background_texture(tex(), 0.06))]
        if name == "ground":
            for x in rng.uniform(*span, int(rng.integers(1, 4))):
                tr = rng.uniform(14, 24)
                y = float(terr.height(np.array(x))) - 0.9 * tr
                for p in _prop(st, "tree", tr):
                    parts.append(_shifted(p, x, y))
        top = min([terr.top] + [p.shape.bound[1] - p.shape.bound[2] for p in parts[1:]])
        layers.append(Layer(name, parts, _still(), pan_factor=factor, background=True, top_y=top))
    return layers


def _shifted(part: Part, dx: float, dy: float) -> Part:
    """A copy of a part moved by (dx, dy) in canonical units (to place trees on the ground)."""
    s = part.shape
    if isinstance(s, Capsule):
        shape = Capsule(s.ax + dx, s.ay + dy, s.bx + dx, s.by + dy, s.r)
    else:
        shape = CircleUnion(s.circles + np.array([dx, dy, 0.0]))
    return Part(shape, part.fill, part.line_colour, part.line_width, part.shade_mul, part.shade_offset)


def _still(start=None) -> Path:
    return Path(np.zeros(N_PARAMS) if start is None else np.asarray(start, float), np.zeros((1, N_PARAMS)),
                np.zeros(1, int))


def _samples(parts: list[Part], r: float) -> np.ndarray:
    g = np.linspace(-1.0, 1.0, 25) * r
    x, y = [a.ravel() for a in np.meshgrid(g, g)]
    inside = np.zeros(x.shape, bool)
    for p in parts:
        inside |= p.shape.sd(x, y) < 0
    return np.stack([x[inside], y[inside]], axis=1)


def make_scene(seed: int, width: int, height: int, level: int | None = None,
               motion_type: str | None = None, n_windows: int = 1, style: str = "cel",
               timing: str = "linear") -> CartoonScene:
    """A deterministic random cartoon shot; ``n_windows`` consecutive triplets (clock 0..n_windows).

    ``style``: a key of STYLE_FAMILIES (the same seed gives the same shot in every family).
    ``timing``: "linear" moves everything at constant speed within a window, so the frame at
    t = 0.5 is the midpoint of the motion; "eased" gives each layer a random easing per window,
    so the true in-between lies anywhere from 1/8 to 3/4 of the way and cannot be told from the
    two end frames.
    """
    if style not in STYLE_FAMILIES:
        raise ValueError(f"style must be one of {sorted(STYLE_FAMILIES)}, got {style!r}")
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {TIMINGS}, got {timing!r}")
    if width < 8 or height < 8:
        raise ValueError(f"frame size {width}x{height} is too small (min 8x8)")
    if level is not None and level not in (0, 1, 2):
        raise ValueError(f"level must be 0, 1, 2 or None, got {level!r}")
    if motion_type is not None and motion_type not in MOTION_TYPES:
        raise ValueError(f"motion_type must be one of {MOTION_TYPES} or None, got {motion_type!r}")
    rng = np.random.default_rng(seed)
    level = int(rng.integers(3)) if level is None else int(level)
    motion_type = str(rng.choice(MOTION_TYPES)) if motion_type is None else motion_type
    behavior = str(rng.choice(BEHAVIORS[motion_type]))
    camera_mode = str(rng.choice(CAMERA_MODES, p=(0.25, 0.5, 0.25)))
    K = int(n_windows)
    ref_w, ref_h = REF_WIDTH, REF_WIDTH * height / width
    family = STYLE_FAMILIES[style]
    st = _Style(rng, family, grain_seed=seed + 1)
    layers = _background(st, ref_w, ref_h, K)

    def place(name, parts, radius, base_y, x, y, held=False, angle=0.0, log_scale=0.0):
        start = np.zeros(N_PARAMS)
        start[[TX, TY, ANGLE, LOG_SCALE]] = x, y, angle, log_scale
        return Layer(name, parts, _still(start), pan_factor=0.0, held=held, radius=radius, base_y=base_y,
                     samples=_samples(parts, 1.2 * radius))

    # Held cels: one standing in the scene, sometimes one in front at a bottom corner.
    r = rng.uniform(0.12, 0.2) * ref_h
    kind = str(rng.choice(("tree", "rock", "box", "bush")))
    x, y = rng.uniform(0.08, 0.92) * ref_w, 0.78 * ref_h - r * 0.3
    layers.append(place("held_" + kind, _prop(st, kind, r), r, r, x, y, held=True))
    moving = []
    for _ in range(int(rng.integers(1, 3))):
        r = rng.uniform(0.07, 0.13) * ref_h
        kind = str(rng.choice(("ball", "star", "slime", "box", "gem")))
        moving.append(place(kind, _prop(st, kind, r), r, r, rng.uniform(0.15, 0.85) * ref_w,
                            rng.uniform(0.25, 0.75) * ref_h, angle=rng.uniform(-0.3, 0.3)))
    if rng.random() < 0.65:
        h = rng.uniform(0.5, 0.72) * ref_h
        parts, radius, base_y = _character(st, h)
        x, y = rng.uniform(0.35, 0.65) * ref_w, rng.uniform(0.45, 0.55) * ref_h
        primary = place("character", parts, radius, base_y, x, y)
    else:
        r = rng.uniform(0.16, 0.24) * ref_h
        kind = str(rng.choice(("ball", "star", "slime", "gem")))
        primary = place(kind, _prop(st, kind, r), r, r, rng.uniform(0.35, 0.65) * ref_w, rng.uniform(0.4, 0.6) * ref_h)
    layers += moving + [primary]
    if rng.random() < 0.35:  # something small crossing in front, for occlusions
        r = rng.uniform(0.06, 0.1) * ref_h
        kind = str(rng.choice(("ball", "star", "gem")))
        fly = place(kind, _prop(st, kind, r), r, r, rng.uniform(0.1, 0.9) * ref_w, rng.uniform(0.2, 0.6) * ref_h)
        layers.append(fly)
        moving.append(fly)
    if rng.random() < 0.4:
        r = rng.uniform(0.18, 0.26) * ref_h
        x = ref_w * (rng.uniform(-0.02, 0.06) if rng.random() < 0.5 else rng.uniform(0.94, 1.02))
        layers.append(place("held_front_bush", _prop(st, "bush", r), r, r, x, ref_h - 0.1 * r, held=True))

    camera = _plan_motion(rng, layers, primary, moving, motion_type, camera_mode, level, K, ref_w, ref_h, width / ref_w)
    if timing == "linear":  # the random easings were still drawn, so the shot is the same
        for path in [camera] + [layer.path for layer in layers]:
            path.easing[:] = LINEAR
    light_rng = np.random.default_rng(seed + 2)
    lighting = (family.lighting, float(light_rng.uniform(0.5, 1.5)), float(light_rng.uniform(0, 6.3)))
    return CartoonScene(width, height, layers, camera, level, motion_type, behavior, camera_mode, lighting=lighting)


def _plan_motion(rng, layers, primary, moving, motion_type, camera_mode, level, K, ref_w, ref_h, k) -> Path:
    """Give every moving layer and the camera K eased steps, calibrated to the level's band."""
    types = {id(primary): motion_type}
    share = {id(primary): 1.0}
    for layer in moving:
        types[id(layer)] = str(rng.choice(MOTION_TYPES))
        share[id(layer)] = rng.uniform(0.3, 0.9)
    movers = [primary] + moving
    for layer in layers:
        layer.path = Path(layer.path.start, np.zeros((K, N_PARAMS)), rng.integers(0, N_EASINGS, K))
        if camera_mode == "pan_all" and not layer.background and not layer.held:
            layer.pan_factor = 1.0
    pan_dir = np.array([1.0, rng.uniform(-0.3, 0.3)]) * rng.choice((-1.0, 1.0))
    pan_dir /= np.linalg.norm(pan_dir)
    pan_share = 0.0 if camera_mode == "static" else rng.uniform(0.3, 0.8)
    camera = Path(np.zeros(2), np.zeros((K, 2)), rng.integers(0, N_EASINGS, K))

    for w in range(K):
        m = rng.uniform(*LEVEL_BANDS[level]) * ref_w  # target, reference units
        pan = camera.at(w)
        for layer in movers:
            p = layer.params(w, pan)
            layer.path.steps[w] = _raw_step(rng, types[id(layer)], layer, p, m * share[id(layer)], ref_w, ref_h)
        camera.steps[w] = pan_dir * m * pan_share
        # The displacement is nearly linear in the step size: a few rescalings hit the target.
        for _ in range(4):
            d = _max_sample_displacement(movers, camera, w, ref_w, ref_h)
            if d < 1e-9:
                break
            c = float(np.clip(m / d, 0.2, 5.0))
            for layer in movers:
                layer.path.steps[w] *= c
            camera.steps[w] *= c
            if abs(c - 1.0) < 0.01:
                break
    return camera


# Largest characteristic change per window. Beyond these a zoom or squash throws away detail that
# no flow can bring back, so larger displacements come from translating as well.
MAX_TURN, MAX_ZOOM, MAX_BEND, MAX_SQUASH = 0.7, 0.1, 0.3, 0.1


def _raw_step(rng, kind, layer, p, m, ref_w, ref_h) -> np.ndarray:
    step = np.zeros(N_PARAMS)
    size = layer.radius * math.exp(p[LOG_SCALE])
    if kind == "rotation":
        step[ANGLE] = rng.choice((-1, 1)) * min(m / size, MAX_TURN)
        rest = m - size * abs(step[ANGLE])
    elif kind == "scaling":
        # Zoom back towards the original size once it has drifted, so clips stay in a sane range.
        sign = -np.sign(p[LOG_SCALE]) if abs(p[LOG_SCALE]) > 0.2 else rng.choice((-1, 1))
        step[LOG_SCALE] = sign * min(math.log1p(m / size), MAX_ZOOM)
        rest = m - size * abs(math.expm1(step[LOG_SCALE]))
    elif kind == "deformation":
        sign = -np.sign(p[BEND]) if abs(p[BEND]) > 0.15 else rng.choice((-1, 1))
        step[BEND] = sign * min(m / (2.0 * size), MAX_BEND)
        step[SQUASH] = -np.sign(p[SQUASH] or rng.choice((-1, 1))) * rng.uniform(0.3, 1.0) * MAX_SQUASH
        rest = m - 2.0 * size * abs(step[BEND])
    else:
        rest = m
    if rest > 0:
        # Head for a random point in the middle of the frame, so the layer stays in view.
        target = np.array([rng.uniform(0.25, 0.75) * ref_w, rng.uniform(0.3, 0.7) * ref_h])
        d = target - p[[TX, TY]]
        step[[TX, TY]] = d / max(np.linalg.norm(d), 1e-6) * rest
    return step


def _max_sample_displacement(movers, camera, w, ref_w, ref_h) -> float:
    best = 0.0
    pa, pb = camera.at(w), camera.at(w + 1)
    for layer in movers:
        x, y = layer.samples.T
        ax, ay = layer.forward(layer.params(w, pa), x, y)
        bx, by = layer.forward(layer.params(w + 1, pb), x, y)
        seen = _in_frame(ax, ay, ref_w, ref_h) | _in_frame(bx, by, ref_w, ref_h)
        if seen.any():
            best = max(best, float(np.hypot(bx - ax, by - ay)[seen].max()))
    return best


def _in_frame(x, y, ref_w, ref_h):
    return (x >= 0) & (x <= ref_w) & (y >= 0) & (y <= ref_h)
