"""`zsrbench attention`: text-guided attention maps of the base CLIP and of defenses, clean and under attack, as a
figure; and the attention shift ``‖A(x′) − A(x)‖₂`` per model and dataset, recorded under the results folder.

Models are loaded exactly as ``zsrbench run`` loads them (:func:`zsrbench.evaluation.model.prepare_model`: trainable
defenses of a protocol that allows it are fine-tuned on demand and cached); the frozen base CLIP is the
protocol's undefended model (``Protocol.base_model``, loaded with the protocol's defaults, as the audit's
transfer check loads it). Each model is attacked white-box: ``x′`` is the chosen attack (the registry's, with
the protocol's parameters and ε, seeded per batch as the runner seeds it) against that model's classifier as
``Defense.wrap_classifier`` gives it.

The maps are those of :mod:`zsrbench.defenses.attention` for the true class, guided by the class embedding of
the zero-shot head (the dataset's own prompts): per-image min-max normalised over the patches, bilinear to
224×224. Comp-TGA also gets its non-class map (its ``nonclass_template`` for the true class) and the
complementary map ``A_class ⊙ (1 − A_nonclass)``.

Samples: ``n_shift`` seeded images of the dataset's test set (:func:`zsrbench.data.base.select_indices`) give the
shift; the ``n_images`` drawn are the seeded subset of the same seed, which lies inside them (the first
``n_images`` of the same permutation), so the figure shows maps of the same computation and the shift does not
depend on how many images are drawn.

The command's parts: the checked request (:mod:`.attention_plan`), the models (:mod:`.attention_models`), the
maps of a batch (:mod:`.attention_maps`), measuring a model (:mod:`.attention_measure`), its record
(:mod:`.attention_record`) and the figure (:mod:`.attention_figure`); here they run in order.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from zsrbench.attacks.base import eps_text
from zsrbench.figures.attention_figure import draw_attention
from zsrbench.figures.attention_measure import AttentionResult, ModelMaps, measure
from zsrbench.figures.attention_models import load_models
from zsrbench.figures.attention_plan import AttentionConfig, make_attention_plan
from zsrbench.figures.attention_record import shift_record
from zsrbench.figures.output import figure_files, write_files
from zsrbench.leaderboard.shift_record import shift_path, to_json


def run_attention(cfg: AttentionConfig, *, log: Callable[[str], None] | None = None,
                  progress: bool = False) -> AttentionResult:
    """Measure and draw: load the models, attack each on the seeded images, compute their maps and shifts, then
    write the records (unless ``cfg.results_dir`` is None) and the figure files, all or nothing."""
    from zsrbench.data.base import select_indices
    from zsrbench.registry import DATASETS
    from zsrbench.evaluation.config import set_matmul_precision

    plan = make_attention_plan(cfg)
    set_matmul_precision("fp32")
    loaded, notes = load_models(plan, log, progress)
    builder = DATASETS.get(plan.dataset)
    evalsets: dict[int, Any] = {}
    first = None
    models: list[ModelMaps] = []
    base_id = next((m.model_id for m in loaded if m.is_base), None)
    indices: list[int] = []
    drawn: list[int] = []
    for m in loaded:
        size = m.parts.image_size
        if size not in evalsets:
            evalsets[size] = builder.build(cfg.data_root, image_size=size, download=cfg.download)
        evalset = evalsets[size]
        if first is None:
            first = evalset
        indices = select_indices(len(evalset), cfg.n_shift, plan.seed)
        drawn = select_indices(len(evalset), min(cfg.n_images, len(indices)), plan.seed)
        if log:
            log(f"{m.label}: {plan.spec.name} ε={eps_text(plan.eps)} on {len(indices)} images of {plan.dataset}")
        t0 = time.perf_counter()
        maps, head_info = measure(plan, m, evalset, indices, drawn)
        if cfg.results_dir is not None:
            maps.record = shift_record(plan, m, maps, evalset, indices, head_info, base_id, time.perf_counter() - t0)
            maps.path = shift_path(cfg.results_dir, maps.record)
        models.append(maps)
    result = AttentionResult(plan=plan, models=models, shift_indices=list(indices), drawn_indices=list(drawn),
                             notes=notes)
    files = [(mm.path, to_json(mm.record)) for mm in models if mm.record is not None and mm.path is not None]
    if plan.outputs:
        assert first is not None
        fig = draw_attention(result, first)
        files += figure_files(fig, plan.outputs)
    write_files(files, option="--out" if plan.outputs else "--results-dir")
    result.figures = [o.path for o in plan.outputs]
    return result
