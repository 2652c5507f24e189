"""The bad-input matrix, operations part: `sweep` (names, grids with values `run` refuses, sizes, folders), `site`,
`plot` and `attention` output paths, and results folders longer than the filesystem allows.

Every case exits 2 with a one-paragraph message that says what to do, prints no traceback and leaves the world's
``results/`` and ``leaderboards/`` unchanged (the shared harness of ``tests/test_bad_inputs.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from test_bad_inputs import check_case, make_world

SYNTHETIC = ["--protocol", "synthetic"]
LONG_NAME = "x" * 300  # one name longer than NAME_MAX (255 bytes)
LONG_PATH = ["y" * 200] * 25  # short names, together longer than PATH_MAX (4096 bytes)

GRID = """\
{name}defenses = [{defenses}]
attacks = [{attacks}]
protocols = [{protocols}]
{eps}
[run]
steps = 2
{run}"""


def grid(name: str = "", defenses: str = '"clip"', attacks: str = '"pgd"', protocols: str = '"synthetic"',
         eps: str = "", run: str = "") -> str:
    return GRID.format(name=name + "\n" if name else "", defenses=defenses, attacks=attacks, protocols=protocols,
                       eps=eps, run=run + "\n" if run else "")


def toml_str(value: str) -> str:
    """``value`` as a TOML basic string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def long_paths(t: Path) -> dict[str, str]:
    return {"name": str(t / LONG_NAME / "out"), "path": str(t.joinpath(*LONG_PATH, "out"))}


# ------------------------------------------------------------------------------------------ inputs cases need
def grids(t: Path) -> dict[str, str]:
    """The grid files of the sweep cases (``{T}/<case>.toml``), and what they name."""
    (t / "afile").write_text("not a folder")
    (t / "w.pt").write_bytes(b"some weights")
    (t / "not-a-model").mkdir()
    (t / "empty").mkdir()
    long = long_paths(t)
    files = {
        # the sweep's name
        "name-dotdot": grid(name='name = "../../../X"'),
        "name-absolute": grid(name=f"name = {toml_str(str(t / 'elsewhere'))}"),
        "name-slash": grid(name='name = "a/b"'),
        "name-dot": grid(name='name = "."'),
        "name-hidden": grid(name='name = ".hidden"'),
        "name-empty": grid(name='name = ""'),
        "name-nul": grid(name='name = "a\\u0000b"'),
        "name-backslash": grid(name='name = "..\\\\..\\\\X"'),
        "name-too-long": grid(name=f'name = "{LONG_NAME}"'),
        "name-not-string": grid(name="name = 3"),
        # values `zsrbench run` refuses (before any model is built)
        "checkpoint-missing": grid(run=f"checkpoint = {toml_str(str(t / 'nope.pt'))}"),
        "checkpoint-sha-mismatch": grid(run=f"checkpoint = {toml_str(str(t / 'w.pt'))}\n"
                                            f"checkpoint_sha256 = \"{'ab' * 32}\""),
        "checkpoint-sha-malformed": grid(run=f"checkpoint = {toml_str(str(t / 'w.pt'))}\n"
                                             "checkpoint_sha256 = \"xyz\""),
        "checkpoint-folder-not-a-model": grid(run=f"checkpoint = {toml_str(str(t / 'not-a-model'))}"),
        "checkpoint-local-dir-missing": grid(run=f"checkpoint = {toml_str('local-dir:' + str(t / 'nope'))}"),
        "checkpoint-published-other-defense": grid(defenses='"tecoa"', run='checkpoint = "fare2-clip"'),
        "checkpoint-hf-hub-with-sha": grid(run=f"checkpoint = \"hf-hub:org/model\"\ncheckpoint_sha256 = \"{'ab' * 32}\""),
        "checkpoint-path-too-long": grid(run=f"checkpoint = {toml_str(long['path'] + '.pt')}"),
        "checkpoint-shipped-unknown": grid(defenses='"tecoa"', run='checkpoint = "zsrbench:nope"'),
        "sha-without-checkpoint": grid(run=f"checkpoint_sha256 = \"{'ab' * 32}\""),
        "data-root-missing": grid(protocols='"tga16"', run=f"data_root = {toml_str(str(t / 'nope'))}"),
        "data-root-file": grid(protocols='"tga16"', run=f"data_root = {toml_str(str(t / 'afile'))}"),
        "no-data-root": grid(protocols='"tga16"'),
        "trainable-without-recipe": grid(defenses='"tecoa"', protocols='"tga16"',
                                         run=f"data_root = {toml_str(str(t / 'empty'))}"),
        "steps-zero": grid().replace("steps = 2", "steps = 0"),
        "restarts-zero": grid(run="restarts = 0"),
        "step-negative": grid(run="step = -1"),
        "kappa-for-pgd": grid(run="kappa = 3"),
        "criterion": grid(run='criterion = "foo"'),
        "eps-zero": grid(eps="eps = [0]"),
        "eps-too-large": grid(eps="eps = [300]"),
        "eps-nan": grid(eps='eps = ["nan"]'),
        "eps-bool": grid(eps="eps = [true]"),
        "n-samples-zero": grid(run="n_samples = 0"),
        "seed-negative": grid(run="seed = -1"),
        "batch-size-zero": grid(run="batch_size = 0"),
        "device-tpu": grid(run='device = "tpu"'),
        "precision": grid(run='precision = "fp8"'),
        "jobs-zero": grid(run="jobs = 0"),
        "subset-unknown": grid(run='subset = "tiny"'),
        "subset-and-n": grid(run='subset = "full"\nn_samples = 3'),
        "dataset-unknown": grid(run='datasets = ["cifar11"]'),
        "datasets-empty": grid(run='datasets = ""'),
        "dataset-twice": grid(run='datasets = ["synthetic_colors", "synthetic_colors"]'),
        "attack-twice": grid(attacks='"pgd,pgd"'),
        # the grid itself
        "empty": "",
        "unknown-key": grid().replace("steps = 2", "stpes = 2"),
        "unknown-defense": grid(defenses='"tecao"'),
        "unknown-attack": grid(attacks='"pgdd"'),
        "unknown-protocol": grid(protocols='"tga17"'),
        "attacks-empty-list": grid(attacks=""),
        "suite-empty": grid(attacks='""'),
        "same-job-twice": grid(eps='eps = [1, "1/255"]'),
        "run-value-type": grid(run='seed = "zero"'),
        "executor-value-type": grid() + '\n[executor]\ntime = "long"\n',
        "executor-unknown-key": grid() + "\n[executor]\ngpus = 1\n",
        "run-not-a-table": grid().replace("[run]\nsteps = 2\n", "") + "run = 3\n",
        # output folders under [run]
        "results-dir-name-too-long": grid(run=f"results_dir = {toml_str(long['name'])}"),
        "results-dir-path-too-long": grid(run=f"results_dir = {toml_str(long['path'])}"),
        "leaderboard-dir-path-too-long": grid(run=f"leaderboard_dir = {toml_str(long['path'])}"),
        "leaderboard-dir-file": grid(run=f"leaderboard_dir = {toml_str(str(t / 'afile'))}"),
        "results-dir-under-file": grid(run=f"results_dir = {toml_str(str(t / 'afile' / 'sub'))}"),
        "ok": grid(),
    }
    for name, text in files.items():
        (t / f"{name}.toml").write_text(text, encoding="utf-8")
    (t / "not-toml.toml").write_text("defenses = [clip\n", encoding="utf-8")
    (t / "not-utf8.toml").write_bytes(b'defenses = ["\xff\xfe"]\n')
    (t / "folder.toml").mkdir()
    # more jobs than a sweep submits without confirmation: 1 defense x 2 suites x 251 eps = 502, of which the
    # world's leaderboard holds one (clip, pgd, 1/255): 501 to submit
    (t / "big.toml").write_text(grid(attacks='"pgd", "cw"', eps="eps = [" + ", ".join(map(str, range(1, 252)))
                                     + "]"), encoding="utf-8")
    return long


def no_slurm(t: Path, monkeypatch) -> dict[str, str]:
    """A PATH without slurm's commands, and a grid."""
    grids(t)
    (t / "no-bin").mkdir()
    monkeypatch.setenv("PATH", str(t / "no-bin"))
    return {}


def outputs(t: Path) -> dict[str, str]:
    """A file, a non-empty folder, and paths the filesystem cannot hold."""
    (t / "afile").write_text("keep me")
    (t / "full").mkdir()
    (t / "full" / "notes.txt").write_text("keep me")
    (t / "fig.png").mkdir()
    return long_paths(t)


SETUPS: dict[str, Callable[..., dict[str, str]]] = {"grids": grids, "noslurm": no_slurm, "out": outputs}


def sweep(name: str, *args: str, dry: bool = True) -> list[str]:
    return ["sweep", f"{{T}}/{name}.toml", *(["--dry-run"] if dry else []), *args]


SWEEP_CASES: list[tuple[str, str | None, list[str], str]] = [
    # names: one plain folder name under RESULTS_DIR/sweeps
    ("sweep-name-dotdot", "grids", sweep("name-dotdot"), "not a plain folder name"),
    ("sweep-name-dotdot-submit", "grids", sweep("name-dotdot", dry=False), "not a plain folder name"),
    ("sweep-name-absolute", "grids", sweep("name-absolute"), "not a plain folder name"),
    ("sweep-name-slash", "grids", sweep("name-slash"), "not a plain folder name"),
    ("sweep-name-dot", "grids", sweep("name-dot"), "not a plain folder name"),
    ("sweep-name-hidden", "grids", sweep("name-hidden"), "not a plain folder name"),
    ("sweep-name-empty", "grids", sweep("name-empty"), "not a plain folder name"),
    ("sweep-name-nul", "grids", sweep("name-nul"), "NUL character"),
    ("sweep-name-backslash", "grids", sweep("name-backslash"), "not a plain folder name"),
    ("sweep-name-too-long", "grids", sweep("name-too-long"), "at most 100 characters"),
    ("sweep-name-not-string", "grids", sweep("name-not-string"), "'name' in the top level must be a string"),
    # what `zsrbench run` would refuse, named by job
    ("sweep-checkpoint-missing", "grids", sweep("checkpoint-missing"), "job 1 of 1"),
    ("sweep-checkpoint-missing-says-so", "grids", sweep("checkpoint-missing"), "nope.pt does not exist"),
    ("sweep-checkpoint-sha-mismatch", "grids", sweep("checkpoint-sha-mismatch"), "was expected"),
    ("sweep-checkpoint-sha-malformed", "grids", sweep("checkpoint-sha-malformed"), "64 hexadecimal characters"),
    ("sweep-checkpoint-folder-not-a-model", "grids", sweep("checkpoint-folder-not-a-model"),
     "no open_clip_config.json"),
    ("sweep-checkpoint-local-dir-missing", "grids", sweep("checkpoint-local-dir-missing"), "does not exist"),
    ("sweep-checkpoint-published-other-defense", "grids", sweep("checkpoint-published-other-defense"),
     "is a published fare checkpoint, not tecoa"),
    ("sweep-checkpoint-hf-hub-with-sha", "grids", sweep("checkpoint-hf-hub-with-sha"), "cannot be checked"),
    ("sweep-checkpoint-path-too-long", "grids", sweep("checkpoint-path-too-long"), "too long"),
    ("sweep-checkpoint-shipped-unknown", "grids", sweep("checkpoint-shipped-unknown"), "zsrbench:nope"),
    ("sweep-sha-without-checkpoint", "grids", sweep("sha-without-checkpoint"), "no --checkpoint was given"),
    ("sweep-data-root-missing", "grids", sweep("data-root-missing"), "does not exist"),
    ("sweep-data-root-file", "grids", sweep("data-root-file"), "is a file"),
    ("sweep-no-data-root", "grids", sweep("no-data-root"), "--data-root"),
    ("sweep-trainable-without-recipe", "grids", sweep("trainable-without-recipe"), "zsrbench train --defense tecoa"),
    ("sweep-steps-zero", "grids", sweep("steps-zero"), "must be a whole number ≥ 1"),
    ("sweep-restarts-zero", "grids", sweep("restarts-zero"), "must be a whole number ≥ 1"),
    ("sweep-step-negative", "grids", sweep("step-negative"), "must be positive"),
    ("sweep-kappa-for-pgd", "grids", sweep("kappa-for-pgd"), "takes no parameter kappa"),
    ("sweep-criterion", "grids", sweep("criterion"), "must be one of last, any"),
    ("sweep-eps-zero", "grids", sweep("eps-zero"), "(0, 255]"),
    ("sweep-eps-too-large", "grids", sweep("eps-too-large"), "(0, 255]"),
    ("sweep-eps-nan", "grids", sweep("eps-nan"), "(0, 255]"),
    ("sweep-eps-bool", "grids", sweep("eps-bool"), "ε values are numbers"),
    ("sweep-n-samples-zero", "grids", sweep("n-samples-zero"), "must be a whole number ≥ 1"),
    ("sweep-seed-negative", "grids", sweep("seed-negative"), "must be a whole number ≥ 0"),
    ("sweep-batch-size-zero", "grids", sweep("batch-size-zero"), "must be a whole number ≥ 1"),
    ("sweep-device-tpu", "grids", sweep("device-tpu"), "Unknown device 'tpu'"),
    ("sweep-precision", "grids", sweep("precision"), "Unknown precision"),
    ("sweep-jobs-zero", "grids", sweep("jobs-zero"), "'jobs' under [run]"),
    ("sweep-subset-unknown", "grids", sweep("subset-unknown"), "has no subset"),
    ("sweep-subset-and-n", "grids", sweep("subset-and-n"), "pass one of them"),
    ("sweep-dataset-unknown", "grids", sweep("dataset-unknown"), "Unknown dataset"),
    ("sweep-datasets-empty", "grids", sweep("datasets-empty"), "names no dataset"),
    ("sweep-dataset-twice", "grids", sweep("dataset-twice"), "more than once"),
    ("sweep-attack-twice", "grids", sweep("attack-twice"), "more than once"),
    # the grid file
    ("sweep-grid-empty", "grids", sweep("empty"), "names no defenses, attacks, protocols"),
    ("sweep-grid-not-toml", "grids", sweep("not-toml"), "is not valid TOML"),
    ("sweep-grid-not-utf8", "grids", sweep("not-utf8"), "is not valid TOML"),
    ("sweep-grid-missing", None, ["sweep", "{T}/nope.toml", "--dry-run"], "Cannot read the grid file"),
    ("sweep-grid-is-a-folder", "grids", sweep("folder"), "Cannot read the grid file"),
    ("sweep-unknown-key", "grids", sweep("unknown-key"), "Did you mean 'steps'?"),
    ("sweep-unknown-defense", "grids", sweep("unknown-defense"), "Did you mean 'tecoa'?"),
    ("sweep-unknown-attack", "grids", sweep("unknown-attack"), "Did you mean 'pgd'"),
    ("sweep-unknown-protocol", "grids", sweep("unknown-protocol"), "Unknown protocol"),
    ("sweep-attacks-empty-list", "grids", sweep("attacks-empty-list"), "is an empty list"),
    ("sweep-suite-empty", "grids", sweep("suite-empty"), "No attack given"),
    ("sweep-same-job-twice", "grids", sweep("same-job-twice"), "are the same evaluation"),
    ("sweep-run-value-type", "grids", sweep("run-value-type"), "'seed' in [run] must be a whole number"),
    ("sweep-executor-value-type", "grids", sweep("executor-value-type"), "'time' in [executor] must be"),
    ("sweep-executor-unknown-key", "grids", sweep("executor-unknown-key"), "unknown key 'gpus'"),
    ("sweep-run-not-a-table", "grids", sweep("run-not-a-table"), "'run' in the top level must be a table"),
    # executors and sizes
    ("sweep-unknown-executor", "grids", sweep("ok", "--executor", "sluurm"), "Did you mean 'slurm'?"),
    ("sweep-debug-no-wait", "grids", sweep("ok", "--executor", "debug", "--no-wait", dry=False), "drop --no-wait"),
    ("sweep-slurm-without-sbatch", "noslurm", sweep("ok", "--executor", "slurm"), "--executor local"),
    ("sweep-too-large-without-yes", "grids", sweep("big", dry=False), "would submit 501 jobs, more than 500"),
    ("sweep-too-large-says-how", "grids", sweep("big", dry=False), "pass --yes"),
    # folders
    ("sweep-folder-is-a-file", "grids", sweep("ok", "--folder", "{T}/afile"), "is a file, not a folder"),
    ("sweep-folder-under-a-file", "grids", sweep("ok", "--folder", "{T}/afile/sub"), "not writable"),
    ("sweep-folder-name-too-long", "grids", sweep("ok", "--folder", "{name}"), "too long"),
    ("sweep-folder-path-too-long", "grids", sweep("ok", "--folder", "{path}"), "too long"),
    ("sweep-folder-path-too-long-submit", "grids", sweep("ok", "--folder", "{path}", dry=False), "too long"),
    ("sweep-results-dir-name-too-long", "grids", sweep("results-dir-name-too-long"), "too long"),
    ("sweep-results-dir-path-too-long", "grids", sweep("results-dir-path-too-long"), "too long"),
    ("sweep-leaderboard-dir-path-too-long", "grids", sweep("leaderboard-dir-path-too-long"), "too long"),
    ("sweep-leaderboard-dir-file", "grids", sweep("leaderboard-dir-file"), "is a file, not a folder"),
    ("sweep-results-dir-under-file", "grids", sweep("results-dir-under-file"), "not writable"),
]

SITE = ["site", "--no-figures"]
PLOT_CASES: list[tuple[str, str | None, list[str], str]] = [
    # site
    ("site-out-name-too-long", "out", [*SITE, "{name}"], "too long"),
    ("site-out-path-too-long", "out", [*SITE, "{path}"], "too long"),
    ("site-out-under-a-file", "out", [*SITE, "{T}/afile/site"], "not writable"),
    ("site-out-is-a-file", "out", [*SITE, "{T}/afile"], "is a file, not a folder"),
    ("site-out-not-a-site", "out", [*SITE, "{T}/full"], "not made by `zsrbench site`"),
    ("site-out-in-the-leaderboard", None, [*SITE, "leaderboards/site"], "overlap"),
    ("site-leaderboard-missing", None, [*SITE, "{T}/site", "--leaderboard-dir", "{T}/nope"], "{T}/nope"),
    ("site-leaderboard-path-too-long", "out", [*SITE, "{T}/site", "--leaderboard-dir", "{path}"], "too long"),
    ("site-leaderboard-is-a-file", "out", [*SITE, "{T}/site", "--leaderboard-dir", "{T}/afile"], "{T}/afile"),
    ("site-unknown-protocol", None, [*SITE, "{T}/site", "--protocol", "tga61"], "Unknown protocol"),
    # plot
    ("plot-eps-out-name-too-long", "out", ["plot", "eps", *SYNTHETIC, "--out", "{name}/eps.png"], "too long"),
    ("plot-eps-out-path-too-long", "out", ["plot", "eps", *SYNTHETIC, "--out", "{path}/eps.png"], "too long"),
    ("plot-tradeoff-out-path-too-long", "out", ["plot", "tradeoff", *SYNTHETIC, "--out", "{path}/t.png"],
     "too long"),
    ("plot-bars-out-path-too-long", "out", ["plot", "bars", "clip", "--out", "{path}/b.png"], "too long"),
    ("plot-bars-out-name-too-long", "out", ["plot", "bars", "clip", "--out", f"{{T}}/{LONG_NAME}.png"],
     "too long"),
    ("plot-svg-format-path-too-long", "out", ["plot", "eps", *SYNTHETIC, "--out", "{path}/eps", "--format",
                                              "png,svg"], "too long"),
    ("plot-out-under-a-file", "out", ["plot", "eps", *SYNTHETIC, "--out", "{T}/afile/eps.png"], "is a file"),
    ("plot-out-is-a-folder", "out", ["plot", "eps", *SYNTHETIC, "--out", "{T}/fig.png"], "is a folder"),
    ("plot-out-without-suffix", "out", ["plot", "eps", *SYNTHETIC, "--out", "{T}/full"], "names neither"),
    ("plot-bad-format", None, ["plot", "eps", *SYNTHETIC, "--format", "jpeg", "--out", "{T}/eps"], "--format"),
    ("plot-bad-suffix", None, ["plot", "eps", *SYNTHETIC, "--out", "{T}/eps.pdf"], ".pdf"),
    ("plot-results-dir-path-too-long", "out", ["plot", "eps", *SYNTHETIC, "--results-dir", "{path}", "--out",
                                               "{T}/eps.png"], "too long"),
    ("plot-leaderboard-dir-name-too-long", "out", ["plot", "eps", *SYNTHETIC, "--leaderboard-dir", "{name}",
                                                   "--out", "{T}/eps.png"], "too long"),
    ("plot-leaderboard-missing", None, ["plot", "eps", *SYNTHETIC, "--leaderboard-dir", "{T}/nope", "--out",
                                        "{T}/eps.png"], "{T}/nope"),
    ("plot-results-dir-is-a-file", "out", ["plot", "eps", *SYNTHETIC, "--results-dir", "{T}/afile", "--out",
                                           "{T}/eps.png"], "{T}/afile"),
    ("plot-unknown-protocol", None, ["plot", "eps", "--protocol", "tga61", "--out", "{T}/eps.png"], "tga61"),
    ("plot-bars-unknown-entry", None, ["plot", "bars", "no-such-entry", "--out", "{T}/b.png"], "no-such-entry"),
    ("plot-bad-protocol-version", None, ["plot", "eps", *SYNTHETIC, "--protocol-version", "x", "--out",
                                         "{T}/eps.png"], "--protocol-version"),
    ("plot-unknown-subset", None, ["plot", "eps", *SYNTHETIC, "--subset", "tiny", "--out", "{T}/eps.png"],
     "--subset"),
    ("attention-out-path-too-long", "out", ["attention", *SYNTHETIC, "--out", "{path}/a.png", "--quiet"],
     "too long"),
    ("attention-out-name-too-long", "out", ["attention", *SYNTHETIC, "--out", "{name}/a.png", "--quiet"],
     "too long"),
    # run: the plan summary reads earlier records of the results folder
    ("run-results-dir-path-too-long", "out", ["run", *SYNTHETIC, "--steps", "2", "--results-dir", "{path}"],
     "too long"),
    ("run-results-dir-path-too-long-quiet", "out", ["run", *SYNTHETIC, "--steps", "2", "--quiet", "--results-dir",
                                                    "{path}"], "too long"),
    ("run-leaderboard-dir-path-too-long", "out", ["run", *SYNTHETIC, "--steps", "2", "--leaderboard-dir", "{path}"],
     "too long"),
]

CASES = SWEEP_CASES + PLOT_CASES


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_world(tmp_path_factory)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, world, tmp_path, monkeypatch):
    check_case(case, world, tmp_path, monkeypatch, SETUPS)


def test_the_matrix_has_unique_names():
    assert len({c[0] for c in CASES}) == len(CASES) and len(CASES) >= 100
