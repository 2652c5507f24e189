"""The figure of `zsrbench attention`, drawn with matplotlib: per drawn image a row with the image, then per
model its adversarial image and its maps on the clean and the adversarial image, overlaid on one colour scale,
with a caption stating the map definition, the mean shifts and the models' ids."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from zsrbench.attacks.base import eps_text
from zsrbench.figures.attention_maps import MAP_SIZE
from zsrbench.figures.attention_measure import AttentionResult, ModelMaps
from zsrbench.figures.output import new_figure
from zsrbench.figures.shift import summarise

OVERLAY_ALPHA = 0.5
CMAP = "jet"
KIND_TITLES = {"class": "A", "nonclass": "A_non", "comp": "A_comp"}


def _image(a: np.ndarray) -> np.ndarray:
    """[3, H, W] in [0, 1] → [H, W, 3] for imshow."""
    return np.clip(np.transpose(np.asarray(a, dtype=np.float32), (1, 2, 0)), 0.0, 1.0)


def _tile(ax: Any, image: np.ndarray, overlay: np.ndarray | None = None) -> None:
    s = MAP_SIZE
    ax.imshow(_image(image), extent=(0, s, s, 0), interpolation="bilinear")
    if overlay is not None:
        ax.imshow(overlay, extent=(0, s, s, 0), cmap=CMAP, vmin=0.0, vmax=1.0, alpha=OVERLAY_ALPHA,
                  interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlim(0, s)
    ax.set_ylim(s, 0)


def _corner(ax: Any, text: str, *, top: bool = False) -> None:
    ax.text(0.03, 0.97 if top else 0.03, text, transform=ax.transAxes, fontsize=6.5,
            va="top" if top else "bottom", ha="left",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.85, "linewidth": 0})


def _columns(models: Sequence[ModelMaps]) -> list[tuple[ModelMaps, str, str | None]]:
    """(model, "x_adv" | "clean" | "adv", map kind) per figure column after the image column."""
    cols: list[tuple[ModelMaps, str, str | None]] = []
    for m in models:
        cols.append((m, "x_adv", None))
        for kind in m.kinds:
            cols += [(m, "clean", kind), (m, "adv", kind)]
    return cols


def draw_attention(result: AttentionResult, evalset: Any):
    """The figure: per drawn image a row with the image, then per model its adversarial image and its maps on
    the clean and on the adversarial image (overlaid), one shared colour scale."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    plan, models = result.plan, result.models
    names = evalset.info.classnames
    drawn = result.drawn_indices
    cols = _columns(models)
    n_rows, n_cols = len(drawn), 1 + len(cols)
    width = 1.45 * n_cols + 0.9
    lines = _footer(result, width)
    height = 1.5 * n_rows + 0.8 + 0.12 * len(lines)
    fig = new_figure(width, height)
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.75 / width, top=1 - 0.55 / height,
                        bottom=(0.1 + 0.12 * len(lines)) / height, wspace=0.06, hspace=0.12)
    where = {int(i): k for k, i in enumerate(result.shift_indices)}
    for r, idx in enumerate(drawn):
        x, y = evalset.dataset[idx]
        x = np.asarray(torch.as_tensor(x).float())
        truth = names[int(y)]
        _tile(axes[r, 0], x)
        axes[r, 0].set_ylabel(f"#{idx}\n{truth}", fontsize=7)
        for c, (m, what, kind) in enumerate(cols, start=1):
            ax = axes[r, c]
            if what == "x_adv":
                _tile(ax, m.x_adv[r])
                ok = int(m.pred_adv[r]) == int(y)
                _corner(ax, f"→ {names[int(m.pred_adv[r])]} {'✓' if ok else '✗'}")
                continue
            _tile(ax, x if what == "clean" else m.x_adv[r], (m.clean if what == "clean" else m.adv)[kind][r])
            if what == "adv" and kind in m.shifts:
                _corner(ax, f"Δ = {m.shifts[kind][where[int(idx)]]:.1f}")
    axes[0, 0].set_title("image x", fontsize=7.5)
    for c, (m, what, kind) in enumerate(cols, start=1):
        head = "x′ (attack on it)" if what == "x_adv" else \
            f"{KIND_TITLES[kind or 'class']}({'x' if what == 'clean' else 'x′'})"
        axes[0, c].set_title(f"{m.label}\n{head}", fontsize=7.5)
    cax = fig.add_axes((1 - 0.62 / width, 0.2, 0.1 / width, 0.6))
    bar = fig.colorbar(ScalarMappable(norm=Normalize(0.0, 1.0), cmap=colormaps[CMAP]), cax=cax)
    bar.set_label("attention (min-max normalised: 0 least, 1 most)", fontsize=7)
    bar.ax.tick_params(labelsize=6.5)
    p = plan.protocol
    fig.suptitle(f"Text-guided attention of the true class · {p.name} v{p.version} · {plan.dataset} · "
                 f"{plan.spec.name} ε = {eps_text(plan.eps)} (x′: white-box against each model)", fontsize=9,
                 y=1 - 0.12 / height, va="top")
    fig.text(0.6 / width, 0.05 / height, "\n".join(lines), fontsize=6.5, ha="left", va="bottom")
    return fig


def _footer(result: AttentionResult, width: float) -> list[str]:
    """The figure's caption lines (map definition, mean shifts, model ids), wrapped to the figure's width."""
    import textwrap

    plan, models = result.plan, result.models
    n = len(result.shift_indices)

    def mean(m: ModelMaps, kind: str) -> str:
        s = summarise(m.shifts[kind])
        return f"{s.mean:.2f}" + (f" ± {s.se:.2f}" if s.se is not None else "")

    means = "; ".join(f"{m.label} {mean(m, 'class')}" + (f" (A_comp {mean(m, 'comp')})" if "comp" in m.shifts else "")
                      for m in models)
    comp = any("comp" in m.shifts for m in models)
    text = [f"Maps: {plan.cfg.norm} normalisation, min-max over the patches, bilinear to {MAP_SIZE}×{MAP_SIZE}, "
            f"overlaid at α = {OVERLAY_ALPHA}; A: guided by the true class's prompt of the zero-shot head"
            + ("; A_non: by the non-class prompt; A_comp = A ⊙ (1 − A_non)" if comp else "")
            + ". Δ = ‖A(x′) − A(x)‖₂ of that image; → the prediction on x′ (✓ still correct).",
            f"Mean shift ± s.e. over {n} seeded images: {means}.",
            "Models: " + "; ".join(f"{m.label} = {m.model_id}" for m in models) + "."]
    chars = max(60, int((width - 1.0) * 22))
    return [line for t in text for line in textwrap.wrap(t, chars)]
