"""Where the defenses and the published numbers come from: papers, venues and links, as data.

The defense classes carry their citation as text (``Defense.paper``); the site adds, for the six built-in
defenses, a display name, the venue and links to the paper and the authors' code. Reported numbers name their
source by an id (``reported.source_id``); :func:`source_url` links the ids zsrbench ships and any arXiv id or
web address a citation contains. Only ``http``/``https`` addresses ever become links.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Paper:
    display: str  # how the site names the defense, e.g. "TeCoA"
    venue: str
    url: str  # the paper
    code: str | None = None  # the authors' code


PAPERS: dict[str, Paper] = {
    "clip": Paper("CLIP", "ICML 2021", "https://arxiv.org/abs/2103.00020", "https://github.com/openai/CLIP"),
    "tecoa": Paper("TeCoA", "ICLR 2023", "https://arxiv.org/abs/2212.07016",
                   "https://github.com/cvlab-columbia/ZSRobust4FoundationModel"),
    "pmg_aft": Paper("PMG-AFT", "CVPR 2024", "https://arxiv.org/abs/2401.04350",
                     "https://github.com/serendipity1122/"
                     "Pre-trained-Model-Guided-Fine-Tuning-for-Zero-Shot-Adversarial-Robustness"),
    "fare": Paper("FARE", "ICML 2024", "https://arxiv.org/abs/2402.12336", "https://github.com/chs20/RobustVLM"),
    "tga_zsr": Paper("TGA-ZSR", "NeurIPS 2024", "https://arxiv.org/abs/2410.21802",
                     "https://github.com/zhyblue424/TGA-ZSR"),
    "comp_tga": Paper("Comp-TGA", "arXiv 2026", "https://arxiv.org/abs/2603.18598",
                      "https://github.com/zhyblue424/TGA-ZSR"),
    "ucat": Paper("UCAT", "ICML 2026", "https://arxiv.org/abs/2512.12997", "https://github.com/VivienLu/UCAT"),
    "caw": Paper("CAW", "NeurIPS 2025 workshop", "https://arxiv.org/abs/2510.02913", None),
    "ttc": Paper("TTC", "CVPR 2025", "https://arxiv.org/abs/2503.03613",
                 "https://github.com/Sxing2/CLIP-Test-time-Counterattacks"),
    "bitdepth": Paper("Bit-depth reduction", "NDSS 2018", "https://arxiv.org/abs/1704.01155", None),
}

# the sources of the published numbers zsrbench ships (``reported.source_id``)
SOURCES: dict[str, str] = {
    "tga-zsr-neurips24": "https://arxiv.org/abs/2410.21802",
    "tga-zsr-readme": "https://github.com/zhyblue424/TGA-ZSR",
    "robustvlm-readme": "https://github.com/chs20/RobustVLM",
}

_ARXIV = re.compile(r"arxiv[\s:._-]*(\d{4}\.\d{4,5})", re.IGNORECASE)
_URL = re.compile(r"https?://[^\s<>\"')\]]+")


def paper(defense: str | None) -> Paper | None:
    return PAPERS.get(defense or "")


def defense_display(defense: str | None) -> str:
    """``tecoa`` -> ``TeCoA``; a defense zsrbench does not know keeps its registry name."""
    if not defense:
        return "unknown defense"
    p = PAPERS.get(defense)
    return p.display if p else defense


def defense_citation(defense: str | None) -> str | None:
    """The citation the defense class carries (``Defense.paper``); None when the defense is not installed."""
    if not defense:
        return None
    from zsrbench.errors import ZsrError
    from zsrbench.registry import DEFENSES, load_builtins

    try:
        load_builtins()
        cls = DEFENSES.get(defense)
    except (ZsrError, ImportError):
        return None
    return getattr(cls, "paper", None) or None


def safe_url(url: str | None) -> str | None:
    """``url`` when it is an http(s) address, else None (never a ``javascript:`` or ``data:`` link)."""
    if not url:
        return None
    u = url.strip()
    return u if re.match(r"https?://", u, re.IGNORECASE) else None


def source_url(source_id: str | None, citation: str | None = None) -> str | None:
    """A link for a reported source: a known id, else an arXiv id in the id or the citation, else a web address
    in the citation; None when there is nothing to link."""
    if source_id and source_id in SOURCES:
        return SOURCES[source_id]
    for text in (source_id or "", citation or ""):
        m = _ARXIV.search(text)
        if m:
            return f"https://arxiv.org/abs/{m.group(1)}"
    m = _URL.search(citation or "")
    return safe_url(m.group(0).rstrip(".,;")) if m else None
