"""What every evaluation dataset provides: images in [0,1], labels, class names, prompts, input handling."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

# How a dataset's images reach the model:
#  "native": kept at their own resolution; the classifier upsamples them (bicubic, differentiably) inside.
#  "crop":   Resize(256/224 * S) + CenterCrop(S) before the attack, S = the model's input size (224 for CLIP).
INPUT_MODES = ("native", "crop")


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset as a protocol uses it."""

    name: str  # registry key, e.g. "cifar10"
    title: str  # human name, e.g. "CIFAR-10"
    classnames: tuple[str, ...]
    templates: tuple[str, ...] = ("This is a photo of a {}",)
    split: str = "test"
    input_mode: str = "crop"
    # One fixed prompt per class instead of templates (PCAM); when set, templates are not used.
    fixed_prompts: tuple[str, ...] | None = None
    native_size: int | None = None  # pixels, for "native" datasets
    # The class count the protocol fixes, for datasets whose names are only read from disk at build time.
    expected_classes: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classnames) or (self.expected_classes or 0)

    def prompts(self) -> list[list[str]]:
        """The text prompts of each class (a list of prompts per class, averaged into the text head)."""
        if self.fixed_prompts is not None:
            return [[p] for p in self.fixed_prompts]
        return [[t.format(c) for t in self.templates] for c in self.classnames]

    def templates_digest(self) -> str:
        return digest_json(self.prompts())


@dataclass
class EvalSet:
    """A dataset ready for evaluation: ``dataset[i]`` is ``(image tensor CxHxW in [0,1], int label)``.

    ``skipped``: the image files left out because they cannot be decoded (``build(..., skip_broken=True)``);
    empty otherwise. ``len`` counts the images kept.
    """

    info: DatasetInfo
    dataset: Dataset
    root: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]


def digest_json(obj: Any) -> str:
    """sha256 of a canonical JSON encoding, as ``sha256:<hex>``."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def select_indices(n_total: int, n_samples: int | None, seed: int) -> list[int]:
    """Seeded fixed subset of ``range(n_total)`` (sorted), or all indices when ``n_samples`` is None."""
    if n_samples is None or n_samples >= n_total:
        return list(range(n_total))
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n_total, generator=g)[:n_samples]
    return sorted(int(i) for i in perm)


def indices_digest(indices: Sequence[int]) -> str:
    return digest_json(list(int(i) for i in indices))


def eval_transform(input_mode: str, image_size: int) -> Callable[[Any], torch.Tensor]:
    """PIL image -> float tensor in [0,1], with the protocol's input handling."""
    from torchvision import transforms as T

    if input_mode == "native":
        return T.Compose([T.Lambda(lambda im: im.convert("RGB")), T.ToTensor()])
    if input_mode == "crop":
        resize = round(image_size * 256 / 224)
        return T.Compose(
            [
                T.Lambda(lambda im: im.convert("RGB")),
                T.Resize(resize, interpolation=T.InterpolationMode.BICUBIC),
                T.CenterCrop(image_size),
                T.ToTensor(),
            ]
        )
    raise ValueError(f"input_mode must be one of {INPUT_MODES}, got {input_mode!r}")


class TensorImageDataset(Dataset):
    """Images already in memory as a uint8 or float tensor N×C×H×W, with integer labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        self.images = images.contiguous()
        self.labels = labels.long()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


@dataclass(frozen=True)
class DatasetBuilder:
    """A registered dataset: its info and a function that builds the :class:`EvalSet`.

    ``build(root, image_size=..., download=..., split=..., skip_broken=...)`` reads the data from ``root`` (a
    path or None for generated data) and raises :class:`zsrbench.errors.ZsrError` naming the expected path when
    it is missing. With ``skip_broken=True`` a dataset read from image files decodes every image once and leaves
    out those that cannot be decoded, listing them in ``EvalSet.skipped`` (generated data ignores it).
    """

    info: DatasetInfo
    build_fn: Callable[..., EvalSet]
    description: str = ""
    needs_root: bool = True
    how_to_obtain: str = ""

    def build(self, root: str | Path | None, *, image_size: int = 224, download: bool = False, **kw: Any) -> EvalSet:
        return self.build_fn(root, image_size=image_size, download=download, **kw)
