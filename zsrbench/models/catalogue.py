"""The model zoo: published robust CLIP models the user can name instead of a path (``--checkpoint fare2-clip``).

The catalogue is data, ``zsrbench/models/zoo.json`` (one object per model, sorted by name; see its ``about``),
plus the micro defenses that ship in the package (:mod:`zsrbench.models.shipped`) and entries a plugin or a test
adds with :func:`register`. Each entry says what the model is (paper, defense, architecture, base weights,
training data and ε), where it comes from (``source.kind``: ``hf-hub``, ``url``, ``gdrive`` or ``shipped``), how
its file is read (``format``: one of :data:`zsrbench.models.formats.FORMATS`) and the published rows it should
reproduce.

Nothing is downloaded at import time: :mod:`zsrbench.models.zoo_fetch` brings an entry's files into the cache,
checks their sha256 before use and loads the model.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from zsrbench.errors import ZsrError

ZOO_FILE = Path(__file__).resolve().parent / "zoo.json"
CONFIG_FILE = "open_clip_config.json"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
HF_CONFIG = "config.json"
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HF_OPTIONAL = ("preprocessor_config.json",)
PINS_FILE = "pins.json"
MANUAL_DIR = "zoo"
FORMATS = ("open_clip", "visual", "vision_encoder_state_dict", "transformers")
KINDS = ("hf-hub", "url", "gdrive", "shipped")
ACTIVATIONS = ("quickgelu", "gelu")
SHA256 = re.compile(r"[0-9a-f]{64}")
REQUIRED = ("name", "aliases", "paper", "venue", "defense", "architecture", "base", "train_data", "train_eps", "source",
            "size", "sha256", "format", "activation", "logit_scale", "licence", "tokenizer", "homepage", "reproduces",
            "notes")
NULLABLE = {"venue", "base", "train_data", "train_eps", "size", "sha256", "activation", "logit_scale", "licence",
            "tokenizer", "homepage"}


@dataclass(frozen=True)
class CatalogueEntry:
    """One model of the zoo. The first nine fields keep their historical order (positional construction)."""

    name: str
    defense: str  # registry name of the defense that trained it (clip: none of zsrbench's; see notes)
    architecture: str  # open_clip architecture (-quickgelu where the base is OpenAI CLIP)
    base: str | None  # the pretrained weights it was fine-tuned from (an open_clip tag), None: trained from scratch
    train_eps: float | None  # training ε in units of 1/255 (None: unknown)
    train_data: str | None
    hf_hub: str | None  # Hugging Face Hub repo id (source kind hf-hub)
    url: str  # where a person can read about it
    paper: str
    sha256: str | None = None  # of the weights file when published; None: unpinned (pinned on first download)
    weight_files: tuple[str, ...] = WEIGHT_FILES  # hf-hub: the weights file names to try, in order
    aliases: tuple[str, ...] = ()
    notes: str = ""
    venue: str | None = None
    source: Mapping[str, Any] = field(default_factory=dict, hash=False)  # {kind, repo/file | url/file | id/folder/file}
    size: int | None = None  # bytes of the weights file, when published
    format: str = "open_clip"
    activation: str | None = None  # quickgelu | gelu (None: unknown, the checkpoint's own config decides)
    logit_scale: float | None = None  # where the checkpoint carries none (QT-AFT: 100)
    licence: str | None = None
    tokenizer: str | None = None
    reproduces: tuple[Mapping[str, str], ...] = field(default=(), hash=False)
    config_files: tuple[str, ...] = ()  # hf-hub: files fetched beside the weights (configs, tokenizer)

    def __post_init__(self) -> None:
        if not self.source:  # an entry built the historical way: an hf-hub repo, else nothing to download
            object.__setattr__(self, "source", {"kind": "hf-hub", "repo": self.hf_hub} if self.hf_hub else {})
        if self.kind == "hf-hub" and self.format == "open_clip" and not self.config_files:
            object.__setattr__(self, "config_files", (CONFIG_FILE,))

    @property
    def kind(self) -> str | None:
        return self.source.get("kind")

    @property
    def pinned(self) -> bool:
        """The catalogue names the weights file's sha256 (``pins.json`` pins are the cache's, not the catalogue's)."""
        return self.sha256 is not None

    @property
    def file(self) -> str | None:
        """The one file the source names (a URL's, a Drive entry's name to place it as, a Hub file), if any."""
        return self.source.get("file")

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d["source"] = dict(self.source)
        d["weight_files"] = list(self.weight_files)
        d["aliases"] = list(self.aliases)
        d["reproduces"] = [dict(r) for r in self.reproduces]
        d["config_files"] = list(self.config_files)
        d["kind"] = self.kind
        return d


# --- the catalogue file ----------------------------------------------------------------------------------------


def _problems(models: Any) -> list[str]:
    """What is wrong with zoo.json's ``models`` (empty: nothing)."""
    if not isinstance(models, list):
        return ["'models' is not a list"]
    out: list[str] = []
    seen: dict[str, str] = {}
    for i, m in enumerate(models):
        where = f"models[{i}]" + (f" ({m.get('name')})" if isinstance(m, dict) and m.get("name") else "")
        if not isinstance(m, dict):
            out.append(f"{where} is not an object")
            continue
        missing = [k for k in REQUIRED if k not in m]
        extra = sorted(set(m) - set(REQUIRED))
        if missing:
            out.append(f"{where} lacks {', '.join(missing)}")
        if extra:
            out.append(f"{where} has unknown fields {', '.join(extra)}")
        for k in REQUIRED:
            if k in m and m[k] is None and k not in NULLABLE:
                out.append(f"{where}: {k} may not be null")
        for k in ("name", "paper", "defense", "architecture", "format", "notes"):
            if k in m and m[k] is not None and not isinstance(m[k], str):
                out.append(f"{where}: {k} is not text")
        src = m.get("source")
        if not isinstance(src, dict) or src.get("kind") not in KINDS:
            out.append(f"{where}: source.kind must be one of {', '.join(KINDS)}")
        else:
            need = {"hf-hub": ("repo",), "url": ("url", "file"), "shipped": ("defense",)}.get(src["kind"], ())
            if src["kind"] == "gdrive" and (not (src.get("id") or src.get("folder")) or not src.get("file")):
                out.append(f"{where}: a gdrive source needs an id (or folder) and the file name to place it as")
            out += [f"{where}: source lacks {k}" for k in need if not src.get(k)]
        if m.get("format") not in FORMATS:
            out.append(f"{where}: format must be one of {', '.join(FORMATS)}")
        if m.get("activation") is not None and m.get("activation") not in ACTIVATIONS:
            out.append(f"{where}: activation must be quickgelu, gelu or null")
        sha = m.get("sha256")
        if sha is not None and not (isinstance(sha, str) and SHA256.fullmatch(sha)):
            out.append(f"{where}: sha256 must be 64 lowercase hex digits or null")
        if sha is not None and isinstance(src, dict) and src.get("kind") == "hf-hub" and not src.get("file"):
            out.append(f"{where}: a pinned sha256 needs the file it is of (source.file)")
        size = m.get("size")
        if size is not None and not (isinstance(size, int) and size > 0):
            out.append(f"{where}: size must be a positive number of bytes or null")
        for k in ("train_eps", "logit_scale"):
            v = m.get(k)
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0):
                out.append(f"{where}: {k} must be a positive number or null")
        if not isinstance(m.get("aliases"), list) or not isinstance(m.get("reproduces"), list):
            out.append(f"{where}: aliases and reproduces must be lists")
        for r in m.get("reproduces") or []:
            if not (isinstance(r, dict) and {"file", "method", "source"} <= set(r)):
                out.append(f"{where}: each reproduces item needs file, method and source")
        for key in [m.get("name")] + list(m.get("aliases") or []):
            if not isinstance(key, str) or not key:
                continue
            k = _norm(key)
            if k in seen:
                out.append(f"{where}: the name or alias '{key}' is also {seen[k]}'s")
            seen[k] = str(m.get("name"))
    names = [m.get("name") for m in models if isinstance(m, dict)]
    if names != sorted(names, key=str):
        out.append("the models are not sorted by name")
    return out


@functools.lru_cache(maxsize=1)
def _zoo_data() -> dict[str, Any]:
    try:
        data = json.loads(ZOO_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ZsrError(f"The model zoo {ZOO_FILE} cannot be read ({exc}); the installation is damaged: reinstall "
                       "zsrbench.") from None
    problems = _problems(data.get("models") if isinstance(data, dict) else None)
    if problems:
        raise ZsrError(f"The model zoo {ZOO_FILE} is invalid: " + "; ".join(problems[:5])
                       + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "") + ".")
    return data


def validate() -> list[str]:
    """Problems of zoo.json (empty when it is valid): for the tests and `zsrbench zoo list`."""
    data = json.loads(ZOO_FILE.read_text(encoding="utf-8"))
    return _problems(data.get("models"))


def _from_json(m: dict[str, Any]) -> CatalogueEntry:
    src = dict(m["source"])
    kind = src["kind"]
    repo = src.get("repo") if kind == "hf-hub" else None
    files: tuple[str, ...] = ()
    configs: tuple[str, ...] = ()
    if kind == "hf-hub":
        if m["format"] == "open_clip":
            files = (src["file"],) if src.get("file") else tuple(src.get("files") or WEIGHT_FILES)
            configs = (src.get("config") or CONFIG_FILE, *src.get("extra_files", ()))
        elif m["format"] == "transformers":
            files = (src["file"],) if src.get("file") else HF_WEIGHT_FILES
            configs = (HF_CONFIG,)
        else:
            files = (src["file"],) if src.get("file") else ()
    return CatalogueEntry(
        name=m["name"], defense=m["defense"], architecture=m["architecture"], base=m["base"],
        train_eps=None if m["train_eps"] is None else float(m["train_eps"]), train_data=m["train_data"],
        hf_hub=repo, url=m["homepage"] or "", paper=m["paper"], sha256=m["sha256"], weight_files=files or WEIGHT_FILES,
        aliases=tuple(m["aliases"]), notes=m["notes"], venue=m["venue"], source=src, size=m["size"],
        format=m["format"], activation=m["activation"],
        logit_scale=None if m["logit_scale"] is None else float(m["logit_scale"]), licence=m["licence"],
        tokenizer=m["tokenizer"], reproduces=tuple(dict(r) for r in m["reproduces"]), config_files=configs)


def _shipped_entry(e: CatalogueEntry) -> CatalogueEntry:
    """A ``shipped`` entry completed from the package's manifest (file, sha256, its shipped name as an alias)."""
    import dataclasses

    from zsrbench.models import shipped

    d = e.source.get("defense")
    info = shipped._entries().get(str(d))
    if info is None:  # the package ships no such file (a trimmed installation): listed, not loadable
        return e
    ship = shipped._shipped(str(d), info)
    eps = e.train_eps
    try:
        eps = float(ship.training().get("hparams", {}).get("eps")) if eps is None else eps
    except (OSError, ValueError, TypeError):
        pass
    return dataclasses.replace(e, sha256=ship.sha256, aliases=(*e.aliases, ship.name), train_eps=eps,
                               source={**e.source, "file": ship.path.name, "shipped_name": ship.name},
                               url=e.url or "zsrbench/micro/weights/defenses/manifest.json")


@functools.lru_cache(maxsize=1)
def _zoo() -> tuple[CatalogueEntry, ...]:
    out = []
    for m in _zoo_data()["models"]:
        e = _from_json(m)
        out.append(_shipped_entry(e) if e.kind == "shipped" else e)
    return tuple(out)


_EXTRA: dict[str, CatalogueEntry] = {}  # entries added at run time (plugins, tests)


def register(entry: CatalogueEntry) -> CatalogueEntry:
    _EXTRA[entry.name] = entry
    return entry


def entries() -> list[CatalogueEntry]:
    seen = {e.name: e for e in _zoo()}
    seen.update(_EXTRA)
    return list(seen.values())


def _norm(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


def lookup(name: str) -> CatalogueEntry | None:
    """The entry named ``name`` (its name, an alias, or its ``hf-hub:`` id when one entry alone uses that repo),
    else None."""
    key = _norm(name)
    all_entries = entries()
    repos: dict[str, int] = {}
    for e in all_entries:
        if e.hf_hub:
            repos[_norm(e.hf_hub)] = repos.get(_norm(e.hf_hub), 0) + 1
    for e in all_entries:
        if key == _norm(e.name) or key in {_norm(a) for a in e.aliases}:
            return e
    for e in all_entries:
        if e.hf_hub and repos[_norm(e.hf_hub)] == 1 and key in {_norm(e.hf_hub), _norm(f"hf-hub:{e.hf_hub}")}:
            return e
    return None


def get(name: str) -> CatalogueEntry:
    e = lookup(name)
    if e is None:
        names = [x.name for x in entries()]
        close = difflib.get_close_matches(_norm(name), names, n=1)
        if not close:  # a close alias names its model
            aliases = {_norm(a): x.name for x in entries() for a in x.aliases}
            hit = difflib.get_close_matches(_norm(name), list(aliases), n=1)
            close = [aliases[hit[0]]] if hit else []
        raise ZsrError(f"Unknown published checkpoint '{name}'." + (f" Did you mean '{close[0]}'?" if close else "")
                       + f" The model zoo has {len(names)} models: `zsrbench zoo list` shows them (names and "
                       "aliases are accepted).")
    return e


def table() -> str:
    """The catalogue as JSON lines (for ``zsrbench list`` style output)."""
    return "\n".join(json.dumps(e.describe()) for e in entries())
