"""The order training images reach the model: one seeded permutation per epoch (independent of every global RNG,
so a resumed run continues exactly), and the transform from a dataset's images to [0,1] tensors."""

from __future__ import annotations

from typing import Any, Callable

import torch

from zsrbench.errors import ZsrError


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The seeded permutation of epoch ``epoch`` (independent of any global RNG, so resumable)."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g)


def batches_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


class _IndexedDataset(torch.utils.data.Dataset):
    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, y = self.dataset[i][:2]
        return x, y, i


def epoch_loader(dataset: Any, order: torch.Tensor, batch_size: int, start_batch: int, n_batches: int,
                  num_workers: int, pin: bool):
    batches = [order[b * batch_size:(b + 1) * batch_size].tolist() for b in range(start_batch, n_batches)]
    # its own generator: creating the iterator must not consume the global RNG (saved in checkpoints)
    gen = torch.Generator().manual_seed(int(order[0]) * 7 + start_batch)
    return torch.utils.data.DataLoader(_IndexedDataset(dataset), batch_sampler=batches, num_workers=num_workers,
                                       pin_memory=pin, generator=gen)


class _ToRGB:
    def __call__(self, im: Any) -> Any:
        return im.convert("RGB")


def train_transform(kind: str, size: int) -> Callable[[Any], torch.Tensor] | None:
    """PIL → [0,1] tensor for the training set (``TrainHparams.train_input``); None: the dataset's own."""
    if kind == "dataset":
        return None
    from torchvision import transforms as T

    if kind == "resize256-crop":  # torchvision's default (bilinear) Resize, as the TeCoA-family code
        resize = T.Resize(round(size * 256 / 224))
    elif kind == "resize-crop":  # open_clip's preprocessing (bicubic), as RobustVLM
        resize = T.Resize(size, interpolation=T.InterpolationMode.BICUBIC)
    else:
        raise ZsrError(f"Unknown train_input {kind!r}.")
    return T.Compose([_ToRGB(), resize, T.CenterCrop(size), T.ToTensor()])
