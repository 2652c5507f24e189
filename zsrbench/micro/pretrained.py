"""Where the shipped micro CLIP lives, and how a pretrained tag resolves to it.

The weights ship inside the package as an open_clip ``local-dir:`` folder::

    zsrbench/micro/weights/zsr-micro/
        open_clip_config.json        (model_cfg = zsrbench/model_configs/zsr-micro.json, CLIP mean/std)
        open_clip_model.safetensors  (fp16)
        manifest.json                (seed, steps, sha256, accuracies, the command that rebuilds it)

Both ``build_clip("local-dir:" + str(resolve_micro_weights()))`` and ``build_clip("zsr-micro", "zsrbench")``
(once ``zsrbench.models`` maps the tag with :func:`resolve_pretrained`) load it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zsrbench.errors import ZsrError

ARCH = "zsr-micro"
PRETRAINED_TAG = "zsrbench"
WEIGHTS_DIR = Path(__file__).parent / "weights" / ARCH
WEIGHTS_FILE = "open_clip_model.safetensors"
MANIFEST_FILE = "manifest.json"
REBUILD_HINT = "Rebuild them with `zsrbench pretrain --protocol micro --out {dir}` (see manifest.json for the seed and steps)."


def resolve_micro_weights() -> Path:
    """The folder of the shipped micro CLIP (an open_clip ``local-dir:`` model)."""
    if not (WEIGHTS_DIR / WEIGHTS_FILE).is_file():
        raise ZsrError(f"The micro CLIP weights are missing from {WEIGHTS_DIR}. " + REBUILD_HINT.format(dir=WEIGHTS_DIR))
    return WEIGHTS_DIR


def local_dir_name() -> str:
    """``local-dir:<path>``: the model name build_clip accepts for the shipped micro CLIP."""
    return f"local-dir:{resolve_micro_weights()}"


def resolve_pretrained(arch: str, tag: str | None) -> str | None:
    """The weights file for ``(arch, tag)`` when zsrbench ships it, else None (leave the tag to open_clip).

    ``("zsr-micro", "zsrbench")`` -> ``.../zsrbench/micro/weights/zsr-micro/open_clip_model.safetensors``,
    a path open_clip's ``create_model(arch, pretrained=<file>)`` loads strictly.
    """
    if tag != PRETRAINED_TAG:
        return None
    if arch != ARCH:
        raise ZsrError(f"Pretrained tag '{PRETRAINED_TAG}' exists only for {ARCH}, not {arch}.")
    return str(resolve_micro_weights() / WEIGHTS_FILE)


def manifest() -> dict[str, Any]:
    return json.loads((resolve_micro_weights() / MANIFEST_FILE).read_text())


def verify_weights() -> dict[str, Any]:
    """Check the shipped weights against their manifest's sha256; return the manifest."""
    from zsrbench.models import sha256_file

    m = manifest()
    digest = sha256_file(WEIGHTS_DIR / WEIGHTS_FILE)
    if digest != m["weights_sha256"]:
        raise ZsrError(f"{WEIGHTS_DIR / WEIGHTS_FILE} has sha256 {digest}, the manifest says {m['weights_sha256']}. "
                       + REBUILD_HINT.format(dir=WEIGHTS_DIR))
    return m

