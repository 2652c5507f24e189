"""Rebuild the micro defenses that ship with the package (zsrbench/micro/weights/defenses/).

    python scripts/ship_micro_defenses.py [--defenses tecoa,fare] [--work DIR]

Each trainable built-in defense is fine-tuned with the micro protocol's shared recipe and seed (exactly what
`zsrbench train --protocol micro --defense D` does; training runs on one intra-op thread, so any core count gives
the same weights), and its visual tower is written as canonical safetensors bytes with the training manifest
next to it; manifest.json pins each file's sha256, the on-demand key it was trained under and the model id it
gives. A defense whose folder in --work is already trained is not trained again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from zsrbench.defenses.base import LoadSpec, instantiate
from zsrbench.defenses.identity import model_id
from zsrbench.models import shipped
from zsrbench.registry import DEFENSES, PROTOCOLS, load_builtins
from zsrbench.training.outputs import export_visual, shipped_training
from zsrbench.training.on_demand import on_demand_key
from zsrbench.training import train_defense


def ship(defense: str, proto, work: Path) -> dict:
    seed = proto.seed
    out = work / defense
    result = train_defense(defense, protocol=proto, out_dir=out, seed=seed, device="cpu", resume=True,
                           keep_checkpoints=False, progress=True)
    blob = export_visual(out)
    target = shipped.SHIPPED_DIR / f"{defense}.safetensors"
    target.write_bytes(blob)
    target.with_suffix(".json").write_text(json.dumps(shipped_training(result.manifest), indent=1,
                                                      default=str) + "\n", encoding="utf-8")
    d = instantiate(DEFENSES.get(defense))
    parts = d.load(LoadSpec(model=proto.default_model, pretrained=proto.default_pretrained, checkpoint=str(target)))
    return {"file": target.name, "sha256": hashlib.sha256(blob).hexdigest(), "protocol": proto.name,
            "version": proto.version, "seed": seed, "key": on_demand_key(defense, proto, seed),
            "model_id": model_id(d, parts), "tensors_sha256": parts.tensors_sha256(), "training": target.with_suffix(".json").name}


def main() -> None:
    load_builtins()
    proto = PROTOCOLS.get("micro")
    trainable = [n for n in DEFENSES.names() if DEFENSES.origin(n) == "zsrbench"
                 and getattr(DEFENSES.get(n), "trainable", False)]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--defenses", default=",".join(trainable))
    ap.add_argument("--work", default="ship-work", help="folder for the training outputs (kept for resuming)")
    args = ap.parse_args()
    shipped.SHIPPED_DIR.mkdir(parents=True, exist_ok=True)
    path = shipped.SHIPPED_DIR / shipped.MANIFEST
    manifest = json.loads(path.read_text()) if path.is_file() else {"defenses": {}}
    manifest["about"] = ("fine-tuned visual towers of the micro defenses the committed leaderboard evaluates; "
                         "rebuilt by scripts/ship_micro_defenses.py, loaded by zsrbench.models.shipped")
    for name in args.defenses.split(","):
        manifest["defenses"][name] = ship(name, proto, Path(args.work))
        print(name, manifest["defenses"][name]["model_id"], manifest["defenses"][name]["sha256"][:16], flush=True)
        manifest["defenses"] = dict(sorted(manifest["defenses"].items()))
        path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
