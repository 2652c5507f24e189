"""Published defense checkpoints the user can name instead of a path (``--checkpoint fare2-clip``).

Each entry says what it is (defense, architecture, training ε and data, source). Nothing is downloaded at
import time: :func:`fetch` downloads on request (with huggingface_hub's progress bar) into zsrbench's cache,
reuses the cache afterwards (also offline), records the weights' sha256 and verifies it when it is known.
A digest of ``None`` means "not published"; the digest measured on first download is then reported in the
model's provenance so that results still name the exact file.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zsrbench.errors import ZsrError
from zsrbench.models.clip import CLIPParts, build_clip
from zsrbench.paths import cache_dir
from zsrbench.models.weights import sha256_file
from zsrbench.models.weights import check_sha256_text

CONFIG_FILE = "open_clip_config.json"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    defense: str  # registry name of the defense that trained it
    architecture: str  # open_clip architecture of the checkpoint
    base: str  # the pretrained weights it was fine-tuned from
    train_eps: float  # training ε in units of 1/255
    train_data: str
    hf_hub: str | None  # Hugging Face Hub repo id (open_clip format: open_clip_config.json + weights)
    url: str  # where a person can read about it / get it
    paper: str
    sha256: str | None = None  # sha256 of the weights file when published; None: unknown (measured and recorded)
    weight_files: tuple[str, ...] = WEIGHT_FILES
    aliases: tuple[str, ...] = ()
    notes: str = ""

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d["weight_files"] = list(self.weight_files)
        d["aliases"] = list(self.aliases)
        return d


ROBUSTVLM = "Schlarmann et al., Robust CLIP (ICML 2024), github.com/chs20/RobustVLM"
ROBUST_PERCEPTUAL = "Croce et al., Adversarially robust CLIP models can induce better (robust) perceptual metrics (SaTML 2025)"

ENTRIES: tuple[CatalogueEntry, ...] = (
    CatalogueEntry("fare2-clip", "fare", "ViT-L-14", "openai", 2.0, "ImageNet-1k (2 epochs)", "chs20/fare2-clip",
                   "https://huggingface.co/chs20/fare2-clip", ROBUSTVLM, aliases=("fare2",)),
    CatalogueEntry("fare4-clip", "fare", "ViT-L-14", "openai", 4.0, "ImageNet-1k (2 epochs)", "chs20/fare4-clip",
                   "https://huggingface.co/chs20/fare4-clip", ROBUSTVLM, aliases=("fare4",)),
    CatalogueEntry("tecoa2-clip", "tecoa", "ViT-L-14", "openai", 2.0, "ImageNet-1k (2 epochs)", "chs20/tecoa2-clip",
                   "https://huggingface.co/chs20/tecoa2-clip", ROBUSTVLM, aliases=("tecoa2",),
                   notes="TeCoA retrained by the RobustVLM authors (supervised CE, APGD inner attack)"),
    CatalogueEntry("tecoa4-clip", "tecoa", "ViT-L-14", "openai", 4.0, "ImageNet-1k (2 epochs)", "chs20/tecoa4-clip",
                   "https://huggingface.co/chs20/tecoa4-clip", ROBUSTVLM, aliases=("tecoa4",),
                   notes="TeCoA retrained by the RobustVLM authors (supervised CE, APGD inner attack)"),
    CatalogueEntry("fare4-vit-b-32-laion2b", "fare", "ViT-B-32", "laion2b_s34b_b79k", 4.0, "ImageNet-1k",
                   "chs20/FARE4-ViT-B-32-laion2B-s34B-b79K",
                   "https://huggingface.co/chs20/FARE4-ViT-B-32-laion2B-s34B-b79K", ROBUST_PERCEPTUAL,
                   notes="LAION-2B base (GELU, not QuickGELU)"),
    CatalogueEntry("tecoa4-vit-b-32-laion2b", "tecoa", "ViT-B-32", "laion2b_s34b_b79k", 4.0, "ImageNet-1k",
                   "chs20/TeCoA4-ViT-B-32-laion2B-s34B-b79K",
                   "https://huggingface.co/chs20/TeCoA4-ViT-B-32-laion2B-s34B-b79K", ROBUST_PERCEPTUAL,
                   notes="LAION-2B base (GELU, not QuickGELU)"),
)

_EXTRA: dict[str, CatalogueEntry] = {}  # entries added at run time (plugins, tests)


def register(entry: CatalogueEntry) -> CatalogueEntry:
    _EXTRA[entry.name] = entry
    return entry


def entries() -> list[CatalogueEntry]:
    seen = {e.name: e for e in ENTRIES}
    seen.update(_EXTRA)
    return list(seen.values())


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def lookup(name: str) -> CatalogueEntry | None:
    """The entry named ``name`` (its name, an alias, or its ``hf-hub:`` id), else None."""
    key = _norm(name)
    for e in entries():
        ids = {_norm(e.name), *(_norm(a) for a in e.aliases)}
        if e.hf_hub:
            ids |= {_norm(e.hf_hub), _norm(f"hf-hub:{e.hf_hub}")}
        if key in ids:
            return e
    return None


def get(name: str) -> CatalogueEntry:
    e = lookup(name)
    if e is None:
        import difflib

        names = [x.name for x in entries()]
        close = difflib.get_close_matches(_norm(name), names, n=1)
        raise ZsrError(f"Unknown published checkpoint '{name}'." + (f" Did you mean '{close[0]}'?" if close else "")
                       + f" Known: {', '.join(names)}.")
    return e


def checkpoint_cache() -> Path:
    return cache_dir() / "checkpoints"


def offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("ZSRBENCH_OFFLINE", "HF_HUB_OFFLINE"))


def _hf_download(repo_id: str, filename: str, *, cache: Path, local_files_only: bool) -> str:
    """One file from the Hub (huggingface_hub shows a progress bar). Mocked in the tests."""
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id, filename, cache_dir=str(cache), local_files_only=local_files_only)


def _is_missing_entry(exc: BaseException) -> bool:
    """The file does not exist in the repo (as opposed to: not cached / no network)."""
    try:
        from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, RemoteEntryNotFoundError) and not isinstance(exc, LocalEntryNotFoundError)


def _fetch_files(entry: CatalogueEntry, cache: Path, local_only: bool) -> tuple[Path, Path]:
    config = Path(_hf_download(entry.hf_hub, CONFIG_FILE, cache=cache, local_files_only=local_only))
    last: BaseException | None = None
    for name in entry.weight_files:
        try:
            return config, Path(_hf_download(entry.hf_hub, name, cache=cache, local_files_only=local_only))
        except Exception as exc:  # noqa: BLE001 - try the next weights file name
            last = exc
            if local_only or _is_missing_entry(exc):
                continue
            raise
    assert last is not None
    raise last


def fetch(entry: CatalogueEntry, *, allow_download: bool = True, cache: Path | None = None,
          expected_sha256: str | None = None) -> tuple[Path, dict[str, Any]]:
    """A local folder holding the entry's open_clip config and weights, and its provenance.

    The cache is tried first (no network). A missing cache downloads when allowed (and not offline); a failed
    download is a :class:`ZsrError` that says what to do, never a traceback.
    """
    if not entry.hf_hub:
        raise ZsrError(f"Checkpoint '{entry.name}' has no download source; get it from {entry.url} and pass its path.")
    expected_sha256 = check_sha256_text(expected_sha256) if expected_sha256 else None  # a typo is not a mismatch
    cache = Path(cache) if cache is not None else checkpoint_cache()
    downloaded = False
    try:
        config, weights = _fetch_files(entry, cache, local_only=True)
    except Exception as cached_exc:  # noqa: BLE001 - not cached (or a partial cache)
        if not allow_download or offline():
            raise ZsrError(
                f"Checkpoint '{entry.name}' ({entry.hf_hub}) is not in the cache {cache} and downloading is off "
                "(offline mode or allow_download=False). Run once with network access to download it, or unset "
                "ZSRBENCH_OFFLINE/HF_HUB_OFFLINE."
            ) from cached_exc
        from rich.console import Console

        Console(stderr=True).print(f"Downloading published checkpoint [bold]{entry.name}[/] from {entry.url} into {cache}")
        try:
            config, weights = _fetch_files(entry, cache, local_only=False)
        except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: all user-fixable
            raise ZsrError(
                f"Could not download checkpoint '{entry.name}' from {entry.url} ({type(exc).__name__}: {exc}). "
                f"Check the network connection (or download {entry.hf_hub} by hand into {cache} with "
                "`huggingface-cli download`), then retry."
            ) from exc
        downloaded = True
    digest = sha256_file(weights)
    for want in (entry.sha256, expected_sha256):
        if want and digest != check_sha256_text(want):
            raise ZsrError(
                f"Checkpoint '{entry.name}' file {weights} has sha256 {digest}, but {want} was expected: the download "
                f"is corrupt or the repository changed. Delete {weights} (and its cache folder) and retry."
            )
    folder = config.parent
    if weights.parent != folder:  # keep config and weights side by side for open_clip's local-dir loader
        folder = cache / "assembled" / entry.name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(config, folder / CONFIG_FILE)
        shutil.copyfile(weights, folder / weights.name)
        weights = folder / weights.name
    provenance = {
        "catalogue": entry.name, "defense": entry.defense, "source_url": entry.url, "hf_hub": entry.hf_hub,
        "train_eps": entry.train_eps, "weights_file": weights.name, "checkpoint_sha256": digest,
        "sha256_verified": bool(entry.sha256 or expected_sha256), "downloaded_now": downloaded,
    }
    return folder, provenance


def load(entry: CatalogueEntry, *, device: str = "cpu", allow_download: bool = True,
         expected_sha256: str | None = None, cache: Path | None = None) -> CLIPParts:
    folder, provenance = fetch(entry, allow_download=allow_download, cache=cache, expected_sha256=expected_sha256)
    try:
        parts = build_clip(f"local-dir:{folder}", None, device=device)
    except ZsrError as exc:  # a damaged download in the cache: say how to get a fresh one
        repo = (Path(cache) if cache is not None else checkpoint_cache()) / f"models--{entry.hf_hub.replace('/', '--')}"
        raise ZsrError(f"Published checkpoint '{entry.name}' in the cache is unusable: {exc} To download it afresh, "
                       f"delete {repo} (and {folder} if it is not inside it) and run again.") from exc
    parts.source.update(provenance)
    parts.source["base_architecture"] = entry.architecture  # names the model (its folder is a cache path)
    return parts


def table() -> str:
    """The catalogue as JSON lines (for ``zsrbench list`` style output)."""
    return "\n".join(json.dumps(e.describe()) for e in entries())
