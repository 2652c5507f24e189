"""The evidence model: what a ranking rests on cannot be changed silently by ordinary use.

* a narrower re-audit never clears a model (per-dataset verdicts, carried over);
* a defense that acts at inference has its settings in its model id, so a changed setting is another model
  with no audit of its own, and its provenance (plugin version) is recorded;
* an experiment (other attack settings) is its own entry and a run on some datasets keeps the others;
* a check without data says n/a;
* training gives the same weights on any core count, and the shipped micro defenses are the committed models.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from test_leaderboard import T0, T1, make, write
from zsrbench.audit import verdicts as V
from zsrbench.audit.runner import AuditConfig, run_audit
from linear_model import Around
from zsrbench.cli import app
from zsrbench.defenses.base import Defense
from zsrbench.errors import ZsrError
from zsrbench.leaderboard import store
from zsrbench.leaderboard.audits import dataset_verdicts
from zsrbench.params import Params
from zsrbench.registry import DEFENSES, PROTOCOLS, load_builtins
from zsrbench.evaluation.config import RunConfig
from zsrbench.defenses.identity import model_id
from zsrbench.evaluation.model import prepare_model

cli = CliRunner()
REPO = Path(__file__).resolve().parents[1]
TASKS = ("micro_color", "micro_size")  # 7 and 2 classes
N = 24


def _partly(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    z = m(x)
    return m(torch.round(x * 15) / 15) if z.shape[1] == 2 else z  # quantised (no gradient) on 2-class tasks only


class PartlyMasked(Defense):
    name = "ev_partly_masked"
    description = "CLIP behind input quantisation on two-class tasks only (gradient masking on some tasks)"

    def wrap_classifier(self, clf):
        return Around(clf, _partly)


class Levels(Defense):
    name = "ev_levels"
    description = "CLIP behind input quantisation to a declared number of grey levels"
    inference_params = Params(defaults={"levels": 8}, help={"levels": "grey levels per channel"})

    def wrap_classifier(self, clf):
        k = self.inference["levels"] - 1
        return Around(clf, lambda m, x: m(torch.round(x * k) / k))


@pytest.fixture(scope="module", autouse=True)
def registered():
    load_builtins()
    for cls in (PartlyMasked, Levels):
        DEFENSES.add(cls.name, cls, origin="tests")
    PROTOCOLS.add("evidence_toy", replace(
        PROTOCOLS.get("micro"), name="evidence_toy", version=1, datasets=TASKS, train_dataset=None, n_samples=N,
        batch_size=N, attack_defaults={"pgd": {"steps": 10, "step": 1.0}}, required_suites=("pgd",), subsets={},
        default_subset=None, train_on_demand=False), origin="tests")
    yield


def _run(lb, res, defense: str, *extra: str) -> None:
    r = cli.invoke(app, ["run", "--protocol", "evidence_toy", "--defense", defense, "--attack", "pgd",
                         "--leaderboard-dir", str(lb), "--results-dir", str(res), "--quiet", "--jobs", "1", *extra])
    assert r.exit_code == 0, r.output


def _audit(lb, defense: str, datasets=TASKS, **params) -> object:
    cfg = AuditConfig(run=RunConfig(defense=defense, protocol="evidence_toy", leaderboard_dir=str(lb),
                                    datasets=tuple(datasets), defense_params=params),
                      n_samples=N, square_queries=30, noise_draws=2)
    return run_audit(cfg)


def _table(lb, *extra: str) -> dict:
    out = cli.invoke(app, ["table", "--leaderboard-dir", str(lb), "--json", *extra])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def _rows(data: dict, model_prefix: str) -> list[dict]:
    return [r for g in data["groups"] for r in g["rows"] if r["model"].startswith(model_prefix)]


# ------------------------------------------------------------------------------------------------ audit coverage
def test_a_narrower_re_audit_never_clears_a_model(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    _run(lb, res, "ev_partly_masked")
    wide = _audit(lb, "ev_partly_masked")
    assert dataset_verdicts(wide.entry.audit)["micro_size"] == "fail"
    assert dataset_verdicts(wide.entry.audit)["micro_color"] != "fail"
    narrow = _audit(lb, "ev_partly_masked", datasets=("micro_color",))  # the task where it behaves
    a = narrow.entry.audit
    assert narrow.path.name == "r0002.json" and a.verdict == "fail"
    assert a.datasets["micro_size"]["carried_from"] == "r0001" and "carried_from" not in a.datasets["micro_color"]
    assert dataset_verdicts(a)["micro_size"] == "fail"
    e = store.read_entry(narrow.path)
    assert any(line.startswith("carried over from r0001") and "micro_size" in line for line in e.changes)
    for fmt_rows in (_rows(_table(lb), "ev_partly_masked"), _rows(_table(lb, "--attack", "pgd"), "ev_partly_masked")):
        assert fmt_rows and all(r["rank"] is None for r in fmt_rows)
        assert all(r["status"].startswith("unreliable: gradient masking (audit failed on micro_size") for r in fmt_rows)
    md = cli.invoke(app, ["table", "--leaderboard-dir", str(lb), "--markdown"]).stdout
    assert all(line.startswith("| – |") for line in md.splitlines() if "ev_partly_masked/" in line)


def test_a_model_is_audited_only_on_the_datasets_its_audit_covers(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    _run(lb, res, "clip")
    _audit(lb, "clip", datasets=("micro_color",))
    [row] = [r for g in _table(lb)["groups"] if g["kind"] == "ranking" for r in g["rows"]]
    assert row["rank"] is None and "unranked: not audited on micro_size" in row["status"]
    _audit(lb, "clip", datasets=("micro_size",))  # the other dataset: now every ranked dataset is covered
    [row] = [r for g in _table(lb)["groups"] if g["kind"] == "ranking" for r in g["rows"]]
    assert row["rank"] == 1 and row["status"] == "ranked"


# ------------------------------------------------------------------------------------------------ model identity
def test_an_inference_setting_is_part_of_the_model_id_and_is_recorded(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    protocol = PROTOCOLS.get("evidence_toy")
    ids = {}
    for levels in (8, 3):
        cfg = RunConfig(defense="ev_levels", protocol="evidence_toy", defense_params={"levels": levels})
        d, parts, _ = prepare_model(cfg, protocol, device="cpu", seed=0)
        ids[levels] = model_id(d, parts)
    clip_cfg = RunConfig(defense="clip", protocol="evidence_toy")
    d, parts, _ = prepare_model(clip_cfg, protocol, device="cpu", seed=0)
    assert len({ids[8], ids[3], model_id(d, parts).replace("clip/", "ev_levels/")}) == 3
    _run(lb, res, "ev_levels")
    _audit(lb, "ev_levels")
    _run(lb, res, "ev_levels", "--set", "ev_levels.levels=3")
    recs = [json.loads(p.read_text()) for p in res.rglob("*.json")]
    by_levels = {r["model"]["inference"]["params"]["levels"]: r["model"] for r in recs}
    assert by_levels[8]["id"] == ids[8] and by_levels[3]["id"] == ids[3]
    assert by_levels[3]["origin"]["kind"] == "code" and by_levels[3]["origin"]["module"].endswith(":Levels")
    rows = {r["model"]: r for g in _table(lb)["groups"] if g["kind"] == "ranking" for r in g["rows"]}
    assert rows[ids[3]]["audit"] == "none" and "unranked: not audited" in rows[ids[3]]["status"]
    assert rows[ids[8]]["audit"] != "none"  # the audit made with 8 levels vouches for that model only


def test_defense_settings_are_checked_and_set_with_set(tmp_path):
    base = ["run", "--protocol", "evidence_toy", "--defense", "ev_levels", "--no-leaderboard",
            "--results-dir", str(tmp_path / "r"), "--quiet"]
    for item, says in (("ev_levels.levels=many", "whole number"), ("ev_levels.levels=0", "≥ 1"),
                       ("ev_levels.colours=4", "no parameter colours"), ("clip.levels=4", "names attack 'clip'")):
        r = cli.invoke(app, [*base, "--set", item])
        assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output, (item, r.output)
    assert not (tmp_path / "r").exists()  # nothing written
    plain = cli.invoke(app, [*base, "--set", "levels=4", "--datasets", "micro_size"])  # no attack has `levels`
    assert plain.exit_code == 0, plain.output
    [rec] = [json.loads(p.read_text()) for p in (tmp_path / "r").rglob("*.json")]
    assert rec["model"]["inference"] == {"defense": "ev_levels", "params": {"levels": 4}}


def test_a_plugin_version_change_shows_in_history_and_voids_the_audit(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    old = {"kind": "plugin", "package": "pkg", "version": "0.1", "entry_point": "pkg:D"}
    new = {**old, "version": "0.2"}

    def made(origin, when):
        out = []
        for d in ("shapes", "colors"):
            rec, flags = make("d/ViT/x", d, created_at=when)
            out.append((rec.model_copy(update={"model": rec.model.model_copy(update={"origin": origin})}), flags))
        return out

    [first] = store.add_measured(lb, write(res / "a", *made(old, T0)), now=T0)
    with pytest.raises(ZsrError, match="other defense code"):  # one dataset with the new code cannot join
        store.add_measured(lb, write(res / "b", made(new, T1)[0]), now=T1)
    [second] = store.add_measured(lb, write(res / "c", *made(new, T1)), now=T1)
    assert "defense code: plugin pkg 0.1 -> plugin pkg 0.2" in store.read_entry(second).changes
    from test_ranking import audit

    e = audit(lb, "d/ViT/x", "pass", datasets=("shapes", "colors"))  # an audit of the 0.1 code:
    e = store.with_digest(e.model_copy(update={"model": e.model.model_copy(update={"origin": old})}))
    (lb / "toy" / e.entry / "r0001.json").write_text(store.entry_json(e), encoding="utf-8")
    [row] = [r for g in _table(lb)["groups"] if g["kind"] == "ranking" for r in g["rows"]]
    assert row["rank"] is None and "audited with pkg 0.1's defense code, measured with pkg 0.2" in row["status"]


# ------------------------------------------------------------------------------------------------ evaluation identity
def test_experiments_and_partial_runs_never_shrink_the_standard_entry(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    _run(lb, res / "1", "clip")
    [standard] = [d for d in (lb / "evidence_toy").iterdir()]
    _run(lb, res / "2", "clip", "--steps", "2", "--datasets", "micro_color")  # an experiment
    _run(lb, res / "3", "clip", "--set", "pgd.restarts=2", "--datasets", "micro_size")  # another
    _run(lb, res / "4", "clip", "--datasets", "micro_color")  # the standard settings on one dataset
    entries = sorted(d.name for d in (lb / "evidence_toy").iterdir())
    assert len(entries) == 3 and sum(n.endswith("__v1") for n in entries) == 1
    assert {n.rsplit("__", 1)[1] for n in entries if "variant" in n} == {"variant-pgd-steps2", "variant-pgd-restarts2"}
    newest = store.read_entry(store.revision_files(standard)[-1][1])
    assert list(newest.measured.datasets) == list(TASKS)  # never lost a dataset


def test_no_dataset_is_dropped_without_asking(tmp_path):
    lb, res = tmp_path / "lb", tmp_path / "res"
    store.add_measured(lb, write(res / "a", make(dataset="shapes"), make(dataset="colors")), now=T0)
    rec, flags = make(dataset="shapes", created_at=T1)
    rec = rec.model_copy(update={"protocol": rec.protocol.model_copy(update={"precision": "bf16"})})
    with pytest.raises(ZsrError, match="never loses a dataset silently"):
        store.add_measured(lb, write(res / "b", (rec, flags)), now=T1)
    [edir] = store.entry_dirs(lb)
    assert [n for n, _ in store.revision_files(edir)] == [1]


# ------------------------------------------------------------------------------------------------ n/a
def test_a_check_without_data_says_na():
    t = V.Tally()
    t.add("a", pgd_robust=0, broken_beyond_pgd=0)
    t.add("b", pgd_robust=10, broken_beyond_pgd=0)
    check = V.judge_transfer(t, "clip/x/y")
    assert check.per_dataset["a"]["verdict"] == "n/a" and check.per_dataset["b"]["verdict"] == "pass"
    assert check.verdict == "pass" and V.worst(["n/a"]) == "n/a" and V.worst(["n/a", "warn"]) == "warn"
    aa = V.Tally()
    aa.add("a", suites=0, warnings=0, items=[])
    flags = V.judge_autoattack_flags(aa)
    assert flags.verdict == "n/a" and "nothing to check" in flags.summary
    g = V.Tally()
    g.add("a", n_correct=0, zero=0, nonfinite=0)
    assert V.judge_gradient(g).verdict == "n/a"


# ------------------------------------------------------------------------------------------------ weights
def _train_digest(tmp_path, threads: int) -> str:
    from zsrbench.models.weights import sha256_state
    from zsrbench.training import train_defense

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        r = train_defense("tecoa", protocol="synthetic", out_dir=tmp_path / f"t{threads}", steps=12, batch_size=16,
                          seed=0, warmup_steps=1, keep_checkpoints=False)
    finally:
        torch.set_num_threads(before)
    from safetensors.torch import load_file

    assert r.manifest["determinism"]["cpu_intra_op_threads"] == 1
    return sha256_state(load_file(str(tmp_path / f"t{threads}" / "open_clip_model.safetensors")))


def test_training_gives_the_same_weights_on_one_and_two_threads(tmp_path):
    assert _train_digest(tmp_path, 1) == _train_digest(tmp_path, 2)


def test_the_shipped_micro_defenses_are_the_committed_models():
    from zsrbench.models import shipped

    protocol = PROTOCOLS.get("micro")
    committed = {p.name.split("__")[0]: p.name.split("__")[2] for p in (REPO / "leaderboards" / "micro").iterdir()
                 if p.name.endswith("__autoattack__eps4__v3")}
    for defense in ("tecoa", "pmg_aft", "fare", "tga_zsr", "comp_tga"):
        logs: list[str] = []
        d, parts, checkpoint = prepare_model(RunConfig(defense=defense, protocol="micro"), protocol, device="cpu",
                                             seed=protocol.seed, log=logs.append)
        assert checkpoint == shipped.shipped_name("micro", protocol.version, defense, protocol.seed)
        assert model_id(d, parts) == f"{defense}/zsr-micro/{committed[defense]}"
        assert any("no fine-tuning" in line for line in logs) and not any("fine-tuning " in line for line in logs)
        assert parts.source["hparams"]["steps"] == 300  # the training choices travel into the records


@pytest.mark.slow
def test_training_reproduces_a_shipped_file_bit_identically(tmp_path):
    import hashlib

    from zsrbench.models import shipped
    from zsrbench.training.outputs import export_visual
    from zsrbench.training import train_defense

    r = train_defense("tecoa", protocol="micro", out_dir=tmp_path / "tecoa", seed=0, keep_checkpoints=False)
    blob = export_visual(r.out_dir)
    ship = shipped.by_name("zsrbench:micro-v3/tecoa-s0")
    assert blob == ship.path.read_bytes() and hashlib.sha256(blob).hexdigest() == ship.sha256



def test_list_shows_what_a_defense_does_at_inference():
    from zsrbench import catalog

    rows = {r["name"]: r for r in catalog.describe_entries("defenses")}
    assert rows["ev_levels"]["at inference"].startswith("levels (int, default 8): grey levels per channel")
    assert "--set ev_levels.KEY=VALUE" in rows["ev_levels"]["at inference"]
    assert rows["ev_partly_masked"]["at inference"].startswith("wraps the classifier")
    assert rows["tecoa"]["at inference"] == "weights only"
