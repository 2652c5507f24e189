"""An exact speed-up of attacks on ViT CLIPs: the input gradient of the patch embedding as one matrix product.

A ViT's patch embedding is a convolution whose stride equals its kernel (no padding, no bias): every input pixel
feeds exactly one output position, so its input gradient is ``grad_out @ W`` rearranged into image patches. On CPU
the general convolution backward computes the same sums several times slower (for the micro CLIP, 9.6 ms against
1.7 ms for a batch of 64, forward included). The matrix product is used only where it gives the very same bits as
the convolution backward: the first time a shape is seen, both are computed on a seeded random gradient and
compared; where they differ (e.g. ViT-B/32 on CPU, or another kernel on a GPU), the convolution backward is used
for that shape. Outputs (the forward pass) are the convolution's own, always.

It takes part only in an attack's input gradient: not when the weights need a gradient (training), under autocast,
or for inputs that are not float32.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


def patch_gradient(grad_out: torch.Tensor, weight: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The input gradient of ``conv2d(x, weight, stride=kernel)`` for ``x`` of ``height × width``, as a matmul."""
    b, c, h, w = grad_out.shape
    k_h, k_w = weight.shape[-2:]
    flat = grad_out.permute(0, 2, 3, 1).reshape(b * h * w, c) @ weight.reshape(c, -1)
    image = flat.view(b, h, w, weight.shape[1], k_h, k_w).permute(0, 3, 1, 4, 2, 5)
    image = image.reshape(b, weight.shape[1], h * k_h, w * k_w)
    if h * k_h != height or w * k_w != width:  # rows and columns the convolution never reads
        image = F.pad(image, (0, width - w * k_w, 0, height - h * k_h))
    return image


def _conv_input_grad(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                     stride: tuple[int, int]) -> torch.Tensor:
    """The input gradient as autograd computes it for ``conv2d(x, weight, stride=stride)``."""
    return torch.ops.aten.convolution_backward(grad_out, x, weight, None, list(stride), [0, 0], [1, 1], False,
                                               [0, 0], 1, [True, False, False])[0]


class _PatchGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, module: "PatchEmbedConv") -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.module = module
        return F.conv2d(x, weight, None, module.stride)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        x, weight = ctx.saved_tensors
        module: PatchEmbedConv = ctx.module
        if module.exact_for(grad_out, x, weight):
            return patch_gradient(grad_out, weight, x.shape[-2], x.shape[-1]), None, None
        return _conv_input_grad(grad_out.contiguous(), x, weight, module.stride), None, None


class PatchEmbedConv(nn.Conv2d):
    """``nn.Conv2d`` with stride = kernel whose input gradient is a matrix product where that is bit-identical."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._exact: dict[tuple, bool] = {}

    def exact_for(self, grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> bool:
        """Whether the matmul gives the convolution backward's bits for this shape (checked once per shape)."""
        key = (tuple(grad_out.shape), tuple(x.shape), grad_out.dtype, str(grad_out.device))
        if key not in self._exact:
            gen = torch.Generator(device=grad_out.device).manual_seed(0)
            probe = torch.randn(grad_out.shape, generator=gen, device=grad_out.device, dtype=grad_out.dtype)
            self._exact[key] = torch.equal(_conv_input_grad(probe, x, weight, self.stride),
                                           patch_gradient(probe, weight, x.shape[-2], x.shape[-1]))
        return self._exact[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.weight.requires_grad or not x.requires_grad or x.dtype != torch.float32
                or self.weight.dtype != torch.float32 or torch.is_autocast_enabled(x.device.type)):
            return super().forward(x)
        return _PatchGrad.apply(x, self.weight, self)


def is_patch_embedding(conv: Any) -> bool:
    """A plain 2-D convolution with stride = kernel, no padding, dilation or groups, and no bias."""
    return (type(conv) is nn.Conv2d and tuple(conv.stride) == tuple(conv.kernel_size) and conv.bias is None
            and tuple(conv.dilation) == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and tuple(conv.padding) == (0, 0))


def exact_patch_gradient(visual: nn.Module) -> bool:
    """Give ``visual``'s patch embedding (``visual.conv1`` of an open_clip ViT) the matmul input gradient; its
    weight stays the same tensor (state dict and digests unchanged). True when it was (or already is) in place."""
    conv = getattr(visual, "conv1", None)
    if isinstance(conv, PatchEmbedConv):
        return True
    if not is_patch_embedding(conv):
        return False
    fast = PatchEmbedConv(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, bias=False,
                          device="meta")
    fast.weight = conv.weight
    fast.train(conv.training)
    visual.conv1 = fast
    return True


def plain_patch_embedding(visual: nn.Module) -> None:
    """Undo :func:`exact_patch_gradient`: open_clip's own ``nn.Conv2d`` over the same weight tensor."""
    conv = getattr(visual, "conv1", None)
    if isinstance(conv, PatchEmbedConv):
        plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, bias=False,
                          device="meta")
        plain.weight = conv.weight
        plain.train(conv.training)
        visual.conv1 = plain
