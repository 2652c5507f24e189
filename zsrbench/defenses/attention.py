"""Text-guided attention maps (TGA-ZSR, Comp-TGA): pure functions of token features and text embeddings.

As the official TGA-ZSR code computes it (spec §5):

1. ``F = ln_post(all tokens) @ proj`` → [B, 1+P, D] (CLS first). open_clip returns the CLS token projected
   (the pooled embedding) and the patch tokens unprojected; :func:`projected_tokens` joins the two from ONE
   forward pass of :meth:`zsrbench.models.ZeroShotClassifier.features`.
2. ``F / ‖F‖`` over the **token axis** (dim=1, CLS included), per channel — the official code's quirk and the
   default (``norm="token_axis"``); ``norm="per_token"`` normalises each token over channels (dim=-1), the
   obvious reading of the paper.
3. ``a = F[:, 1:] @ t_y`` → [B, P].
4. min-max per image over the P patches (a constant map becomes 0 instead of NaN).
5. reshape √P×√P (row-major), bilinear upsample (``align_corners=False``) to 224×224, flatten: the official
   code's fixed size whatever the model's input size (the loss weights α, β are calibrated at that scale);
   the defenses' ``attention_size`` hyper-parameter sets another size.

Comp-TGA's complementary map ``A_class ⊙ (1 − A_nonclass)``: both maps from the same patch features, each
min-max normalised before upsampling, the product taken after upsampling, no re-normalisation.

The training losses never materialise the 224×224 maps. Bilinear upsampling is linear, so for TGA-ZSR
``‖U(a − b)‖₂ = sqrt((a − b)ᵀ UᵀU (a − b))`` with a fixed P×P matrix (:func:`upsampled_l2`). Comp-TGA's product
is not linear, but inside each cell of the patch grid an upsampled map is bilinear in the pixel's position, the
product biquadratic and its squared difference biquartic, so the sum over a cell's pixels needs only the sums
of the first powers of the interpolation weights (:func:`product_upsampled_l2`, exact as well).

All maps are computed in float32 whatever the autocast state (the maps are small; fp16 min-max is lossy).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from zsrbench.errors import ZsrError

NORMS = ("token_axis", "per_token")
MINMAX_EPS = 1e-12


def projected_tokens(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(image embedding [B, D] unnormalised, ``ln_post(tokens) @ proj`` [B, 1+P, D] with CLS first).

    One forward pass. For open_clip's VisionTransformer with CLS pooling the pooled embedding *is*
    ``ln_post(CLS) @ proj``, so it is the first row of F.
    """
    v = model.visual
    if getattr(v, "attn_pool", None) is not None or getattr(v, "final_ln_after_pool", False) \
            or getattr(v, "pool_type", "tok") != "tok":
        raise ZsrError(
            "Text-guided attention needs a ViT with CLS-token pooling (open_clip pool_type='tok', no attention "
            "pooling); this visual encoder pools differently."
        )
    emb, tokens = model.features(x)
    if tokens is None:
        raise ZsrError("Text-guided attention needs a ViT visual encoder that returns its patch tokens.")
    return emb, torch.cat([emb[:, None, :], tokens], dim=1)


def normalise_tokens(feats: torch.Tensor, norm: str = "token_axis") -> torch.Tensor:
    if norm == "token_axis":
        return feats / feats.norm(dim=1, keepdim=True)
    if norm == "per_token":
        return feats / feats.norm(dim=-1, keepdim=True)
    raise ZsrError(f"attention normalisation must be one of {NORMS}, got {norm!r}.")


def patch_scores(feats: torch.Tensor, text: torch.Tensor, norm: str = "token_axis") -> torch.Tensor:
    """Raw text-guided scores ``a`` [B, P]: normalised patch features (CLS dropped after normalising) · text."""
    with torch.autocast(feats.device.type, enabled=False):  # fp32 even inside the training loop's autocast
        f = normalise_tokens(feats.float(), norm)
        return torch.einsum("bpd,bd->bp", f[:, 1:], text.float().to(f.device))


def minmax(a: torch.Tensor, eps: float = MINMAX_EPS) -> torch.Tensor:
    """Per-row min-max normalisation to [0, 1]; a constant row becomes 0 (the official code gives NaN)."""
    lo = a.amin(dim=1, keepdim=True)
    hi = a.amax(dim=1, keepdim=True)
    return (a - lo) / (hi - lo).clamp_min(eps)


def grid_side(p: int) -> int:
    side = math.isqrt(p)
    if side * side != p:
        raise ZsrError(f"Attention maps need a square patch grid; got {p} patches.")
    return side


DEFAULT_SIZE = 224  # the official code's map size (args.image_size), whatever the model's input size


def upsample(a: torch.Tensor, size: int) -> torch.Tensor:
    """[B, P] row-major √P×√P maps → bilinear (align_corners=False) at size×size → [B, size*size]."""
    b, p = a.shape
    side = grid_side(p)
    with torch.autocast(a.device.type, enabled=False):
        up = F.interpolate((a if a.dtype in (torch.float32, torch.float64) else a.float()).reshape(b, 1, side, side), size=(size, size), mode="bilinear", align_corners=False)
    return up.reshape(b, size * size)


def attention_small(feats: torch.Tensor, text: torch.Tensor, norm: str = "token_axis") -> torch.Tensor:
    """Min-max normalised map on the patch grid [B, P] (before upsampling)."""
    return minmax(patch_scores(feats, text, norm))


def text_guided_attention(feats: torch.Tensor, text: torch.Tensor, *, size: int, norm: str = "token_axis") -> torch.Tensor:
    """TGA-ZSR's map ``A`` [B, size*size] from projected tokens ``feats`` [B, 1+P, D] and text ``text`` [B, D]."""
    return upsample(attention_small(feats, text, norm), size)


def complementary_attention(feats: torch.Tensor, text_class: torch.Tensor, text_nonclass: torch.Tensor, *, size: int,
                            norm: str = "token_axis") -> torch.Tensor:
    """Comp-TGA's ``A_class ⊙ (1 − A_nonclass)`` [B, size*size] (each min-max normalised, product after upsampling)."""
    a_class = text_guided_attention(feats, text_class, size=size, norm=norm)
    a_non = text_guided_attention(feats, text_nonclass, size=size, norm=norm)
    return a_class * (1.0 - a_non)


# --- the exact small-matrix form of the upsampled L2 distance ----------------------------------------------


def upsample_matrix(side: int, size: int, *, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """U [size*size, side*side] with ``upsample(a) = a @ Uᵀ`` (bilinear, align_corners=False is linear)."""
    eye = torch.eye(side * side, dtype=dtype, device=device)
    return upsample(eye, size).t().contiguous()


def upsample_gram(side: int, size: int, *, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """G = UᵀU [P, P]: ``‖U d‖₂² = dᵀ G d`` for grid maps d (computed in float64, returned in ``dtype``)."""
    u = upsample_matrix(side, size, dtype=torch.float64, device=device)
    return (u.t() @ u).to(dtype)


def map_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image plain L2 distance of flattened maps [B, N] → [B] (gradient 0 where the maps are equal)."""
    return torch.linalg.vector_norm((a - b).float(), ord=2, dim=1)


def upsampled_l2(a_small: torch.Tensor, b_small: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """``‖U(a − b)‖₂`` per image from grid maps [B, P] without materialising the upsampled maps."""
    d = (a_small - b_small).float()
    with torch.autocast(d.device.type, enabled=False):
        q = ((d @ gram.to(d)) * d).sum(dim=1)
    positive = q > 0
    # safe sqrt: the gradient at a zero distance is 0 (as for torch's norm), not NaN
    return torch.where(positive, q.clamp_min(1e-30).sqrt(), torch.zeros_like(q))


# --- the exact compact form for products of upsampled maps (Comp-TGA) --------------------------------------


def axis_segments(side: int, size: int, *, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """1-D linear upsampling side → size (``align_corners=False``, as :func:`torch.nn.functional.interpolate`)
    grouped by the pair of grid points each output position interpolates between.

    Returns ``(lo [S], hi [S], H [S, 3, 3])``: output positions of segment s take ``(1 − w)·g[lo] + w·g[hi]``
    and ``H[s, k, l] = Σ w^(k+l)`` over them (Hankel matrices of the moments of w up to the 4th).
    """
    scale = side / size
    src = ((torch.arange(size, dtype=torch.float64) + 0.5) * scale - 0.5).clamp_min(0.0)
    lo = src.floor().long().clamp_max(side - 1)
    hi = (lo + 1).clamp_max(side - 1)
    w = src - lo.double()
    w = torch.where(hi == lo, torch.zeros_like(w), w)  # the edge: both points are the same one
    keys, inverse = torch.unique(lo * side + hi, return_inverse=True)
    powers = w[:, None] ** torch.arange(5, dtype=torch.float64)  # [size, 5]
    moments = torch.zeros(len(keys), 5, dtype=torch.float64).index_add_(0, inverse, powers)
    k = torch.arange(3)
    hankel = moments[:, k[:, None] + k[None, :]]  # [S, 3, 3]
    return (keys // side).to(device), (keys % side).to(device), hankel.float().to(device)


def _cell_coefficients(g: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor], cols: tuple[torch.Tensor, torch.Tensor]
                       ) -> torch.Tensor:
    """Per (row segment, column segment) the coefficients c[k, l] of the upsampled map ``Σ c[k,l] wᵏ zˡ``
    (k, l ∈ {0, 1}) from grid maps ``g`` [B, side, side] → [B, S, T, 2, 2]."""
    (rlo, rhi), (clo, chi) = rows, cols
    g00 = g[:, rlo][:, :, clo]
    g10 = g[:, rhi][:, :, clo]
    g01 = g[:, rlo][:, :, chi]
    g11 = g[:, rhi][:, :, chi]
    c = torch.stack([torch.stack([g00, g01 - g00], -1), torch.stack([g10 - g00, g11 - g10 - g01 + g00], -1)], -2)
    return c


def _poly_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Product of two [.., 2, 2] bivariate polynomials (coefficients of wᵏ zˡ) → [.., 3, 3]."""
    out = a.new_zeros(*a.shape[:-2], 3, 3)
    for i in range(2):
        for j in range(2):
            out[..., i:i + 2, j:j + 2] = out[..., i:i + 2, j:j + 2] + a[..., i:i + 1, j:j + 1] * b
    return out


def product_map_coefficients(a_small: torch.Tensor, n_small: torch.Tensor, segments) -> torch.Tensor:
    """Coefficients [B, S, T, 3, 3] of ``U a ⊙ (1 − U n)`` per grid cell (Comp-TGA's complementary map)."""
    lo, hi, _ = segments
    side = grid_side(a_small.shape[1])
    b = a_small.shape[0]
    ca = _cell_coefficients(a_small.float().reshape(b, side, side), (lo, hi), (lo, hi))
    cn = _cell_coefficients(n_small.float().reshape(b, side, side), (lo, hi), (lo, hi))
    return F.pad(ca, (0, 1, 0, 1)) - _poly_product(ca, cn)


def product_upsampled_l2(pair_a: torch.Tensor, pair_b: torch.Tensor, size: int) -> torch.Tensor:
    """``‖U a₁ ⊙ (1 − U n₁) − U a₂ ⊙ (1 − U n₂)‖₂`` per image without materialising the size×size maps.

    ``pair_*`` are [B, 2, P] grid maps (class map, non-class map), each min-max normalised; U is the bilinear
    upsampling to size×size (:func:`upsample`). Exact: per grid cell the difference is a biquadratic polynomial
    in the interpolation weights (w, z), whose squared sum over the cell's pixels is ``tr(Eᵀ H_rows E H_cols)``.
    """
    d = pair_a.float()
    with torch.autocast(d.device.type, enabled=False):
        side = grid_side(d.shape[-1])
        seg = axis_segments(side, size, device=d.device)
        e = product_map_coefficients(d[:, 0], d[:, 1], seg) - product_map_coefficients(
            pair_b[:, 0].float(), pair_b[:, 1].float(), seg)
        h = seg[2]
        q = torch.einsum("bstkl,skm,bstmn,tln->b", e, h, e, h)
    positive = q > 0
    return torch.where(positive, q.clamp_min(1e-30).sqrt(), torch.zeros_like(q))
