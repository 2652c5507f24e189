"""What a defense is asked to load (:class:`LoadSpec`) and how :meth:`Defense.load
<zsrbench.defenses.base.Defense.load>` finds the weights to evaluate by default: a catalogue
checkpoint, a folder written by ``zsrbench train`` (its manifest's sha256 verified and its training provenance
recorded in the model's ``source``), an ``hf-hub:`` id or a visual-encoder state-dict file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zsrbench.errors import ZsrError
from zsrbench.models.clip import CLIPParts, build_clip
from zsrbench.models.weights import check_model_folder, check_sha256_text, sha256_file


@dataclass(frozen=True)
class LoadSpec:
    """What the user asked to load: an open_clip model (+ pretrained tag) and optionally a checkpoint."""

    model: str
    pretrained: str | None = None
    checkpoint: str | None = None  # a file, a local-dir: folder, a zsrbench train folder, or a catalogue name
    checkpoint_sha256: str | None = None
    trust_checkpoint: bool = False
    allow_download: bool = True  # catalogue checkpoints: download when not cached (False: cache only)


def load_checkpoint(spec: LoadSpec, *, device: str, defense: str, trainable: bool) -> CLIPParts:
    """The model ``spec`` names, loaded for the defense called ``defense`` (a ``trainable`` one refuses another
    defense's published checkpoint); see :meth:`Defense.load <zsrbench.defenses.base.Defense.load>`."""
    model, checkpoint = spec.model, spec.checkpoint
    if checkpoint is not None and str(checkpoint).startswith("cache:"):
        from zsrbench.paths import resolve_portable

        checkpoint = resolve_portable(str(checkpoint))
    if checkpoint is not None:
        from zsrbench.models import catalogue, zoo_fetch

        entry = catalogue.lookup(str(checkpoint))
        if entry is not None:
            if trainable and entry.defense != defense:
                if entry.defense == "clip":  # its method is none of zsrbench's defenses: plain CLIP weights
                    raise ZsrError(
                        f"Checkpoint '{entry.name}' is not a {defense} checkpoint: it is published CLIP weights of a "
                        "method zsrbench has no defense for. Use --defense clip."
                    )
                raise ZsrError(
                    f"Checkpoint '{entry.name}' is a published {entry.defense} checkpoint, not {defense}. "
                    f"Use --defense {entry.defense} (or --defense clip to evaluate it without a label)."
                )
            return zoo_fetch.load(entry, device=device, allow_download=spec.allow_download,
                                  expected_sha256=spec.checkpoint_sha256)
    if checkpoint is not None and str(checkpoint).startswith("local-dir:"):
        return _load_folder(Path(str(checkpoint).split(":", 1)[1]), device=device, expected=spec.checkpoint_sha256)
    if checkpoint is not None and Path(checkpoint).is_dir():
        return _load_folder(Path(checkpoint), device=device, expected=spec.checkpoint_sha256)
    if checkpoint is not None and str(checkpoint).startswith("hf-hub:"):
        if spec.checkpoint_sha256:
            raise ZsrError(
                f"--checkpoint-sha256 cannot be checked for {checkpoint}: open_clip downloads it itself. Download "
                "the repository (`huggingface-cli download ORG/REPO --local-dir DIR`) and pass --checkpoint DIR, "
                "or drop --checkpoint-sha256."
            )
        return build_clip(str(checkpoint), None, device=device)
    return build_clip(
        model, spec.pretrained, checkpoint=checkpoint, checkpoint_sha256=spec.checkpoint_sha256,
        trust_checkpoint=spec.trust_checkpoint, device=device,
    )


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    """The ``manifest.json`` ``zsrbench train`` wrote into ``folder`` (None when there is none)."""
    path = folder / "manifest.json"
    if not path.is_file():
        return None
    from zsrbench.jsonio import read

    try:
        manifest = read(path, "training manifest")
    except ZsrError as exc:
        raise ZsrError(f"{exc} The training output is damaged: restore the file or re-run `zsrbench train`.") from None
    if not isinstance(manifest, dict):
        raise ZsrError(f"{path} is not a zsrbench training manifest (a JSON object); restore it or re-run "
                       "`zsrbench train`.")
    return manifest


def _verify_manifest_weights(folder: Path, manifest: dict[str, Any]) -> None:
    """The weights file the manifest names exists and has the sha256 it records."""
    name, want = manifest.get("weights_file"), manifest.get("weights_sha256")
    if not name:
        return
    wfile = folder / str(name)
    if not wfile.is_file():
        raise ZsrError(f"{folder}/manifest.json names the weights file {name}, but it is missing. Restore it (copy "
                       "the whole folder again) or re-run `zsrbench train`.")
    got = sha256_file(wfile) if want else None
    if got != want:
        raise ZsrError(
            f"{wfile} has sha256 {got}, but its manifest says {want}: the weights changed after training. "
            "Re-run `zsrbench train` or restore the file."
        )


def _load_folder(folder: Path, *, device: str, expected: str | None = None) -> CLIPParts:
    """An open_clip ``local-dir`` folder; when ``zsrbench train`` wrote it, its manifest's sha256 is verified."""
    want = check_sha256_text(expected) if expected else None
    if not folder.is_dir():
        raise ZsrError(f"Model folder {folder} does not exist; pass a folder written by `zsrbench train`.")
    check_model_folder(folder)
    manifest = _read_manifest(folder)
    if manifest is not None:
        _verify_manifest_weights(folder, manifest)
    parts = build_clip(f"local-dir:{folder}", None, device=device)
    got = parts.source.get("weights_sha256")
    if want and got != want:
        raise ZsrError(f"Weights in {folder} have sha256 {got}, but {want} was expected: the folder holds other "
                       "weights than the ones you named. Copy the right folder, or drop --checkpoint-sha256.")
    if manifest is not None:
        _record_training(parts, manifest)
    return parts


def _record_training(parts: CLIPParts, manifest: dict[str, Any]) -> None:
    parts.source["trained_by_zsrbench"] = {
        k: manifest.get(k) for k in ("defense", "protocol", "train_dataset", "seed", "steps", "weights_sha256")
    }
    # every training choice (quirks included) travels into the result records
    parts.source["hparams"] = dict(manifest.get("hparams") or {})
    parts.source["base_architecture"] = (manifest.get("base_model") or {}).get("architecture")
    parts.source.setdefault("notes", []).extend(str(n) for n in manifest.get("notes") or [])
