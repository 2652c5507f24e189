"""An exact speed-up of a ViT's attention: ``nn.MultiheadAttention``'s batch-first self-attention without its copies.

torch's general (not fused) path of ``nn.MultiheadAttention`` with ``batch_first`` turns the batch to sequence-first,
copies it contiguous for the input projection, copies the projection again to split q, k and v, and copies the
heads back before the output projection: on the micro CLIP those copies are about 15% of a forward pass. The same
products can be taken on the batch-first tensor itself (one projection, q, k and v as views of it, one copy to
merge the heads): every matrix row and every attention head is the same arithmetic on the same numbers, only in
another order in memory. Whether the bits agree is not assumed: the first time a shape is seen (with the grad
mode, the thread count, dtype and device), both paths run on a seeded random input (and, where the input needs a
gradient, a seeded random output gradient) and the outputs (and input gradients) are compared with
``torch.equal``; where they differ (batches of 2–3 images take another GEMM path on CPU; torch's fused fast path
of an even head count) the module's own forward serves that shape. On the micro CLIP (one core): 1.2–1.3× for
4–8 images and 1.08–1.14× for 19–64, forward and forward with input gradient alike.

It serves only self-attention without masks or weights, in eval mode (or without dropout), with the parameters'
``requires_grad`` off (an attack's input gradient: a weight gradient would sum the rows in another order), and
without autocast; anything else runs ``nn.MultiheadAttention.forward``. The module keeps the very parameter
tensors (state dict and digests unchanged).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

PROBE_SEED = 0


def direct_attention(m: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """Self-attention of batch-first ``x`` [N, L, E] with ``m``'s weights, q, k and v as views of one projection."""
    n, length, e = x.shape
    proj = F.linear(x, m.in_proj_weight, m.in_proj_bias)
    q, k, v = proj.view(n, length, 3, m.num_heads, e // m.num_heads).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v)
    out = out.transpose(1, 2).reshape(n * length, e)
    return F.linear(out, m.out_proj.weight, m.out_proj.bias).view(n, length, e)


class DirectAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose batch-first self-attention skips the layout copies where bit-identical."""

    _exact: dict[tuple, bool]

    def applicable(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_padding_mask: Any,
                   need_weights: bool, attn_mask: Any, is_causal: bool) -> bool:
        return (query is key is value and query.dim() == 3 and self.batch_first and self._qkv_same_embed_dim
                and key_padding_mask is None and attn_mask is None and not need_weights and not is_causal
                and self.in_proj_bias is not None and self.bias_k is None and not self.add_zero_attn
                and (self.dropout == 0.0 or not self.training) and not self.in_proj_weight.requires_grad
                and not self.out_proj.weight.requires_grad and not torch.is_autocast_enabled(query.device.type))

    def exact_for(self, x: torch.Tensor) -> bool:
        """Whether the direct path gives this module's own bits for ``x``'s shape (checked once per shape)."""
        grad = torch.is_grad_enabled() and x.requires_grad
        key = (tuple(x.shape), tuple(x.stride()), x.dtype, str(x.device), grad, torch.get_num_threads())
        if key not in self._exact:
            self._exact[key] = self._probe(x, grad)
        return self._exact[key]

    def _probe(self, x: torch.Tensor, grad: bool) -> bool:
        gen = torch.Generator(device=x.device).manual_seed(PROBE_SEED)
        probe = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        probe = torch.empty_strided(x.shape, x.stride(), device=x.device, dtype=x.dtype).copy_(probe)
        if not grad:
            with torch.no_grad():
                own = super().forward(probe, probe, probe, need_weights=False)[0]
                return torch.equal(own, direct_attention(self, probe))
        g_out = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        with torch.enable_grad():
            a = probe.clone().requires_grad_(True)
            own = super().forward(a, a, a, need_weights=False)[0]
            (g_own,) = torch.autograd.grad(own, a, g_out)
            b = probe.clone().requires_grad_(True)
            direct = direct_attention(self, b)
            (g_direct,) = torch.autograd.grad(direct, b, g_out)
        return torch.equal(own, direct) and torch.equal(g_own, g_direct)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_padding_mask: Any = None,
                need_weights: bool = True, attn_mask: Any = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if (self.applicable(query, key, value, key_padding_mask, need_weights, attn_mask, is_causal)
                and self.exact_for(query)):
            return direct_attention(self, query), None
        return super().forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                               attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal)


def _blocks(visual: nn.Module) -> list[nn.Module]:
    return list(getattr(getattr(visual, "transformer", None), "resblocks", None) or [])


def _swap(attn: nn.MultiheadAttention, cls: type) -> nn.MultiheadAttention:
    """An instance of ``cls`` holding ``attn``'s very parameters and settings."""
    new = cls.__new__(cls)
    new.__dict__.update(attn.__dict__)  # parameters, submodules, settings: the same objects
    if cls is DirectAttention:
        new._exact = {}
    else:
        new.__dict__.pop("_exact", None)
    return new


def exact_attention(visual: nn.Module) -> int:
    """Give ``visual``'s attention blocks (an open_clip ViT's ``transformer.resblocks[i].attn``) the direct path;
    the number of blocks that have it."""
    count = 0
    for block in _blocks(visual):
        attn = getattr(block, "attn", None)
        if type(attn) is nn.MultiheadAttention:
            block.attn = _swap(attn, DirectAttention)
        count += isinstance(getattr(block, "attn", None), DirectAttention)
    return count


def plain_attention(visual: nn.Module) -> None:
    """Undo :func:`exact_attention`: torch's own ``nn.MultiheadAttention`` over the same parameters."""
    for block in _blocks(visual):
        attn = getattr(block, "attn", None)
        if isinstance(attn, DirectAttention):
            block.attn = _swap(attn, nn.MultiheadAttention)
