"""The plugin guide (docs/plugins.md) as a test.

Its worked example, examples/zsrbench-example-plugin, is installed by pip as a real package into a temporary
folder (no network; entry points discovered from the installed dist-info through PYTHONPATH), and used through
the command line as the guide describes: listed with its origin, run with a plugin attack parameter set by
``--set``, recorded, put on a leaderboard, trained. A second installed distribution whose entry point is named
``pgd`` must stop every command that reads the attack plugins, naming both origins. The parameter parsing,
variant names and collision rules are also checked in-process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from zsrbench.cli import app
from zsrbench.errors import ZsrError
from zsrbench.leaderboard.records import read_record

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "zsrbench-example-plugin"
ORIGIN = "plugin zsrbench-example-plugin 0.3.0"


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example plugin, pip-installed (from a copy, so no build folders appear in the repository)."""
    base = tmp_path_factory.mktemp("plugin")
    before = _files(EXAMPLE)
    src = base / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = base / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(target), str(src)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    assert list(target.glob("zsrbench_example_plugin-0.3.0.dist-info/entry_points.txt"))
    assert _files(EXAMPLE) == before  # nothing built inside the repository
    return target


@pytest.fixture(scope="module")
def collide(tmp_path_factory) -> Path:
    """An installed distribution (a dist-info as pip writes it) whose attack entry point is named ``pgd``."""
    target = tmp_path_factory.mktemp("collide")
    info = target / "zsrbench_collide-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zsrbench-collide\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[zsrbench.attacks]\npgd = zsrbench_collide:PGD\n")
    (target / "zsrbench_collide.py").write_text("from zsrbench_example_plugin.attacks import NOISE as PGD\n")
    return target


def zsrbench(*args: str, path: list[Path], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, path), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "400", "ZSRBENCH_JOBS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "zsrbench", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def row(output: str, name: str) -> str:
    """The table row of ``name`` in `zsrbench list` output, its cells joined by single spaces."""
    line = next(ln for ln in output.splitlines() if re.match(rf"^│ {re.escape(name)} ", ln))
    return re.sub(r"\s*│\s*", " | ", line).strip(" |")


def one_paragraph(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    return " ".join(res.stderr.split())


# ----------------------------------------------------------------------------------- installed, from the CLI
def test_list_shows_the_plugin_entries_with_their_origin(site, tmp_path):
    defenses = zsrbench("list", "defenses", path=[site], cwd=tmp_path)
    assert defenses.returncode == 0, defenses.stderr
    assert row(defenses.stdout, "blur_clip").endswith(f"{ORIGIN} (zsrbench_example_plugin.defenses:BlurCLIP)")
    assert f"{ORIGIN} (zsrbench_example_plugin.defenses:MixedAT)" in row(defenses.stdout, "mixed_at")
    assert row(defenses.stdout, "clip").endswith("| zsrbench")
    attacks = zsrbench("list", "attacks", path=[site], cwd=tmp_path)
    assert attacks.returncode == 0, attacks.stderr
    noise = row(attacks.stdout, "noise")
    assert noise.startswith("noise | plugin | example plugin: random corners")
    assert noise.endswith(f"{ORIGIN} (zsrbench_example_plugin.attacks:NOISE)")


def test_run_sets_a_plugin_parameter_records_it_and_reaches_the_leaderboard(site, tmp_path):
    results, board = tmp_path / "r", tmp_path / "lb"
    ran = zsrbench("run", "--protocol", "synthetic", "--defense", "blur_clip", "--attack", "noise", "--set",
                   "tries=3", "--results-dir", str(results), "--leaderboard-dir", str(board), "--quiet",
                   path=[site], cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr + ran.stdout
    records = sorted(results.rglob("*.json"))
    assert [r.stem for r in records] == ["synthetic_colors", "synthetic_shapes"]
    for path in records:
        rec = read_record(path)
        assert rec.model.defense == "blur_clip" and rec.protocol.suite == "noise"
        assert [(a.name, a.family, a.params) for a in rec.protocol.attacks] == [("noise", "plugin", {"tries": 3})]
        assert rec.protocol.variant == "noise-tries3" and path.parent.name == "eps1__noise-tries3"
        assert 0 <= rec.metrics.robust_accuracy <= rec.metrics.clean_accuracy
    table = zsrbench("table", "--leaderboard-dir", str(board), "--markdown", path=[site], cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    # another attack setting is an experiment: its own entry and table, never ranked nor numbered
    assert "## synthetic v1 · experiment: variant noise-tries3 · noise · ε = 1/255" in table.stdout
    assert re.search(r"\| – \| blur_clip/zsr-tiny/[0-9a-f]{12} \| measured r0001 \| unranked: experiment "
                     r"\(variant noise-tries3\)", table.stdout)
    [entry] = [p.name for p in (board / "synthetic").iterdir()]
    assert entry.endswith("__noise__eps1__v1__variant-noise-tries3")


def test_a_plugin_defense_trains_with_its_own_hyper_parameter(site, tmp_path):
    out = tmp_path / "trained"
    res = zsrbench("train", "--defense", "mixed_at", "--protocol", "synthetic", "--steps", "1", "--set",
                   "clean_weight=0.25", "--out", str(out), path=[site], cwd=tmp_path)
    assert res.returncode == 0, res.stderr + res.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["defense"] == "mixed_at" and manifest["completed"]
    assert manifest["hparams"]["clean_weight"] == 0.25
    assert {"adv_ce", "clean_ce"} <= set(manifest["loss_curve"][-1])


def test_an_entry_point_named_like_a_builtin_stops_every_command_naming_both(site, collide, tmp_path):
    results = tmp_path / "r"
    for args in (["run", "--protocol", "synthetic", "--attack", "noise", "--results-dir", str(results), "--quiet"],
                 ["list", "attacks"]):
        msg = one_paragraph(zsrbench(*args, path=[site, collide], cwd=tmp_path))
        assert "The attack name 'pgd' is registered twice" in msg
        assert "the built-in entry of zsrbench (zsrbench.attacks)" in msg
        assert ("the entry point 'pgd = zsrbench_collide:PGD' in group zsrbench.attacks of the installed package "
                "zsrbench-collide 0.1.0") in msg
        assert "pip uninstall zsrbench-collide" in msg
    assert not results.exists()


# ----------------------------------------------------------------------------------- the example, in-process
@pytest.fixture
def example(site, monkeypatch):
    """``example("attacks")``: a module of the installed example, loaded from its file (sys.path and the
    registries stay untouched; the module is in sys.modules only during the test)."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"_guide_{name}", site / "zsrbench_example_plugin" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)
        spec.loader.exec_module(module)
        return module

    return load


def test_the_example_attack_declares_reads_and_checks_its_parameter(example):
    noise = example("attacks").NOISE
    [param] = noise.parameters()
    assert (param.name, param.type, param.default, param.per255) == ("tries", int, 1, False)
    assert noise.parse("tries", " 4 ") == 4
    with pytest.raises(ZsrError) as bad:
        noise.parse("tries", "many")
    assert "tries (int, default 1): random corners tried per image" in str(bad.value)
    with pytest.raises(ZsrError, match=r"Parameter tries \(--set tries=VALUE\) must be a whole number ≥ 1"):
        noise.config(tries=0)
    with pytest.raises(ZsrError, match="has no parameter sigma; its parameters are: tries"):
        noise.config(sigma=2.0)


def test_the_example_attack_keeps_the_first_breaking_corner(example):
    import torch

    attacks = example("attacks")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))
    torch.manual_seed(0)
    x, y = torch.rand(6, 3, 4, 4), torch.randint(0, 3, (6,))
    out = attacks.NOISE(model, x, y, eps=8.0, seed=5, tries=4)
    assert out.x_adv.shape == x.shape and out.success.dtype == torch.bool
    assert (out.x_adv - x).abs().max() <= 8 / 255 + 1e-6 and out.x_adv.min() >= 0 and out.x_adv.max() <= 1
    with torch.no_grad():
        assert torch.equal(model(out.x_adv).argmax(1) != y, out.success)
    again = attacks.NOISE(model, x, y, eps=8.0, seed=5, tries=4)
    assert torch.equal(again.x_adv, out.x_adv)  # seeded


def test_the_example_defense_hparams_are_validated(example):
    defenses = example("defenses")
    defenses.MixedATHparams(clean_weight=0.3).validate()
    with pytest.raises(ZsrError, match=r"clean_weight must be in \[0, 1\]"):
        defenses.MixedATHparams(clean_weight=2.0).validate()


def test_the_example_dataset_and_protocol_fit_together(example):
    data = example("data")
    evalset = data.STRIPES.build(None)
    assert len(evalset) == 32 and evalset.info.num_classes == 2
    x, label = evalset.dataset[0]
    assert x.shape == (3, 32, 32) and 0 <= float(x.min()) <= float(x.max()) <= 1 and label in (0, 1)
    assert data.STRIPES_DEMO.datasets[0] == data.STRIPES.info.name == "stripes"


# ----------------------------------------------------------------------------------- --set, built-in attacks
runner = CliRunner()
SMALL = ["--protocol", "synthetic", "--datasets", "synthetic_colors", "--n-samples", "8", "--no-leaderboard",
         "--quiet"]


def test_set_is_an_alternative_to_the_own_options_and_keys_resume(tmp_path):
    results = tmp_path / "r"
    first = runner.invoke(app, ["run", "--attack", "pgd", "--set", "steps=2", "--results-dir", str(results), *SMALL])
    assert first.exit_code == 0, first.output
    [path] = results.rglob("synthetic_colors.json")
    rec = read_record(path)
    assert rec.protocol.attacks[0].params["steps"] == 2 and rec.protocol.variant == "n8__pgd-steps2"
    written = path.stat().st_mtime_ns
    same = runner.invoke(app, ["run", "--attack", "pgd", "--steps", "2", "--resume", "--results-dir", str(results),
                               *SMALL])
    assert same.exit_code == 0, same.output
    assert path.stat().st_mtime_ns == written and len(list(results.rglob("*.json"))) == 1  # skipped: the same
    other = runner.invoke(app, ["run", "--attack", "pgd", "--set", "steps=3", "--resume", "--results-dir",
                                str(results), *SMALL])
    assert other.exit_code == 0, other.output
    folders = sorted(p.parent.name for p in results.rglob("synthetic_colors.json"))
    assert folders == ["eps1__n8__pgd-steps2", "eps1__n8__pgd-steps3"]  # other settings: another record
    assert path.stat().st_mtime_ns == written and read_record(path) == rec  # neither reused nor replaced


@pytest.mark.parametrize("args, needle", [
    (["--attack", "pgd", "--set", "steps=abc"], "--set steps=abc: parameter steps of attack 'pgd' is a whole number"),
    (["--attack", "pgd", "--set", "nope=1"], "no attack of the suite pgd has a parameter nope"),
    (["--attack", "pgd", "--set", "steps"], "--set expects KEY=VALUE"),
    (["--attack", "pgd", "--steps", "2", "--set", "steps=3"], "--set steps=3 and --steps 2 both set steps"),
    (["--attack", "pgd", "--set", "steps=2", "--set", "steps=3"], "gives steps of attack 'pgd' twice"),
    (["--attack", "pgd", "--set", "cw.steps=2"], "names attack 'cw', which is not in the suite pgd"),
    (["--attack", "aa-lite", "--set", "n_iter=0"], "Parameter n_iter (--set n_iter=VALUE) must be a whole number ≥ 1"),
    (["--attack", "pgd", "--set", "criterion=best"], "--criterion must be one of last, any"),
    (["--attack", "pgd", "--set", "step=0.5"], "ambiguous"),
])
def test_bad_set_is_one_paragraph_exit_2_and_writes_nothing(tmp_path, args, needle):
    results = tmp_path / "r"
    res = runner.invoke(app, ["run", *args, "--results-dir", str(results), *SMALL])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert needle in text and "Traceback" not in text
    if "nope" in args[-1] or "abc" in args[-1]:
        assert "steps (int, default 100): iterations per restart" in text  # names the attack's parameters
    assert not results.exists()


def test_set_reaches_each_attack_of_a_suite_and_attack_dot_key_one():
    from zsrbench.evaluation.config import RunConfig, check_config
    from zsrbench.evaluation.params import parse_attack_sets

    sets = parse_attack_sets(("pgd", "cw", "aa-lite"), ["kappa=10", "cw.steps=4", "n_iter=7", "pgd.criterion=any",
                                                        "step=2/255"], given={"steps": 2})
    assert sets == {"cw.kappa": 10.0, "cw.steps": 4, "aa-lite.n_iter": 7, "pgd.criterion": "any", "pgd.step": 2.0,
                    "cw.step": 2.0}
    _, _, _, params = check_config(RunConfig(protocol="synthetic", attacks=("pgd", "cw", "aa-lite"),
                                             attack_params={"steps": 2, **sets}))
    assert params["pgd"] == {"step": 2.0, "steps": 2, "restarts": 1, "eot": 1, "criterion": "any"}
    assert params["cw"]["steps"] == 4 and params["cw"]["kappa"] == 10.0  # ATTACK.KEY wins over the plain key
    assert params["aa-lite"] == {"n_iter": 7, "n_restarts": 1}
    assert parse_attack_sets(("pgd",), ["restarts=2"]) == {"pgd.restarts": 2}


def test_variant_names_distinguish_every_value():
    from zsrbench.attacks.base import AttackSpec
    from zsrbench.protocols import Protocol
    from zsrbench.evaluation.config import RunConfig, run_variant

    spec = AttackSpec(name="toy", fn=lambda *a, **k: None, description="", defaults={"w": 0.3, "mode": "a"},
                      per255=())
    proto = Protocol(name="p", version=1, description="", datasets=("d",))

    def variant(**values):
        return run_variant(RunConfig(protocol="p"), proto, [spec], {"toy": spec.config(**values)}, 0, None)

    assert variant() is None and variant(w=0.5) == "toy-w0.5" and variant(mode="b_c") == "toy-modeb_c"
    assert variant(w=0.1 + 0.2) not in (None, variant(w=0.3), "toy-w0.3")  # 0.30000000000000004 is another value
    assert variant(mode="x y").startswith("v-") and variant(mode="x y") != variant(mode="x_y")
    assert variant(mode="a/b").startswith("v-")


def test_attack_spec_refuses_help_for_an_undeclared_parameter():
    from zsrbench.attacks.base import AttackSpec

    with pytest.raises(ZsrError, match="describes parameter.* tires"):
        AttackSpec(name="x", fn=lambda *a, **k: None, description="", defaults={"tries": 1}, help={"tires": "typo"})


# ----------------------------------------------------------------------------------- name collisions, in-process
def _fake_entry_points(monkeypatch, *eps):
    import zsrbench.registry as registry

    def entry_points(group=None):
        return [e for e in eps if e.group == group]

    monkeypatch.setattr(registry, "entry_points", entry_points)


def _ep(name, value, package, group="zsrbench.widgets"):
    return SimpleNamespace(name=name, value=value, group=group, dist=SimpleNamespace(name=package, version="1.0"))


def test_collisions_name_both_origins_and_stay_raised(monkeypatch):
    from zsrbench.registry import Registry

    reg = Registry("widget", "zsrbench.widgets")
    reg.add("alpha", object(), "first")
    _fake_entry_points(monkeypatch, _ep("Alpha", "pkg_a:Alpha", "pkg-a"), _ep("beta", "pkg_a:Beta", "pkg-a"),
                       _ep("beta", "pkg_b:Beta", "pkg-b"), _ep("First", "pkg_c:F", "pkg-c"),
                       _ep("gamma", "pkg_d:G", "pkg-d"), _ep("gamma", "pkg_d:G", "pkg-d"))
    for _ in range(2):  # raised on first use and on every later use
        with pytest.raises(ZsrError) as exc:
            reg.get("gamma")
        msg = str(exc.value)
        assert f"the entry registered in code by {__name__}" in msg
        assert "The widget name 'Alpha' is registered twice" in msg
        assert "'Alpha = pkg_a:Alpha' in group zsrbench.widgets of the installed package pkg-a 1.0" in msg
        assert "'beta = pkg_a:Beta'" in msg and "'beta = pkg_b:Beta'" in msg and "pip uninstall pkg-b" in msg
        assert "'First' (an alias of 'alpha')" in msg
        assert "gamma" not in msg  # one package seen twice on the path is no collision


def test_plugins_are_read_after_the_builtins(monkeypatch):
    from zsrbench.registry import Registry

    calls = []
    reg = Registry("widget", "zsrbench.widgets", builtins=lambda: (calls.append(1), reg.add("pgd", object())))
    _fake_entry_points(monkeypatch, _ep("pgd", "pkg:PGD", "pkg"))
    with pytest.raises(ZsrError, match="registered twice"):
        reg.names()
    assert calls == [1]


def test_a_plugin_without_collision_is_listed_with_its_origin(monkeypatch):
    from zsrbench.registry import Registry

    reg = Registry("widget", "zsrbench.widgets")
    reg.add("alpha", 1)
    _fake_entry_points(monkeypatch, _ep("delta", "os.path:join", "pkg-e"))
    assert reg.names() == ["alpha", "delta"]
    assert reg.origin("delta") == "plugin pkg-e 1.0 (os.path:join)" and reg.get("delta") is os.path.join
