"""The model zoo: zoo.json validates, `zsrbench zoo list|show|fetch`, and fetching without the network.

Downloads never reach the network here: the Hub is a fake ``zoo_fetch._hf_download``, URLs are served by a fake
opener (``download.urllib_opener`` replaced), and Google Drive is never downloaded from at all.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from test_defenses import _no_network  # the Hub without network: not cached, then no connection
from zsrbench.cli import app
from zsrbench.errors import ZsrError
from zsrbench.models import catalogue, download, zoo_fetch

runner = CliRunner()
PAYLOAD = bytes(range(256)) * 4099  # ~1 MiB of a known file
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    """CLI output without line wrapping (paths and URLs come back whole)."""
    return re.sub(r"\s*\n\s*", " ", text)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache of its own (pins.json included), the network allowed (the fakes answer)."""
    root = tmp_path / "zsrbench-cache"
    monkeypatch.setenv("ZSRBENCH_CACHE", str(root))
    monkeypatch.delenv("ZSRBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return root / "checkpoints"


@pytest.fixture
def extra():
    """Register test entries; they are removed afterwards."""
    added: list[str] = []

    def add(entry):
        added.append(entry.name)
        return catalogue.register(entry)

    yield add
    for name in added:
        catalogue._EXTRA.pop(name, None)


def url_entry(name="zoo-test-url", sha256=PAYLOAD_SHA, size=None):
    return catalogue.CatalogueEntry(
        name, "fare", "zsr-tiny", None, 4.0, "synthetic", None, "https://example.org/model", "test", sha256=sha256,
        size=size, format="visual", source={"kind": "url", "url": "https://files.example.org/m.pt", "file": "m.pt"})


class FakeServer:
    """Serves PAYLOAD like an HTTP server that honours Range (or not); can cut the transfer after ``cut`` bytes."""

    def __init__(self, payload=PAYLOAD, ranges=True, cut=None):
        self.payload, self.ranges, self.cut = payload, ranges, cut
        self.requests: list[dict] = []

    def __call__(self, url, headers):
        self.requests.append(dict(headers))
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", headers.get("Range", ""))
        if m and self.ranges:
            start = int(m.group(1))
        body = self.payload[start:]
        total = len(self.payload)
        hdrs = {"Content-Length": str(len(body))}
        if start:
            hdrs["Content-Range"] = f"bytes {start}-{total - 1}/{total}"
        if self.cut is not None:
            body = body[: self.cut]
        return FakeResponse(206 if start else 200, hdrs, body)


class FakeResponse:
    def __init__(self, status, headers, body):
        self.status, self.headers, self._body, self._at = status, headers, body, 0
        self.closed = False

    def read(self, n=-1):
        n = len(self._body) - self._at if n < 0 else n
        chunk = self._body[self._at:self._at + n]
        self._at += len(chunk)
        return chunk

    def close(self):
        self.closed = True


# --- the catalogue file ---------------------------------------------------------------------------------------


def test_zoo_json_validates():
    data = json.loads(catalogue.ZOO_FILE.read_text(encoding="utf-8"))
    models = data["models"]
    assert catalogue.validate() == []
    assert len(models) >= 20
    assert [m["name"] for m in models] == sorted(m["name"] for m in models)
    keys = set()
    for m in models:
        assert set(m) == set(catalogue.REQUIRED), m["name"]
        assert m["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", m["sha256"]), m["name"]
        assert m["format"] in ("open_clip", "visual", "vision_encoder_state_dict", "transformers")
        assert m["source"]["kind"] in ("hf-hub", "url", "gdrive", "shipped")
        for k in [m["name"], *m["aliases"]]:
            assert catalogue._norm(k) not in keys, k
            keys.add(catalogue._norm(k))
        if m["architecture"].endswith("-quickgelu"):
            assert m["base"] == "openai" and m["activation"] == "quickgelu", m["name"]
    kinds = {m["source"]["kind"] for m in models}
    assert kinds == {"hf-hub", "url", "gdrive", "shipped"}
    assert {m["format"] for m in models} == {"open_clip", "visual", "vision_encoder_state_dict", "transformers"}


def test_zoo_has_the_models_the_issue_names():
    by_name = {e.name: e for e in catalogue.entries()}
    for name in ("fare2-clip", "fare4-clip", "tecoa2-clip", "tecoa4-clip", "fare4-vit-b-32-laion2b",
                 "tecoa4-vit-b-32-laion2b", "fare4-vit-b-16-laion2b", "tecoa4-vit-b-16-laion2b",
                 "fare4-convnext-b-laion2b", "tecoa4-convnext-b-laion2b", "fare4-vit-b-32-openai",
                 "tecoa4-vit-b-32-openai", "tecoa-vit-b-32-original", "simclip4-vit-l-14", "qtaft-vit-b-16",
                 "qtaft-vit-l-14", "leaf-vit-l-14-rho50-fare2", "delta-clip-l14-224", "tga-zsr-vit-b-32",
                 "comp-tga-vit-b-32", "advflyp-vit-b-32", "ttc-tecoa-vit-b-32", "micro-fare"):
        assert name in by_name, name
    assert by_name["qtaft-vit-b-16"].logit_scale == 100.0
    assert "own tokenizer" in by_name["delta-clip-l14-224"].tokenizer
    assert "vocab.txt" in by_name["delta-clip-l14-224"].config_files
    assert by_name["leaf-vit-l-14-rho50-fare2"].format == "transformers"
    assert by_name["fare2-clip"].pinned and by_name["fare2-clip"].weight_files == ("open_clip_pytorch_model.bin",)
    # the shipped micro defenses are entries too, pinned by the package's manifest, named also by their shipped name
    micro = by_name["micro-fare"]
    assert micro.kind == "shipped" and micro.pinned and "zsrbench:micro-v3/fare-s0" in micro.aliases
    assert catalogue.lookup("zsrbench:micro-v3/fare-s0") is micro


def test_every_defense_is_registered_and_every_published_row_exists():
    from zsrbench.cli.zoo import published_rows
    from zsrbench.registry import DEFENSES

    for e in catalogue.entries():
        DEFENSES.get(e.defense)
        rows = published_rows(e)
        assert len(rows) >= len(e.reproduces), e.name
    assert {(r["attack"], r["eps"]) for r in published_rows(catalogue.get("fare1-vit-b-32-openai"))} == {
        ("none", "-"), ("aa-fare", "1/255"), ("aa-fare", "2/255"), ("aa-fare", "4/255")}
    qtaft = published_rows(catalogue.get("qtaft-vit-b-16"))  # per-dataset numbers, no printed average
    assert [(r["attack"], r["average"], r["per_dataset"]) for r in qtaft] == [
        ("none", None, {"cifar10": 69.3, "cifar100": 46.6, "stl10": 92.7}),
        ("aa-lite", None, {"cifar10": 30.0, "cifar100": 16.2, "stl10": 63.0})]
    # the paper's aa-lite row of TGA-ZSR is another model (β = 0.009): the zoo entry does not claim it
    tga = published_rows(catalogue.get("tga-zsr-vit-b-32"))
    assert sorted(r["attack"] for r in tga) == ["cw100", "none", "pgd100"]
    assert [r["average"] for r in tga if r["attack"] == "pgd100"] == [42.09]


def test_names_aliases_and_repo_ids_resolve():
    assert catalogue.lookup("FARE2") is catalogue.lookup("hf-hub:chs20/fare2-clip") is catalogue.get("fare2-clip")
    assert catalogue.lookup("sim-clip4").name == "simclip4-vit-l-14"
    # a repo that holds two models names neither
    assert catalogue.lookup("hossainzarif19/SimCLIP") is None
    with pytest.raises(ZsrError, match="Did you mean 'simclip4-vit-l-14'"):
        catalogue.get("simclip4-vit-l14")


# --- the command ------------------------------------------------------------------------------------------------


def test_zoo_list():
    r = invoke("zoo", "list", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert len(rows) >= 20 and {"name", "defense", "architecture", "train_eps", "format", "pinned", "source"} <= set(rows[0])
    assert any(x["pinned"] for x in rows) and any(not x["pinned"] for x in rows)
    r = invoke("zoo", "list")
    assert r.exit_code == 0 and "fare2-clip" in r.output and "unpinned" in r.output and "gdrive" in r.output


def test_zoo_show_has_the_published_rows():
    r = invoke("zoo", "show", "fare4-clip")
    assert r.exit_code == 0, r.output
    assert "chs20/fare4-clip" in r.output and "ViT-L-14-quickgelu" in r.output and "45.9" in r.output
    r = invoke("zoo", "show", "tecoa4-vit-b-16-laion2b", "--json")
    info = json.loads(r.output)
    assert info["sha256"] == "e687adcdbcc9694947b6bf590d768cf667eddf04a5800c511fa4ffded4c48510"
    assert [row["average"] for row in info["published_rows"]] == [51.5, 45.0, 38.4, 26.4]
    assert info["cache_path"].endswith("checkpoints/zoo/tecoa4-vit-b-16-laion2b")


def test_unknown_name_is_one_paragraph_with_a_close_match():
    r = invoke("zoo", "show", "fare4-clp")
    assert r.exit_code == 2 and "Did you mean 'fare4-clip'" in r.output and "Traceback" not in r.output
    r = invoke("zoo", "fetch", "no-such-model-at-all")
    assert r.exit_code == 2 and "zsrbench zoo list" in flat(r.output)


# --- fetching: the Hub ------------------------------------------------------------------------------------------


def test_hf_hub_fetch_offline_names_the_url_and_the_cache_path(cache, monkeypatch):
    calls: list = []
    monkeypatch.setattr(zoo_fetch, "_hf_download", _no_network(calls))
    monkeypatch.setenv("ZSRBENCH_OFFLINE", "1")
    r = invoke("zoo", "fetch", "fare4-clip")
    text = flat(r.output)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "https://huggingface.co/chs20/fare4-clip" in text and str(cache / "zoo" / "fare4-clip") in text
    assert "not in the cache" in text and "offline" in text
    assert calls and all(local for _, _, local in calls)  # the cache only, never the network
    # no network at all (not offline): the same advice after the failed download
    monkeypatch.delenv("ZSRBENCH_OFFLINE")
    calls.clear()
    r = invoke("zoo", "fetch", "fare2-clip")
    text = flat(r.output)
    assert r.exit_code == 2 and "Could not download checkpoint 'fare2-clip'" in text
    assert "huggingface.co/chs20/fare2-clip" in text and str(cache / "zoo" / "fare2-clip") in text
    assert ("chs20/fare2-clip", "open_clip_pytorch_model.bin", False) not in calls  # stopped at the config


def _fake_hub(repo_files: dict[str, bytes], calls=None):
    from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

    def fake(repo_id, filename, *, cache, local_files_only):
        if calls is not None:
            calls.append((filename, local_files_only))
        target = Path(cache) / f"models--{repo_id.replace('/', '--')}" / "snapshots" / "x" / filename
        if target.is_file():
            return str(target)
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        if filename not in repo_files:  # the Hub's 404 (built without an HTTP response)
            missing = RemoteEntryNotFoundError.__new__(RemoteEntryNotFoundError)
            Exception.__init__(missing, f"404: {filename} is not in {repo_id}")
            raise missing
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(repo_files[filename])
        return str(target)

    return fake


def test_hf_hub_multi_file_models_download_together_and_are_pinned(cache, monkeypatch, extra):
    files = {"open_clip_config.json": b'{"model_cfg": {}}', "open_clip_pytorch_model.bin": PAYLOAD,
             "tokenizer.json": b"{}", "vocab.txt": b"[PAD]\n"}
    monkeypatch.setattr(zoo_fetch, "_hf_download", _fake_hub(files))
    e = extra(catalogue.CatalogueEntry(
        "zoo-test-delta", "clip", "ViT-L-14", None, None, None, "someone/delta", "https://example.org", "test",
        weight_files=("open_clip_pytorch_model.bin",), config_files=("open_clip_config.json", "tokenizer.json", "vocab.txt")))
    folder, prov = zoo_fetch.fetch(e)
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    assert prov["checkpoint_sha256"] == PAYLOAD_SHA and prov["sha256_pinned_now"] and prov["downloaded_now"]
    pins = json.loads((cache / "pins.json").read_text())["zoo-test-delta"]["files"]
    assert set(pins) == set(files) and pins["vocab.txt"]["sha256"] == hashlib.sha256(b"[PAD]\n").hexdigest()
    # a changed tokenizer in the cache is refused against its pin, and nothing is deleted
    (folder / "vocab.txt").write_bytes(b"[UNK]\n")
    with pytest.raises(ZsrError, match=r"vocab.txt has sha256 .* pinned on its first use") as err:
        zoo_fetch.fetch(e)
    assert "delete" in str(err.value) and (folder / "vocab.txt").read_bytes() == b"[UNK]\n"


def test_only_the_checked_weights_file_is_in_the_folder_a_loader_reads(cache, monkeypatch, extra):
    """An unverified weights file of another name beside the checked one (a whole-repo download in the Hub cache)
    would be picked by open_clip's folder loader: the entry's files are assembled in a folder of their own."""
    files = {"open_clip_config.json": b'{"model_cfg": {}}', "open_clip_pytorch_model.bin": PAYLOAD}
    monkeypatch.setattr(zoo_fetch, "_hf_download", _fake_hub(files))
    e = extra(catalogue.CatalogueEntry("zoo-test-two", "fare", "ViT-B-16", "x", 4.0, None, "someone/two",
                                       "https://example.org", "test", sha256=PAYLOAD_SHA,
                                       weight_files=("open_clip_pytorch_model.bin",)))
    snapshot = cache / "models--someone--two" / "snapshots" / "x"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"not the published weights")
    folder, prov = zoo_fetch.fetch(e)
    assert folder != snapshot and sorted(p.name for p in folder.iterdir()) == sorted(files)
    assert (folder / "open_clip_pytorch_model.bin").read_bytes() == PAYLOAD and prov["sha256_verified"]
    assert zoo_fetch.fetch(e)[0] == folder  # again: the same folder, nothing re-copied


def test_transformers_models_fetch_config_and_one_weights_file(cache, monkeypatch, extra):
    files = {"config.json": b'{"model_type": "clip"}', "model.safetensors": PAYLOAD}
    calls: list = []
    monkeypatch.setattr(zoo_fetch, "_hf_download", _fake_hub(files, calls))
    e = extra(catalogue.CatalogueEntry("zoo-test-hf", "clip", "ViT-L-14-quickgelu", "openai", 2.0, None, "leaf/x",
                                       "https://example.org", "test", format="transformers",
                                       weight_files=catalogue.HF_WEIGHT_FILES, config_files=("config.json",)))
    folder, prov = zoo_fetch.fetch(e)
    assert {"config.json", "model.safetensors"} <= {p.name for p in folder.iterdir()}
    assert prov["format"] == "transformers" and ("preprocessor_config.json", False) in calls  # optional, tried


def test_an_unnamed_hub_file_lists_the_repository_and_says_where_to_put_it(cache, monkeypatch):
    monkeypatch.setattr(zoo_fetch, "_hf_list", lambda repo: [".gitattributes", "README.md", "a.pth.tar", "b.pth.tar"])
    r = invoke("zoo", "fetch", "qtaft-vit-b-16")
    text = flat(r.output)
    assert r.exit_code == 2 and "a.pth.tar, b.pth.tar" in text
    assert str(cache / "zoo" / "qtaft-vit-b-16" / "checkpoint.pth.tar") in text


# --- fetching: a plain URL ---------------------------------------------------------------------------------------


def test_url_download_resumes_from_a_part_file_and_verifies(cache, extra):
    e = extra(url_entry())
    dest = zoo_fetch.manual_dir(e) / "m.pt"
    dest.parent.mkdir(parents=True)
    dest.with_name("m.pt.part").write_bytes(PAYLOAD[:300_000])
    server = FakeServer()
    path, prov = zoo_fetch.fetch(e, opener=server)
    assert path == dest and path.read_bytes() == PAYLOAD and not dest.with_name("m.pt.part").exists()
    assert server.requests == [{"Range": "bytes=300000-"}]
    assert prov["sha256_verified"] and prov["downloaded_now"] and not prov["placed_by_hand"]
    # from the cache now: no request, still verified, not taken for a file placed by hand
    path, prov = zoo_fetch.fetch(e, opener=server)
    assert len(server.requests) == 1 and prov["sha256_verified"] and not prov["placed_by_hand"]


def test_url_download_without_range_support_and_a_cut_transfer(cache, extra):
    e = extra(url_entry())
    part = zoo_fetch.manual_dir(e) / "m.pt.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"junk" * 10)
    path, _ = zoo_fetch.fetch(e, opener=FakeServer(ranges=False))  # whole file again, the part replaced
    assert path.read_bytes() == PAYLOAD
    path.unlink()
    with pytest.raises(ZsrError, match=r"Could not download checkpoint 'zoo-test-url'.*400000 bytes already at"):
        zoo_fetch.fetch(e, opener=FakeServer(cut=400_000))
    assert part.stat().st_size == 400_000
    path, _ = zoo_fetch.fetch(e, opener=FakeServer())
    assert path.read_bytes() == PAYLOAD


def test_url_hash_mismatch_refuses_through_the_cli(cache, extra, monkeypatch):
    e = extra(url_entry(name="zoo-test-wrong", sha256="0" * 64))
    monkeypatch.setattr(download, "urllib_opener", FakeServer())
    r = invoke("zoo", "fetch", "zoo-test-wrong")
    text = flat(r.output)
    assert r.exit_code == 2 and "sha256" in text and "not used" in text and "Traceback" not in r.output
    folder = zoo_fetch.manual_dir(e)
    assert not (folder / "m.pt").exists() and (folder / "m.pt.sha256-mismatch").read_bytes() == PAYLOAD


def test_an_unpinned_url_is_pinned_on_first_download_with_a_warning(cache, extra, monkeypatch, capsys):
    e = extra(url_entry(name="zoo-test-unpinned", sha256=None))
    path, prov = zoo_fetch.fetch(e, opener=FakeServer())
    assert prov["sha256_pinned_now"] and not prov["sha256_verified"]
    assert "now pinned" in flat(capsys.readouterr().err)
    pin = json.loads((cache / "pins.json").read_text())["zoo-test-unpinned"]["files"]["m.pt"]
    assert pin["sha256"] == PAYLOAD_SHA and pin["size"] == len(PAYLOAD)
    path.write_bytes(PAYLOAD[::-1])  # the cached file changes: refused against the pin, kept
    with pytest.raises(ZsrError, match="pinned on its first use"):
        zoo_fetch.fetch(e, opener=FakeServer())
    assert path.read_bytes() == PAYLOAD[::-1]


def test_url_offline_names_the_url_and_where_to_place_the_file(cache, extra, monkeypatch):
    e = extra(url_entry())
    monkeypatch.setenv("ZSRBENCH_OFFLINE", "1")
    with pytest.raises(ZsrError) as err:
        zoo_fetch.fetch(e, opener=FakeServer())
    text = str(err.value)
    assert "https://files.example.org/m.pt" in text and str(zoo_fetch.manual_dir(e) / "m.pt") in text


def test_a_file_placed_by_hand_is_used_after_its_hash_check(cache, extra, monkeypatch):
    monkeypatch.setenv("ZSRBENCH_OFFLINE", "1")
    e = extra(url_entry())
    dest = zoo_fetch.manual_dir(e) / "m.pt"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(PAYLOAD)
    path, prov = zoo_fetch.fetch(e)
    assert path == dest and prov["placed_by_hand"] and prov["sha256_verified"]
    dest.write_bytes(b"something else")
    with pytest.raises(ZsrError, match="placed by hand, so it is not the published file") as err:
        zoo_fetch.fetch(e)
    assert dest.read_bytes() == b"something else" and "Replace" in str(err.value)


# --- fetching: Google Drive, shipped ------------------------------------------------------------------------------


def test_a_drive_entry_refuses_with_its_id_and_cache_path(cache):
    r = invoke("zoo", "fetch", "advflyp-vit-b-32")
    text = flat(r.output)
    assert r.exit_code == 2 and "111dTcolTdPB93Gg8Fwj_MmNuC77zHQmm" in text and "mirror" in text
    target = cache / "zoo" / "advflyp-vit-b-32" / "AdvFLYP_full_checkpoint.pth.tar"
    assert str(target) in text
    target.parent.mkdir(parents=True)
    target.write_bytes(PAYLOAD)  # placed by hand: used (pinned on first use)
    r = invoke("zoo", "fetch", "advflyp-vit-b-32")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines()[-1] == str(target)


def test_a_shipped_micro_defense_fetches_and_loads():
    e = catalogue.get("micro-tecoa")
    path, prov = zoo_fetch.fetch(e)
    assert path.is_file() and prov["sha256_verified"] and prov["catalogue"] == "zsrbench:micro-v3/tecoa-s0"
    parts = zoo_fetch.load(e)
    from zsrbench.models import shipped

    assert parts.tensors_sha256() == shipped.by_name("zsrbench:micro-v3/tecoa-s0").tensors_sha256


def test_a_url_visual_checkpoint_downloads_and_loads_strictly_through_the_defense(cache, extra, monkeypatch,
                                                                                    tiny_parts):
    import io

    import torch

    from zsrbench.defenses.base import LoadSpec
    from zsrbench.registry import DEFENSES

    state = {k: v.clone() + 0.01 for k, v in tiny_parts.model.visual.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    blob = buf.getvalue()
    extra(catalogue.CatalogueEntry(
        "zoo-test-tiny", "fare", "zsr-tiny", None, 4.0, "synthetic", None, "https://example.org", "test",
        sha256=hashlib.sha256(blob).hexdigest(), format="visual", activation="quickgelu",
        source={"kind": "url", "url": "https://files.example.org/tiny.pt", "file": "tiny.pt"}))
    monkeypatch.setattr(download, "urllib_opener", FakeServer(payload=blob))
    parts = DEFENSES.get("fare")().load(LoadSpec(model="ViT-B-32", checkpoint="zoo-test-tiny"))
    for k, v in state.items():
        assert torch.equal(parts.model.visual.state_dict()[k], v), k
    assert parts.source["format"] == "visual" and parts.source["catalogue"] == "zoo-test-tiny"
    assert parts.source["sha256_verified"] and parts.portable_checkpoint() == "zoo-test-tiny"


# --- `zsrbench run --checkpoint NAME` reaches the zoo ------------------------------------------------------------


def test_every_hub_model_resolves_through_the_defense_loader_up_to_the_download(cache, monkeypatch):
    from zsrbench.defenses.base import LoadSpec
    from zsrbench.registry import DEFENSES

    calls: list = []
    monkeypatch.setattr(zoo_fetch, "_hf_download", _no_network(calls))
    monkeypatch.setattr(zoo_fetch, "_hf_list", lambda repo: ["x.pth.tar"])
    hub = [e for e in catalogue.entries() if e.kind == "hf-hub"]
    assert len(hub) >= 15
    for e in hub:
        with pytest.raises(ZsrError, match="Could not download|does not know which file") as err:
            DEFENSES.get(e.defense)().load(LoadSpec(model="ViT-B-32", checkpoint=e.name))
        assert e.name in str(err.value) and str(cache / "zoo" / e.name) in str(err.value)
    assert {repo for repo, _, _ in calls} == {e.hf_hub for e in hub if e.format in ("open_clip", "transformers") or e.file}


@pytest.mark.parametrize("name", ["tecoa4-vit-b-16-laion2b", "leaf-fare2-vit-l-14"])
def test_zsrbench_run_checkpoint_name_reaches_the_download(cache, monkeypatch, name):
    calls: list = []
    monkeypatch.setattr(zoo_fetch, "_hf_download", _no_network(calls))
    monkeypatch.setenv("ZSRBENCH_OFFLINE", "1")
    entry = catalogue.get(name)
    r = invoke("run", "--protocol", "synthetic", "--defense", entry.defense, "--checkpoint", name)
    text = flat(r.output)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"Checkpoint '{name}'" in text and "not in the cache" in text and entry.hf_hub in text


def test_a_run_of_a_zoo_model_names_the_published_numbers_it_should_reproduce(monkeypatch):
    from zsrbench.cli import run as run_cli

    said: list[str] = []
    monkeypatch.setattr(run_cli, "info", said.append)
    run_cli._say_published("fare4-vit-b-32-openai")
    assert said and all(line.startswith("published for fare4-vit-b-32-openai (fare protocol): ") for line in said)
    assert any("robust" in line for line in said) and any("clean" in line for line in said)
    said.clear()
    run_cli._say_published("not-a-zoo-model.pt")  # a plain file: nothing to compare with
    run_cli._say_published(None)
    assert said == []
