"""One identity per model: ids name the tensors (not a file's bytes), and records name no machine-local path.

Offline, CPU: ``zsr-tiny`` trained for 2 steps on the ``synthetic`` protocol, evaluated with PGD-3.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from zsrbench.cli import app
from zsrbench.leaderboard import store
from zsrbench.leaderboard.machine_local import local_paths
from zsrbench.leaderboard.records import read_record
from zsrbench.leaderboard.validate import validate_path

cli = CliRunner()
FAST = ["--protocol", "synthetic", "--steps", "3", "--quiet"]
TRAIN = ["train", "--defense", "tga_zsr", "--protocol", "synthetic", "--steps", "2", "--seed", "0", "--device", "cpu",
         "--set", "lr=1e-3"]


def invoke(*args):
    res = cli.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def resave_differently(folder: Path) -> None:
    """Write the same tensors again in another key order with other metadata (as another process might), and
    keep the manifest consistent with the new file (so only the file's bytes differ)."""
    from safetensors.torch import load_file, save_file

    from zsrbench.models.weights import sha256_file

    wfile = folder / "open_clip_model.safetensors"
    state = load_file(str(wfile))
    save_file({k: state[k] for k in sorted(state, reverse=True)}, str(wfile),
              metadata={"format": "pt", "producer": "another process", "note": "same tensors"})
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["weights_sha256"] = sha256_file(wfile)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))


@pytest.fixture(scope="module")
def two_trainings(tmp_path_factory):
    """The same defense trained twice with the same seed; the second copy's file re-saved byte-differently."""
    root = tmp_path_factory.mktemp("twice")
    a, b = root / "run-a", root / "run-b"
    invoke(*TRAIN, "--out", a)
    invoke(*TRAIN, "--out", b)
    resave_differently(b)
    return a, b


def test_same_tensors_in_a_different_file_have_one_digest(two_trainings):
    from zsrbench.models.clip import build_clip
    from zsrbench.models.weights import sha256_file, sha256_state

    a, b = two_trainings
    wa, wb = a / "open_clip_model.safetensors", b / "open_clip_model.safetensors"
    assert sha256_file(wa) != sha256_file(wb)  # the files differ byte-wise …
    pa, pb = build_clip(f"local-dir:{a}"), build_clip(f"local-dir:{b}")
    assert pa.source["weights_sha256"] != pb.source["weights_sha256"]
    # … the tensors (visual and text tower) do not
    assert pa.source["tensors_sha256"] == pb.source["tensors_sha256"] == sha256_state(pa.model.state_dict())
    assert pa.tensors_sha256() == pb.tensors_sha256()
    with torch.no_grad():
        pa.model.visual.proj.add_(1e-3)
    assert sha256_state(pa.model.state_dict()) != pb.source["tensors_sha256"]  # any change is a new identity


def test_two_trainings_are_one_model_and_one_leaderboard_entry(two_trainings, tmp_path):
    a, b = two_trainings
    board, results = tmp_path / "board", tmp_path / "results"
    first = invoke("run", "--defense", "tga_zsr", "--checkpoint", a, "--results-dir", results / "a",
                   "--leaderboard-dir", board, *FAST[:-1])
    second = invoke("run", "--defense", "tga_zsr", "--checkpoint", b, "--results-dir", results / "b",
                    "--leaderboard-dir", board, *FAST[:-1])
    recs = {k: read_record(next((results / k).rglob("synthetic_shapes.json"))) for k in ("a", "b")}
    ra, rb = recs["a"].model, recs["b"].model
    assert ra.id == rb.id and ra.id.startswith("tga_zsr/zsr-tiny/") and ra.id.endswith(ra.tensors_sha256[:12])
    assert ra.tensors_sha256 == rb.tensors_sha256 and ra.weights_sha256 != rb.weights_sha256
    assert (ra.checkpoint, rb.checkpoint) == ("run-a", "run-b")  # folders outside the cache: their names only
    assert ra.architecture == "zsr-tiny" and ra.hparams["attention_size"] == 224  # training choices recorded
    assert not local_paths(ra) and not local_paths(rb)
    dirs = store.entry_dirs(board)
    assert len(dirs) == 1  # ONE entry …
    assert [n for n, _ in store.revision_files(dirs[0])] == [1]  # … and the second run reproduced it
    assert "leaderboard:" in first.output and "reproduced r0001" in second.output
    e = store.read_entry(dirs[0] / "r0001.json")
    assert e.model.id == ra.id and e.model.tensors_sha256 == ra.tensors_sha256 and e.model.architecture == "zsr-tiny"
    assert validate_path(board).ok


def test_on_demand_fine_tune_is_named_by_its_cache_path(tmp_path):
    """A folder in zsrbench's cache is recorded as cache:<path>; the architecture is the base one; the name loads."""
    from zsrbench.paths import cache_dir

    res = tmp_path / "r"
    invoke("run", "--defense", "tecoa", "--results-dir", res, "--no-leaderboard", *FAST)
    rec = read_record(next(res.rglob("synthetic_shapes.json")))
    m = rec.model
    assert m.checkpoint.startswith("cache:defenses/synthetic-v1/tecoa-s0-") and m.architecture == "zsr-tiny"
    assert (cache_dir() / m.checkpoint.removeprefix("cache:") / "manifest.json").is_file()
    assert not local_paths(m) and str(cache_dir()) not in json.dumps(rec.model_dump(mode="json"))
    # the recorded name can be passed back: same tensors, same id
    again = tmp_path / "again"
    invoke("run", "--defense", "tecoa", "--checkpoint", m.checkpoint, "--results-dir", again, "--no-leaderboard", *FAST)
    assert read_record(next(again.rglob("synthetic_shapes.json"))).model.id == m.id


def test_ids_of_pretrained_and_random_models_name_their_tensors(tmp_path):
    from zsrbench.defenses.base import LoadSpec
    from zsrbench.models.clip import build_clip
    from zsrbench.registry import DEFENSES, load_builtins
    from zsrbench.defenses.identity import model_id

    load_builtins()
    torch.manual_seed(0)
    p0 = build_clip("zsr-tiny")
    torch.manual_seed(0)
    p0b = build_clip("zsr-tiny")
    torch.manual_seed(1)
    p1 = build_clip("zsr-tiny")
    assert model_id("clip", p0) == model_id("clip", p0b) == f"clip/zsr-tiny/{p0.source['tensors_sha256'][:12]}"
    assert model_id("clip", p1) != model_id("clip", p0)  # another seed, other tensors: another model
    # a visual checkpoint file: the id names the loaded model's tensors, not the file
    ckpt = tmp_path / "visual.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in p1.visual.state_dict().items()}}, ckpt)
    torch.manual_seed(0)
    loaded = DEFENSES.get("clip")().load(LoadSpec(model="zsr-tiny", checkpoint=str(ckpt)))
    assert loaded.source["checkpoint_sha256"] and model_id("clip", loaded) != model_id("clip", p0)
    assert loaded.portable_checkpoint() == "visual.pt"
