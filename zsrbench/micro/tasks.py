"""The tasks of the ``micro`` protocol: one source task and held-out zero-shot tasks over generated scenes.

Each task asks about one attribute of a scene with one prompt template (see :data:`TASKS`). Its test set is a
fixed, seeded set of :data:`TEST_SIZE` scenes with balanced labels (other attributes random); the source task
(``micro_shape``, the Tiny-ImageNet of this protocol: fine-tuned on, reported as the first column) also has
a seeded ``train`` split of :data:`TRAIN_SIZE` scenes. Every task also has a larger ``check`` split
(:data:`CHECK_SIZE`, not used by the protocol) for measuring the model precisely. Nothing is downloaded:
sets are drawn on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import torch

from zsrbench.data.base import DatasetBuilder, DatasetInfo, EvalSet, TensorImageDataset
from zsrbench.errors import ZsrError
from zsrbench.micro import generator as G
from zsrbench.registry import DATASETS

# Sizes: 320 test scenes per task put the 95% interval of the held-out normalised average at about ±2.7 points
# (binomial variance of the version-2 models' AutoAttack accuracies); the protocol's "quick" subset (64 seeded
# scenes per task, what a bare `zsrbench run` evaluates) is about ±6. See the "Sizes" section of
# zsrbench.micro.protocol.
TEST_SIZE = 320  # per task: the protocol's fixed test sets (balanced labels); evaluated as one batch each
TRAIN_SIZE = 4096  # the source task's fine-tuning set
# A larger, separately seeded "check" split per task, outside the protocol: for measuring the model itself
# (the manifest's accuracies, the ε rule) with less noise than 64 images allow.
CHECK_SIZE = 400
CHECK_SEED_OFFSET = 50_000
SOURCE_TASK = "micro_shape"


@dataclass(frozen=True)
class Task:
    """One attribute asked with one template; ``classnames`` fill the template (index = attribute label)."""

    name: str
    title: str
    attribute: str
    classnames: tuple[str, ...]
    template: str
    seed: int  # test-set seed

    def prompts(self) -> list[str]:
        return [self.template.format(c) for c in self.classnames]


TASK_LIST = (
    Task("micro_shape", "Micro shape (source)", "shape", G.SHAPES, "a photo of a {}.", 1001),
    Task("micro_color", "Micro colour", "color", tuple(G.COLORS), "a photo of a {} object.", 1002),
    Task("micro_pattern", "Micro pattern", "pattern", G.PATTERNS, "a photo of a {} object.", 1003),
    Task("micro_count", "Micro count", "count", ("one object", "two objects", "three objects", "four objects"),
         "a photo of {}.", 1004),
    Task("micro_size", "Micro size", "size", G.SIZES, "a photo of a {} object.", 1005),
    Task("micro_position", "Micro position", "position", G.POSITIONS, "a photo of an object {}.", 1006),
    Task("micro_background", "Micro background", "background", tuple(G.BACKGROUNDS),
         "a photo of an object on {}.", 1007),
)
TASKS = {t.name: t for t in TASK_LIST}
HELD_OUT = tuple(t.name for t in TASK_LIST if t.name != SOURCE_TASK)
TRAIN_SEED = 2001


def task_info(task: Task) -> DatasetInfo:
    return DatasetInfo(
        name=task.name, title=task.title, classnames=task.classnames, templates=(task.template,),
        split="test", input_mode="native", native_size=G.IMAGE_SIZE,
    )


def split_spec(name: str, split: str = "test") -> tuple[int, int]:
    """(seed, size) of a task's split; raises :class:`ZsrError` for a split the task does not have."""
    task = TASKS[name]
    if split == "test":
        return task.seed, TEST_SIZE
    if split == "check":
        return task.seed + CHECK_SEED_OFFSET, CHECK_SIZE
    if split == "train" and name == SOURCE_TASK:
        return TRAIN_SEED, TRAIN_SIZE
    raise ZsrError(f"{name} has no '{split}' split; use " + ("'test', 'train' or 'check'." if name == SOURCE_TASK
                                                             else "'test' or 'check'."))


def generate_scenes(name: str, split: str = "test") -> G.Scenes:
    """The attributes behind :func:`generate_split` (all of them, not only the task's label)."""
    seed, n = split_spec(name, split)
    return G.sample_scenes(n, torch.Generator().manual_seed(seed), balanced=TASKS[name].attribute)


@lru_cache(maxsize=32)
def generate_split(name: str, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images N×3×32×32, labels) of a task's split; the same seed gives the same bytes."""
    seed, n = split_spec(name, split)
    g = torch.Generator().manual_seed(seed)
    scenes = G.sample_scenes(n, g, balanced=TASKS[name].attribute)
    images = G.render(scenes, g)
    return images, scenes.label(TASKS[name].attribute).clone()


def _builder(task: Task) -> DatasetBuilder:
    info = task_info(task)

    def build(root: Any = None, *, image_size: int = 224, download: bool = False, split: str = "test",
              **_: Any) -> EvalSet:
        seed, _n = split_spec(task.name, split)
        images, labels = generate_split(task.name, split)
        ds_info = info if split == "test" else replace(info, split=split)
        return EvalSet(
            info=ds_info, dataset=TensorImageDataset(images, labels),
            extra={"generator": "zsrbench.micro", "generator_version": G.GENERATOR_VERSION,
                   "seed": seed, "n": int(labels.shape[0]), "attribute": task.attribute},
        )

    splits = f"test ({TEST_SIZE})" + (f", train ({TRAIN_SIZE})" if task.name == SOURCE_TASK else "")
    return DatasetBuilder(
        info=info, build_fn=build, needs_root=False,
        description=f"micro: {task.attribute} of generated 32 px scenes, {len(task.classnames)} classes, {splits}",
        how_to_obtain="generated by zsrbench (zsrbench.micro); nothing to download",
    )


for _task in TASK_LIST:
    DATASETS.add(_task.name, _builder(_task))


def all_prompts() -> dict[str, list[str]]:
    return {t.name: t.prompts() for t in TASK_LIST}


def held_out_prompts() -> dict[str, list[str]]:
    return {t.name: t.prompts() for t in TASK_LIST if t.name in HELD_OUT}


def normalised(acc: float, num_classes: int) -> float:
    """``(acc − chance) / (1 − chance)``: 0 at chance, 1 when perfect."""
    chance = 1.0 / num_classes
    return (acc - chance) / (1.0 - chance)
