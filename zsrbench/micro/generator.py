"""Deterministic generator of small captioned scenes: the data of the ``micro`` protocol.

A *scene* is a 32×32 RGB image of ``count`` identical objects (one to four) on a textured background.
Every object of a scene shares its shape, colour, fill pattern and size; a lone object sits in one half of
the image (its *position*); several objects are laid out on a grid. The attributes are sampled
independently (they combine freely), except that an object colour is never drawn on the background it would
disappear on (green on grass, yellow on sand, blue on water, white on snow, red on bricks).

Everything is a pure function of a seed: :func:`sample_scenes` draws the attributes, :func:`render`
draws the pixels (vectorised over the batch, so pretraining can draw fresh scenes at every step) and
:func:`caption` writes a free-form description that mentions several attributes. The same seed gives the
same bytes. Bump :data:`GENERATOR_VERSION` whenever any of this changes what a seed produces.

Captions never contain a zero-shot *prompt* (a task template filled with one class name, e.g.
``"a photo of a red object"``): every caption names at least two adjectives before its noun, while a prompt
names exactly one attribute. See :func:`forbidden_phrases` and ``tests/test_micro_data.py``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch

GENERATOR_VERSION = 2
IMAGE_SIZE = 32

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring", "bar", "semicircle")
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.12, 0.12),
    "orange": (0.98, 0.55, 0.08),
    "yellow": (0.95, 0.88, 0.12),
    "green": (0.12, 0.72, 0.22),
    "blue": (0.14, 0.30, 0.92),
    "purple": (0.58, 0.18, 0.78),
    "white": (0.96, 0.96, 0.96),
}
PATTERNS = ("solid", "striped", "checkered", "dotted")
SIZES = ("small", "large")
COUNTS = ("one", "two", "three", "four")  # index i means i + 1 objects
POSITIONS = ("on the left", "on the right", "at the top", "at the bottom")  # only for a lone object
BACKGROUNDS: dict[str, tuple[float, float, float]] = {
    "grass": (0.28, 0.55, 0.22),
    "sand": (0.82, 0.72, 0.50),
    "water": (0.12, 0.38, 0.62),
    "snow": (0.90, 0.92, 0.95),
    "bricks": (0.62, 0.26, 0.18),
    "night": (0.04, 0.05, 0.15),
}
# colour a background hides: never drawn together
CONFLICTS = {"grass": "green", "sand": "yellow", "water": "blue", "snow": "white", "bricks": "red"}

# object half-extent in pixels
SIZE_RANGE = {"small": (4.0, 5.0), "large": (6.5, 7.0)}
P_LONE = 0.4  # probability that a pretraining scene holds a single object (which then has a position)

ATTRIBUTES = ("shape", "color", "pattern", "size", "count", "position", "background")
CLASSNAMES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "color": tuple(COLORS),
    "pattern": PATTERNS,
    "size": SIZES,
    "count": COUNTS,
    "position": POSITIONS,
    "background": tuple(BACKGROUNDS),
}


@dataclass
class Scenes:
    """Attributes of ``n`` scenes as class indices (``position`` is -1 where ``count`` > 1)."""

    shape: torch.Tensor
    color: torch.Tensor
    pattern: torch.Tensor
    size: torch.Tensor
    count: torch.Tensor  # index into COUNTS: number of objects - 1
    position: torch.Tensor
    background: torch.Tensor

    def __len__(self) -> int:
        return int(self.shape.shape[0])

    def row(self, i: int) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)[i]) for f in fields(self)}

    def label(self, attribute: str) -> torch.Tensor:
        return getattr(self, attribute)


def _conflict_table() -> torch.Tensor:
    """bool [n_backgrounds, n_colors]: True where the colour must not be drawn on that background."""
    t = torch.zeros(len(BACKGROUNDS), len(COLORS), dtype=torch.bool)
    for b, c in CONFLICTS.items():
        t[list(BACKGROUNDS).index(b), list(COLORS).index(c)] = True
    return t


def _balanced(n: int, k: int, g: torch.Generator) -> torch.Tensor:
    """``n`` labels in ``range(k)``, as equal as possible, in a seeded random order."""
    labels = torch.arange(n) % k
    return labels[torch.randperm(n, generator=g)]


def sample_scenes(n: int, g: torch.Generator, *, balanced: str | None = None,
                  fixed: Mapping[str, int] | None = None) -> Scenes:
    """Draw the attributes of ``n`` scenes.

    ``balanced`` names an attribute whose labels are made as equal as possible (a task's label);
    ``position`` forces lone objects and ``count`` is then uniform over one..four. ``fixed`` pins attributes.
    """
    fixed = dict(fixed or {})

    def draw(attr: str) -> torch.Tensor:
        k = len(CLASSNAMES[attr])
        if attr in fixed:
            return torch.full((n,), int(fixed[attr]), dtype=torch.long)
        if attr == balanced:
            return _balanced(n, k, g)
        return torch.randint(k, (n,), generator=g)

    shape, color, pattern, size = draw("shape"), draw("color"), draw("pattern"), draw("size")
    background = draw("background")
    # count: lone object with probability P_LONE, else two..four
    if "count" in fixed or balanced == "count":
        count = draw("count")
    elif balanced == "position" or "position" in fixed:
        count = torch.zeros(n, dtype=torch.long)
    else:
        lone = torch.rand(n, generator=g) < P_LONE
        count = torch.where(lone, torch.zeros(n, dtype=torch.long), 1 + torch.randint(3, (n,), generator=g))
    if balanced == "position":
        position = _balanced(n, len(POSITIONS), g)
    elif "position" in fixed:
        position = torch.full((n,), int(fixed["position"]), dtype=torch.long)
    else:
        position = torch.randint(len(POSITIONS), (n,), generator=g)
    position = torch.where(count == 0, position, torch.full_like(position, -1))

    # an object colour is never drawn on the background that hides it: redraw the free attribute of the two
    table = _conflict_table()
    keep_color = balanced == "color" or "color" in fixed
    for _ in range(100):
        bad = table[background, color]
        if not bad.any():
            break
        m = int(bad.sum())
        if keep_color:
            background[bad] = torch.randint(len(BACKGROUNDS), (m,), generator=g)
        else:
            color[bad] = torch.randint(len(COLORS), (m,), generator=g)
    if table[background, color].any():  # pragma: no cover - needs a conflicting `fixed`
        raise ValueError("fixed colour and background conflict")
    return Scenes(shape=shape, color=color, pattern=pattern, size=size, count=count, position=position,
                  background=background)


# attributes varied inside a pretraining group, and how often each is the one varied
GROUP_VARY = {"shape": 3.0, "pattern": 5.0, "position": 1.5, "count": 0.5, "size": 3.0, "color": 0.25,
              "background": 0.25}
GROUP_SIZE = 4
GROUP_FRACTION = 0.5


def sample_groups(n: int, g: torch.Generator, group_size: int = GROUP_SIZE,
                  group_fraction: float = GROUP_FRACTION) -> tuple[Scenes, list[str | None]]:
    """Pretraining scenes in groups of ``group_size`` that differ in exactly one attribute.

    A fraction ``group_fraction`` of the groups copies one random scene and gives its members distinct values
    of one attribute (drawn with the weights :data:`GROUP_VARY`), so a contrastive batch holds hard negatives
    for every attribute, not only for the easy ones (colour, background); the other groups are independent
    scenes. Returns the scenes and, per scene, the varied attribute (its caption must name it) or None.
    """
    base = sample_scenes(n, g)
    names = list(GROUP_VARY)
    weights = torch.tensor(list(GROUP_VARY.values()))
    n_groups = (n + group_size - 1) // group_size
    which = torch.multinomial(weights, n_groups, replacement=True, generator=g)
    table = _conflict_table()
    cols = {f.name: getattr(base, f.name).clone() for f in fields(Scenes)}
    varied: list[str | None] = []
    for gi in range(n_groups):
        lo, hi = gi * group_size, min(n, (gi + 1) * group_size)
        k = hi - lo
        if float(torch.rand(1, generator=g)) >= group_fraction:  # an ordinary group of independent scenes
            varied += [None] * k
            continue
        attr = names[int(which[gi])]
        for name in cols:  # members copy the group's first scene
            cols[name][lo:hi] = cols[name][lo]
        if attr == "color":
            allowed = (~table[cols["background"][lo]]).nonzero().squeeze(1)
        elif attr == "background":
            allowed = (~table[:, cols["color"][lo]]).nonzero().squeeze(1)
        else:
            allowed = torch.arange(len(CLASSNAMES[attr]))
        perm = allowed[torch.randperm(len(allowed), generator=g)]
        values = perm.repeat((k + len(perm) - 1) // len(perm))[:k]
        if attr == "position":
            cols["count"][lo:hi] = 0
        cols[attr][lo:hi] = values
        if attr == "count":
            lone_pos = int(torch.randint(len(POSITIONS), (1,), generator=g))
            cols["position"][lo:hi] = torch.where(values == 0, lone_pos, -1)
        varied += [attr] * k
    return Scenes(**cols), varied


# --- pixels --------------------------------------------------------------------------------------------------


def _uniform(n: int, lo: float | torch.Tensor, hi: float | torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _backgrounds(scenes: Scenes, g: torch.Generator, s: int) -> torch.Tensor:
    """float [B, 3, s, s] textured backgrounds."""
    n = len(scenes)
    ys, xs = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij")
    base = torch.tensor(list(BACKGROUNDS.values()))[scenes.background]  # [B,3]
    img = base[:, :, None, None].expand(n, 3, s, s).clone()
    names = list(BACKGROUNDS)
    # draw every random field for the whole batch (keeps the stream independent of the batch composition)
    fine = torch.randn(n, 1, s, s, generator=g)
    streaks = torch.randn(n, 1, s // 4 + 1, s, generator=g).repeat_interleave(4, dim=2)[:, :, :s]
    phase = 2 * math.pi * torch.rand(n, 1, 1, 1, generator=g)
    stars = torch.rand(n, 1, s, s, generator=g) < 0.03
    brick_off = torch.randint(0, 8, (n, 2), generator=g).float()
    brightness = _uniform(n, 0.9, 1.1, g).view(n, 1, 1, 1)

    def sel(name: str) -> torch.Tensor:
        return (scenes.background == names.index(name)).view(n, 1, 1, 1)

    grass = 0.05 * fine + 0.08 * streaks
    sand = 0.05 * fine
    waves = 0.07 * torch.sin(0.9 * ys + 1.8 * torch.sin(0.35 * xs) + phase) + 0.02 * fine
    snow = 0.03 * fine
    img = img + torch.where(sel("grass"), grass, 0) + torch.where(sel("sand"), sand, 0)
    img = img + torch.where(sel("water"), waves, 0) + torch.where(sel("snow"), snow, 0)
    # bricks: light mortar lines every 8 rows; vertical joints every 8 columns, shifted by 4 on alternate rows
    yy = (ys[None] + brick_off[:, 0, None, None]) % 16
    xx = (xs[None] + brick_off[:, 1, None, None] + torch.where(yy >= 8, 4.0, 0.0)) % 8
    mortar = ((yy % 8) < 1) | (xx < 1)
    mortar_col = torch.tensor([0.80, 0.78, 0.72]).view(1, 3, 1, 1)
    is_brick = sel("bricks") & mortar[:, None]
    img = torch.where(is_brick, mortar_col.expand_as(img), img + torch.where(sel("bricks"), 0.04 * fine, 0))
    star_col = torch.tensor([0.92, 0.92, 0.80]).view(1, 3, 1, 1)
    img = torch.where(sel("night") & stars, star_col.expand_as(img), img)
    return img * brightness


def _shape_masks(dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """bool [B, n_shapes, s, s] for offsets ``dx, dy`` [B, s, s] from the centres, half-extent ``r`` [B,1,1]."""
    d2 = dx * dx + dy * dy
    ax, ay = dx.abs(), dy.abs()
    masks = {
        "circle": d2 <= r * r,
        "square": (ax <= 0.85 * r) & (ay <= 0.85 * r),
        "triangle": (dy <= 0.8 * r) & (dy >= -r) & (ax <= (dy + r) * 0.6),
        "diamond": ax + ay <= r,
        "cross": ((ax <= 0.3 * r) & (ay <= r)) | ((ay <= 0.3 * r) & (ax <= r)),
        "ring": (d2 <= r * r) & (d2 >= (0.55 * r) ** 2),
        "bar": (ax <= r) & (ay <= 0.4 * r),
        "semicircle": (dx * dx + (dy - 0.4 * r) ** 2 <= r * r) & (dy <= 0.4 * r),
    }
    return torch.stack([masks[k] for k in SHAPES], dim=1)


def _layout(scenes: Scenes, r: torch.Tensor, g: torch.Generator, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Object centres cx, cy [B, 4] (pixel coordinates; slots beyond the count are unused)."""
    n = len(scenes)
    c = (s - 1) / 2
    # lone objects: in one half, the centre at least 5 px from the middle line along the position axis
    along = torch.rand(n, generator=g)
    across = _uniform(n, c - 5.0, c + 5.0, g)
    edge_lo = r - 0.5  # keeps the object inside the image
    low = edge_lo + ((c - 5.0) - edge_lo).clamp(min=0) * along
    high = (s - 1) - low
    pos = scenes.position.clamp(min=0)
    lone_x = torch.stack([low, high, across, across], 1).gather(1, pos[:, None]).squeeze(1)
    lone_y = torch.stack([across, across, low, high], 1).gather(1, pos[:, None]).squeeze(1)
    # several objects: distinct cells of a 2×2 grid, jittered inside the cell
    cells = torch.argsort(torch.rand(n, 4, generator=g), dim=1)
    jit = torch.rand(n, 4, 2, generator=g) * 2 - 1
    cell = s / 2
    gx = (cells % 2).float()
    gy = torch.div(cells, 2, rounding_mode="floor").float()
    slack = ((cell - 2 * r[:, None]) / 2 - 1.0).clamp(min=0)  # objects at least 2 px apart
    grid_x = (gx + 0.5) * cell - 0.5 + jit[..., 0] * slack
    grid_y = (gy + 0.5) * cell - 0.5 + jit[..., 1] * slack
    lone = (scenes.count == 0)[:, None]
    cx = torch.where(lone, lone_x[:, None].expand(n, 4), grid_x)
    cy = torch.where(lone, lone_y[:, None].expand(n, 4), grid_y)
    return cx, cy


def render(scenes: Scenes, g: torch.Generator, *, size: int = IMAGE_SIZE) -> torch.Tensor:
    """uint8 [B, 3, size, size] images of ``scenes``; deterministic given the generator state."""
    n, s = len(scenes), size
    if s != IMAGE_SIZE:
        raise ValueError(f"the micro scenes are drawn at {IMAGE_SIZE} px")
    img = _backgrounds(scenes, g, s)
    lo = torch.tensor([SIZE_RANGE[k][0] for k in SIZES])[scenes.size]
    hi = torch.tensor([SIZE_RANGE[k][1] for k in SIZES])[scenes.size]
    r = _uniform(n, lo, hi, g)
    cx, cy = _layout(scenes, r, g, s)
    col = torch.tensor(list(COLORS.values()))[scenes.color]
    col = (col * _uniform(n, 0.88, 1.04, g)[:, None] + 0.035 * torch.randn(n, 3, generator=g)).clamp(0, 1)
    dark = col * 0.35 + 0.02
    phase = torch.randint(0, 6, (n, 2), generator=g)
    ys, xs = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    px = xs[None] + phase[:, 0, None, None]
    py = ys[None] + phase[:, 1, None, None]
    # fill patterns at a 3-px scale (legible to the 8-px patches): solid, 3-px horizontal stripes, 3×3 checks,
    # 3×3 dots on a 6-px grid; a random phase per scene
    pattern_dark = torch.stack(
        [
            torch.zeros(n, s, s, dtype=torch.bool),
            (torch.div(py, 3, rounding_mode="floor") % 2) == 1,
            ((torch.div(px, 3, rounding_mode="floor") + torch.div(py, 3, rounding_mode="floor")) % 2) == 1,
            ((px % 6) < 3) & ((py % 6) < 3),
        ],
        dim=1,
    )
    dark_px = pattern_dark.gather(1, scenes.pattern.view(n, 1, 1, 1).expand(n, 1, s, s)).squeeze(1)
    fill = torch.where(dark_px[:, None], dark[:, :, None, None], col[:, :, None, None])  # [B,3,s,s]
    xf, yf = xs.float()[None], ys.float()[None]
    rr = r.view(n, 1, 1)
    obj = torch.zeros(n, s, s, dtype=torch.bool)
    for k in range(4):
        active = (scenes.count >= k).view(n, 1, 1)
        masks = _shape_masks(xf - cx[:, k, None, None], yf - cy[:, k, None, None], rr)
        m = masks.gather(1, scenes.shape.view(n, 1, 1, 1).expand(n, 1, s, s)).squeeze(1)
        obj |= m & active
    img = torch.where(obj[:, None], fill, img)
    img = img + 0.02 * torch.randn(img.shape, generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def object_masks(scenes: Scenes, g: torch.Generator, *, size: int = IMAGE_SIZE) -> torch.Tensor:
    """bool [B, size, size]: the object pixels :func:`render` draws with the same generator state (for tests)."""
    n, s = len(scenes), size
    _backgrounds(scenes, g, s)
    lo = torch.tensor([SIZE_RANGE[k][0] for k in SIZES])[scenes.size]
    hi = torch.tensor([SIZE_RANGE[k][1] for k in SIZES])[scenes.size]
    r = _uniform(n, lo, hi, g)
    cx, cy = _layout(scenes, r, g, s)
    ys, xs = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij")
    obj = torch.zeros(n, s, s, dtype=torch.bool)
    for k in range(4):
        active = (scenes.count >= k).view(n, 1, 1)
        masks = _shape_masks(xs[None] - cx[:, k, None, None], ys[None] - cy[:, k, None, None], r.view(n, 1, 1))
        obj |= masks.gather(1, scenes.shape.view(n, 1, 1, 1).expand(n, 1, s, s)).squeeze(1) & active
    return obj


# --- captions ------------------------------------------------------------------------------------------------

PREFIXES = ("", "", "", "a photo of ", "an image of ", "a picture of ", "a drawing of ", "a rendering of ")
_PLURAL = {"cross": "crosses"}
_COUNT_WORDS = {0: ("a", "one", "a single"), 1: ("two",), 2: ("three",), 3: ("four",)}
P_DROP = 0.3  # each optional attribute (size, pattern, colour, position, background) is left out this often


def _noun(shape: str, plural: bool) -> str:
    return (_PLURAL.get(shape, shape + "s")) if plural else shape


def caption(row: Mapping[str, int], rng: random.Random, keep: str | None = None) -> str:
    """A free-form description of one scene (attributes as class indices, see :meth:`Scenes.row`).

    It always names the shape and the count and at least two of the size, pattern and colour adjectives;
    the position (lone objects) and the background are each left out with probability :data:`P_DROP`,
    except the attribute ``keep``, which is always named.
    """
    shape = SHAPES[row["shape"]]
    n = row["count"]
    plural = n > 0
    adjs = {"size": SIZES[row["size"]], "pattern": PATTERNS[row["pattern"]], "color": list(COLORS)[row["color"]]}
    kept = [a for a in ("size", "pattern", "color") if rng.random() >= P_DROP or a == keep]
    while len(kept) < 2:
        a = rng.choice([a for a in ("size", "pattern", "color") if a not in kept])
        kept.append(a)
    kept.sort(key=("size", "pattern", "color").index)
    if rng.random() < 0.2:
        rng.shuffle(kept)
    words = [adjs[a] for a in kept]
    count = rng.choice(_COUNT_WORDS[n])
    pos = POSITIONS[row["position"]] if (row["position"] >= 0 and (rng.random() >= P_DROP or keep == "position")) else ""
    bg_name = list(BACKGROUNDS)[row["background"]]
    bg = ""
    if rng.random() >= P_DROP or keep == "background":
        bg = rng.choice((f"on {bg_name}", f"on a {bg_name} background", f"over {bg_name}", f"in front of {bg_name}"))
    prefix = rng.choice(PREFIXES)
    noun = _noun(shape, plural)
    form = rng.randrange(4)
    if form == 0:  # "two small striped circles on the left on grass"
        body = " ".join([count, *words, noun, pos, bg])
    elif form == 1:  # "grass background: two small striped circles"
        lead = f"{bg_name} background: " if bg else ""
        body = lead + " ".join([count, *words, noun, pos])
    elif form == 2:  # "two circles, small and striped, on grass"
        adj = " and ".join(words) if len(words) == 2 else f"{words[0]}, {words[1]} and {words[2]}"
        body = " ".join([f"{count} {noun}, {adj},", pos, bg])
        prefix = ""  # "a photo of a circle, ..." would contain the prompt of the shape task
    else:  # "two small striped objects shaped like circles on grass"
        thing = "objects" if plural else "object"
        body = " ".join([count, *words, thing, "shaped like", noun if plural else f"a {noun}", pos, bg])
    text = prefix + " ".join(body.split())
    return text.rstrip(",")


def captions(scenes: Scenes, seed: int, keep: list[str | None] | None = None) -> list[str]:
    """One caption per scene, seeded (``seed`` and the scene order fix the words); ``keep[i]`` is always named."""
    rng = random.Random(int(seed))
    return [caption(scenes.row(i), rng, keep[i] if keep else None) for i in range(len(scenes))]


def forbidden_phrases(prompts: Mapping[str, list[str]]) -> list[str]:
    """The zero-shot prompts (lower-case, no final full stop) that no pretraining caption may contain."""
    out = []
    for ps in prompts.values():
        out.extend(p.lower().rstrip(".").strip() for p in ps)
    return out
