"""Bringing a zoo model's files into zsrbench's cache and loading it (the entries are :mod:`.catalogue`).

:func:`fetch` brings an entry's file(s) into zsrbench's cache (``<cache>/checkpoints``): a file placed by hand at
the announced path (``<cache>/checkpoints/zoo/<name>/``) is used first, then the Hugging Face cache, then the
network (huggingface_hub for ``hf-hub``, a resumable download for ``url``; Google Drive is never downloaded from).
Every file's sha256 is checked *before* it is used: against the entry's ``sha256`` when the catalogue pins it, else
against the digest pinned on the file's first download (``<cache>/checkpoints/pins.json``, with a warning). A
mismatch refuses, deletes nothing, and says what to do. :func:`load` builds the model (strictly, through
:func:`zsrbench.models.formats.load_any`).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from zsrbench.errors import ZsrError
from zsrbench.models.catalogue import (HF_OPTIONAL, HF_WEIGHT_FILES, MANUAL_DIR, PINS_FILE, WEIGHT_FILES, ZOO_FILE,
                                       CatalogueEntry)
from zsrbench.models.download import offline, sha256_of
from zsrbench.paths import cache_dir

if TYPE_CHECKING:  # torch is imported only when a model is built
    from zsrbench.models.clip import CLIPParts


# --- where files go, and their pins ------------------------------------------------------------------------------


def checkpoint_cache() -> Path:
    return cache_dir() / "checkpoints"


def manual_dir(entry: CatalogueEntry, cache: Path | None = None) -> Path:
    """The folder where a file placed by hand for ``entry`` is looked for first (and where URL downloads go)."""
    return (Path(cache) if cache is not None else checkpoint_cache()) / MANUAL_DIR / entry.name


def source_url(entry: CatalogueEntry) -> str:
    """Where the entry's file comes from, as a person would open it."""
    src, kind = entry.source, entry.kind
    if kind == "hf-hub":
        repo = f"https://huggingface.co/{src.get('repo')}"
        return f"{repo}/blob/main/{src['file']}" if src.get("file") else repo
    if kind == "url":
        return str(src["url"])
    if kind == "gdrive":
        return (f"https://drive.google.com/file/d/{src['id']}" if src.get("id")
                else f"https://drive.google.com/drive/folders/{src.get('folder')}")
    return entry.url


class Pins:
    """``pins.json``: the sha256 (and size) of each file of an unpinned entry, measured the first time it was used."""

    def __init__(self, cache: Path) -> None:
        self.path = Path(cache) / PINS_FILE

    def read(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ZsrError(f"{self.path} (the sha256 pinned for unpinned zoo models on their first download) cannot "
                           f"be read ({exc}). Restore it, or delete it to pin the files again on their next use.") from None
        return data if isinstance(data, dict) else {}

    def get(self, name: str, filename: str) -> dict[str, Any] | None:
        return ((self.read().get(name) or {}).get("files") or {}).get(filename)

    def put(self, name: str, filename: str, digest: str, size: int) -> None:
        data = self.read()
        files = data.setdefault(name, {}).setdefault("files", {})
        files[filename] = {"sha256": digest, "size": size,
                           "pinned_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def _warn(text: str) -> None:
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"[yellow]warning:[/] {text}", highlight=False)


def _say(text: str) -> None:
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(text, highlight=False)


@dataclass
class _Check:
    digest: str
    verified: bool  # against the catalogue or a user-given digest
    pinned_before: bool = False  # against pins.json
    pinned_now: bool = False


def _verify(entry: CatalogueEntry, path: Path, *, cache: Path, primary: bool, expected: str | None,
            by_hand: bool, fix: str) -> _Check:
    """``path``'s sha256 against what is known (the catalogue's digest for the primary file, a user-given one, the
    pin of an earlier download); an unknown file is pinned now, with a warning. A mismatch is a :class:`ZsrError`
    that deletes nothing and ends with ``fix``."""
    digest = sha256_of(path)
    wants = [(w, why) for w, why in ((entry.sha256 if primary else None, "the zoo pins"),
                                     (expected if primary else None, "you gave")) if w]
    pins = Pins(cache)
    pin = None if any(why == "the zoo pins" for _, why in wants) else pins.get(entry.name, path.name)
    if pin:
        wants.append((pin["sha256"], f"was pinned on its first use ({pin.get('pinned_at', 'earlier')}, in {pins.path})"))
    size = path.stat().st_size
    if primary and entry.size is not None and size != entry.size:
        raise ZsrError(f"Model '{entry.name}': {path} has {size} bytes, but the zoo says {entry.size}: it was not used "
                       f"(nothing was deleted). {fix}")
    for want, why in wants:
        if digest != want:
            placed = (" It was placed by hand, so it is not the published file (nothing was deleted)." if by_hand
                      else " Nothing was deleted.")
            repin = (f" If the publisher changed the file on purpose, delete the '{entry.name}' entry of {pins.path} "
                     "and fetch again." if "pinned" in why else "")
            raise ZsrError(f"Model '{entry.name}': {path} has sha256 {digest}, but {want} {why}: it was not used."
                           f"{placed} {fix}{repin}")
    check = _Check(digest, verified=any("pinned" not in why for _, why in wants), pinned_before=pin is not None)
    if not wants:
        pins.put(entry.name, path.name, digest, path.stat().st_size)
        check.pinned_now = True
        _warn(f"'{entry.name}': {path.name} is not pinned by the model zoo; its sha256 {digest} "
              f"({path.stat().st_size} bytes) is now pinned in {pins.path}, and any other file will be refused. Compare "
              f"it with the publisher's if they list one ({source_url(entry)}).")
    return check


# --- fetching -----------------------------------------------------------------------------------------------------


def _hf_download(repo_id: str, filename: str, *, cache: Path, local_files_only: bool) -> str:
    """One file from the Hub (huggingface_hub shows a progress bar and resumes). Mocked in the tests."""
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id, filename, cache_dir=str(cache), local_files_only=local_files_only)


def _hf_list(repo_id: str) -> list[str]:
    """The files of a Hub repo (network). Mocked in the tests."""
    from huggingface_hub import list_repo_files

    return list(list_repo_files(repo_id))


def _is_missing_entry(exc: BaseException) -> bool:
    """The file does not exist in the repo (as opposed to: not cached / no network)."""
    try:
        from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, RemoteEntryNotFoundError) and not isinstance(exc, LocalEntryNotFoundError)


def _hf_files(entry: CatalogueEntry, cache: Path, local_only: bool) -> tuple[list[Path], Path]:
    """(the config/tokenizer files, the weights file) of an hf-hub entry, from the Hub's cache or the network."""
    assert entry.hf_hub is not None
    configs = [Path(_hf_download(entry.hf_hub, f, cache=cache, local_files_only=local_only))
               for f in entry.config_files]
    if entry.format == "transformers":
        for f in HF_OPTIONAL:
            try:
                configs.append(Path(_hf_download(entry.hf_hub, f, cache=cache, local_files_only=local_only)))
            except Exception:  # noqa: BLE001 - optional: open_clip's mean/std then
                pass
    last: BaseException | None = None
    for name in entry.weight_files:
        try:
            return configs, Path(_hf_download(entry.hf_hub, name, cache=cache, local_files_only=local_only))
        except Exception as exc:  # noqa: BLE001 - try the next weights file name
            last = exc
            if local_only or _is_missing_entry(exc):
                continue
            raise
    assert last is not None
    raise last


def _manual_files(entry: CatalogueEntry, folder: Path) -> tuple[list[Path], Path] | None:
    """Files placed by hand in ``folder`` (all of them, for a multi-file model), else None."""
    if entry.kind == "hf-hub" and entry.format in ("open_clip", "transformers"):
        configs = [folder / f for f in entry.config_files]
        weights = next((folder / f for f in entry.weight_files if (folder / f).is_file()), None)
        if weights is None or not all(c.is_file() for c in configs):
            return None
        extra = [folder / f for f in HF_OPTIONAL if (folder / f).is_file()] if entry.format == "transformers" else []
        return configs + extra, weights
    name = hand_name(entry)
    if (folder / name).is_file():
        return [], folder / name
    return None


def hand_name(entry: CatalogueEntry) -> str:
    """The name a single-file checkpoint is looked for under in :func:`manual_dir` (the source's file name, else
    ``checkpoint.pt`` / ``checkpoint.pth.tar``)."""
    return entry.file or ("checkpoint.pth.tar" if entry.format == "vision_encoder_state_dict" else "checkpoint.pt")


DOWNLOADED_MARK = ".downloaded-by-zsrbench"


def _downloaded(folder: Path) -> set[str]:
    """Names of the files in a :func:`manual_dir` that zsrbench downloaded itself (the others were placed by hand)."""
    try:
        return set(json.loads((folder / DOWNLOADED_MARK).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return set()


def _mark_downloaded(folder: Path, name: str) -> None:
    names = sorted(_downloaded(folder) | {name})
    (folder / DOWNLOADED_MARK).write_text(json.dumps(names) + "\n", encoding="utf-8")


def _expected_names(entry: CatalogueEntry) -> str:
    if entry.kind == "hf-hub" and entry.format in ("open_clip", "transformers"):
        weights = " or ".join(entry.weight_files)
        return f"{', '.join(entry.config_files)} and {weights}"
    return hand_name(entry)


def _place_by_hand(entry: CatalogueEntry, cache: Path) -> str:
    folder = manual_dir(entry, cache)
    return f"place {_expected_names(entry)} by hand in {folder}{os.sep}"


def _assemble(entry: CatalogueEntry, configs: list[Path], weights: Path, cache: Path) -> Path:
    """One folder holding the checked config(s) and weights side by side, and no other weights file (the loaders
    read a folder and pick its weights file themselves: it must be the one whose sha256 was checked)."""
    folder = weights.parent
    others = [folder / n for n in (*WEIGHT_FILES, *HF_WEIGHT_FILES) if n != weights.name and (folder / n).exists()]
    if all(c.parent == folder for c in configs) and not others:
        return folder
    folder = cache / "assembled" / entry.name
    if folder.is_dir():
        for stale in folder.iterdir():
            if stale.name not in {f.name for f in [*configs, weights]}:
                stale.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    for f in [*configs, weights]:
        target = folder / f.name
        if target.exists() and target.resolve() == f.resolve():
            continue
        if target.exists() or target.is_symlink():
            target.unlink()
        try:
            target.symlink_to(f.resolve())
        except OSError:  # no symlinks here: a copy
            shutil.copyfile(f, target)
    return folder


def _refuse_offline(entry: CatalogueEntry, cache: Path, why: str) -> ZsrError:
    return ZsrError(
        f"Checkpoint '{entry.name}' ({source_url(entry)}) is not in the cache {cache} and downloading is off ({why}). "
        f"Fetch it once with network access (`zsrbench zoo fetch {entry.name}`), or download it elsewhere and "
        f"{_place_by_hand(entry, cache)}: zsrbench uses it after checking its sha256."
    )


def _fetch_shipped(entry: CatalogueEntry) -> tuple[Path, dict[str, Any]]:
    from zsrbench.models import shipped

    d = str(entry.source.get("defense"))
    info = shipped._entries().get(d)
    if info is None:
        raise ZsrError(f"'{entry.name}' is a micro defense the package ships, but {shipped.SHIPPED_DIR} holds no "
                       f"{d} file: the installation is incomplete. Reinstall zsrbench, or run "
                       "`python scripts/ship_micro_defenses.py` in a checkout.")
    ship = shipped._shipped(d, info)
    if not ship.path.is_file():
        raise ZsrError(f"The shipped {ship.name} file {ship.path} is missing: reinstall zsrbench.")
    digest = sha256_of(ship.path)
    if digest != ship.sha256:
        raise ZsrError(f"The shipped {ship.name} file {ship.path} has sha256 {digest}, but the package's manifest "
                       f"says {ship.sha256}: the installation is damaged. Reinstall zsrbench.")
    return ship.path, {"catalogue": ship.name, "zoo_name": entry.name, "defense": entry.defense,
                       "source_url": str(ship.path.name), "source_kind": "shipped", "checkpoint_sha256": digest,
                       "sha256_verified": True, "downloaded_now": False, "weights_file": ship.path.name}


def _fetch_hf(entry: CatalogueEntry, cache: Path, allow_download: bool) -> tuple[list[Path], Path, bool]:
    if entry.format not in ("open_clip", "transformers") and not entry.file:
        raise _unnamed_file(entry, cache, allow_download)
    try:
        configs, weights = _hf_files(entry, cache, local_only=True)
        return configs, weights, False
    except Exception as cached_exc:  # noqa: BLE001 - not cached (or a partial cache)
        if not allow_download or offline():
            why = "offline mode: ZSRBENCH_OFFLINE/HF_HUB_OFFLINE" if offline() else "allow_download=False"
            raise _refuse_offline(entry, cache, why) from cached_exc
    _say(f"Downloading [bold]{entry.name}[/] from {source_url(entry)} into {cache}")
    try:
        configs, weights = _hf_files(entry, cache, local_only=False)
    except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: all user-fixable
        raise ZsrError(
            f"Could not download checkpoint '{entry.name}' from {source_url(entry)} ({type(exc).__name__}: {exc}). "
            f"Check the network connection and retry (downloads resume), or download it elsewhere (`huggingface-cli "
            f"download {entry.hf_hub}`) and {_place_by_hand(entry, cache)}."
        ) from exc
    return configs, weights, True


def _unnamed_file(entry: CatalogueEntry, cache: Path, allow_download: bool) -> ZsrError:
    """An hf-hub entry whose file name the zoo does not know: say which files the repo has, where to put one."""
    listing = ""
    if allow_download and not offline():
        try:
            files = [f for f in _hf_list(str(entry.hf_hub)) if not f.startswith(".") and f != "README.md"]
            listing = f" The repository holds: {', '.join(files) or 'no files'}."
        except Exception as exc:  # noqa: BLE001 - only a hint
            listing = f" (Its file list could not be read: {type(exc).__name__}.)"
    folder = manual_dir(entry, cache)
    return ZsrError(
        f"The model zoo does not know which file of {entry.hf_hub} is '{entry.name}' (unpinned).{listing} Download "
        f"the {entry.architecture} checkpoint from https://huggingface.co/{entry.hf_hub} and place it by hand at "
        f"{folder / hand_name(entry)}; or add its name as source.file in {ZOO_FILE}."
    )


def _fetch_url(entry: CatalogueEntry, cache: Path, allow_download: bool, opener: Callable[..., Any] | None,
               expected: str | None) -> tuple[Path, bool]:
    from zsrbench.models.download import download_url

    dest = manual_dir(entry, cache) / hand_name(entry)
    url = str(entry.source["url"])
    if not allow_download or offline():
        why = "offline mode: ZSRBENCH_OFFLINE/HF_HUB_OFFLINE" if offline() else "allow_download=False"
        raise ZsrError(
            f"Checkpoint '{entry.name}' ({url}) is not in the cache and downloading is off ({why}). Download {url} "
            f"on a machine with network access and place it by hand at {dest} (zsrbench checks its sha256 before "
            f"using it), or fetch it with `zsrbench zoo fetch {entry.name}` once online."
        )
    pin = Pins(cache).get(entry.name, dest.name) if not (entry.sha256 or expected) else None
    want = entry.sha256 or expected or (pin or {}).get("sha256")
    _say(f"Downloading [bold]{entry.name}[/] from {url} to {dest}")
    try:
        download_url(url, dest, expected_sha256=want, expected_size=entry.size, opener=opener, label=entry.name)
    except ZsrError as exc:
        raise ZsrError(f"Model '{entry.name}': {exc}") from None
    except OSError as exc:  # the network: URLError, timeouts, HTTP errors, a cut transfer
        part = dest.with_name(dest.name + ".part")
        kept = f" The {part.stat().st_size} bytes already at {part} are kept; the next try resumes." if part.is_file() else ""
        raise ZsrError(
            f"Could not download checkpoint '{entry.name}' from {url} ({type(exc).__name__}: {exc}).{kept} Check the "
            f"network and retry, or download the file elsewhere and place it by hand at {dest}."
        ) from exc
    _mark_downloaded(dest.parent, dest.name)
    return dest, True


def _refuse_gdrive(entry: CatalogueEntry, cache: Path) -> ZsrError:
    src = entry.source
    what = f"Google Drive file id {src['id']}" if src.get("id") else f"Google Drive folder id {src['folder']}"
    dest = manual_dir(entry, cache) / hand_name(entry)
    return ZsrError(
        f"Checkpoint '{entry.name}' is published only on Google Drive ({what}: {source_url(entry)}), which zsrbench "
        "does not download from (no stable direct link; a mirror is needed). Download it in a browser"
        + (" (the checkpoint in that folder)" if src.get("folder") else "")
        + f" and place it by hand at {dest}; zsrbench then uses it after checking its sha256 "
        "(pinned on first use when the zoo does not pin it)."
    )


def fetch(entry: CatalogueEntry, *, allow_download: bool = True, cache: Path | None = None,
          expected_sha256: str | None = None, opener: Callable[..., Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """The local path of ``entry``'s checkpoint and its provenance: a folder (``open_clip``, ``transformers``) or a
    file (``visual``, ``vision_encoder_state_dict``).

    Order: a file placed by hand in :func:`manual_dir`, the cache (no network), then a download when allowed and
    not offline. Every file's sha256 is checked before it is returned (see :func:`_verify`). A failure is a
    :class:`ZsrError` that names the URL and the path to place the file at by hand, never a traceback.
    """
    from zsrbench.models.weights import check_sha256_text

    expected = check_sha256_text(expected_sha256) if expected_sha256 else None  # a typo is not a mismatch
    if entry.kind == "shipped":
        path, prov = _fetch_shipped(entry)
        if expected and prov["checkpoint_sha256"] != expected:
            raise ZsrError(f"The shipped '{entry.name}' has sha256 {prov['checkpoint_sha256']}, not the {expected} you "
                           "gave: drop --checkpoint-sha256, or name the file you meant.")
        return path, prov
    if entry.kind not in ("hf-hub", "url", "gdrive"):
        raise ZsrError(f"Checkpoint '{entry.name}' has no download source; get it from {entry.url} and pass its path.")
    cache = Path(cache) if cache is not None else checkpoint_cache()
    folder = manual_dir(entry, cache)
    hand = _manual_files(entry, folder)
    downloaded = False
    by_hand = hand is not None and hand[1].name not in _downloaded(folder)
    if hand is not None:
        configs, weights = hand
    elif entry.kind == "hf-hub":
        configs, weights, downloaded = _fetch_hf(entry, cache, allow_download)
    elif entry.kind == "url":
        configs, (weights, downloaded) = [], _fetch_url(entry, cache, allow_download, opener, expected)
    else:
        raise _refuse_gdrive(entry, cache)
    if by_hand:
        fix = f"Replace the file(s) in {folder} with the published ones from {source_url(entry)}."
    elif entry.kind == "hf-hub":
        repo = cache / f"models--{str(entry.hf_hub).replace('/', '--')}"
        fix = (f"The download is corrupt or the repository changed: delete {repo} (and {cache / 'assembled' / entry.name}"
               " if present) and fetch again.")
    else:
        fix = f"Delete {weights} and fetch again (`zsrbench zoo fetch {entry.name}`)."
    check = _verify(entry, weights, cache=cache, primary=True, expected=expected, by_hand=by_hand, fix=fix)
    for c in configs:
        _verify(entry, c, cache=cache, primary=False, expected=None, by_hand=by_hand, fix=fix)
    path = weights
    if entry.format in ("open_clip", "transformers") and entry.kind == "hf-hub":
        path = _assemble(entry, configs, weights, cache)
    provenance = {
        "catalogue": entry.name, "defense": entry.defense, "source_url": source_url(entry), "source_kind": entry.kind,
        "hf_hub": entry.hf_hub, "train_eps": entry.train_eps, "weights_file": weights.name,
        "checkpoint_sha256": check.digest, "sha256_verified": check.verified, "sha256_pinned": check.pinned_before,
        "sha256_pinned_now": check.pinned_now, "placed_by_hand": by_hand, "downloaded_now": downloaded,
        "format": entry.format,
    }
    return path, provenance


# --- loading ------------------------------------------------------------------------------------------------------


def load(entry: CatalogueEntry, *, device: str = "cpu", allow_download: bool = True,
         expected_sha256: str | None = None, cache: Path | None = None) -> "CLIPParts":
    """The entry's model, built strictly (open_clip folders by open_clip, every other format by
    :func:`zsrbench.models.formats.load_any`), with the zoo's provenance in ``parts.source``."""
    path, provenance = fetch(entry, allow_download=allow_download, cache=cache, expected_sha256=expected_sha256)
    if entry.kind == "shipped":
        return _load_shipped(entry, path, provenance, device)
    from zsrbench.models import formats

    vision_only = entry.format in ("visual", "vision_encoder_state_dict")
    try:
        parts = formats.load_any(
            path, fmt=entry.format, architecture=entry.architecture if vision_only else None,
            pretrained=entry.base if vision_only else None, activation=entry.activation,
            logit_scale=entry.logit_scale, trust=False, device=device)
    except ZsrError as exc:  # a damaged download in the cache: say how to get a fresh one
        where = (Path(cache) if cache is not None else checkpoint_cache())
        hint = (f"delete {where / ('models--' + str(entry.hf_hub).replace('/', '--'))} (and {path} if it is not "
                "inside it)" if entry.kind == "hf-hub" and not provenance.get("placed_by_hand") else f"replace {path}")
        raise ZsrError(f"Published checkpoint '{entry.name}' ({entry.format}) is unusable: {exc} If the file is "
                       f"damaged, {hint} and run again.") from exc
    loaded = parts.source.get("checkpoint_sha256")
    if loaded and loaded != provenance["checkpoint_sha256"]:  # the loader read another file than the checked one
        raise ZsrError(f"Published checkpoint '{entry.name}': the loader read a weights file with sha256 {loaded}, not "
                       f"the checked {provenance['checkpoint_sha256']} ({path}). Remove the other weights files from "
                       "that folder and run again.")
    parts.source.update(provenance)
    parts.source["base_architecture"] = entry.architecture  # names the model (its folder is a cache path)
    return parts


def _load_shipped(entry: CatalogueEntry, path: Path, provenance: dict[str, Any], device: str) -> "CLIPParts":
    from zsrbench.models import shipped
    from zsrbench.models.clip import build_clip

    parts = build_clip(shipped.ARCH, shipped.PRETRAINED_TAG, checkpoint=path,
                       checkpoint_sha256=provenance["checkpoint_sha256"], device=device)
    ship = shipped.by_name(str(provenance["catalogue"]))
    if parts.tensors_sha256() != ship.tensors_sha256:
        raise ZsrError(f"The shipped {ship.name} loads as tensors {parts.tensors_sha256()[:12]}…, not the "
                       f"{ship.tensors_sha256[:12]}… the package pins: the installation is damaged. Reinstall zsrbench.")
    parts.source.update(provenance)
    return parts
