"""A plugin entry point that does not load is one plugin's problem, never zsrbench's.

An installed distribution (a dist-info as pip writes it, found through PYTHONPATH) declares entry points whose
modules raise on import (any exception, a ``SyntaxError``, ``sys.exit``) or that name an object of the wrong
kind. Using one of them is a one-paragraph error (exit 2) naming the plugin, its version, the entry point and
the exception's first line; `zsrbench list` shows it as broken; every other entry stays usable.
"""

from __future__ import annotations

import pytest

from test_plugin_guide import row, zsrbench

BROKEN = {
    "raises": ("zsrbench.defenses", "zbroken_raises:D", "raise RuntimeError('the plugin cannot find its weights')\n",
               "RuntimeError: the plugin cannot find its weights"),
    "syntax": ("zsrbench.defenses", "zbroken_syntax:D", "def broken(:\n", "SyntaxError"),
    "exits": ("zsrbench.attacks", "zbroken_exits:A", "import sys\nsys.exit(3)\n", "calls sys.exit(3) on import"),
    "wrongkind": ("zsrbench.attacks", "zbroken_kind:A", "A = 42\n", "names a int (42), not a zsrbench.attacks.base.AttackSpec"),
    "notadefense": ("zsrbench.defenses", "zbroken_cls:D", "class D:\n    pass\n",
                    "names the class D, not a subclass of zsrbench.defenses.base.Defense"),
}


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    target = tmp_path_factory.mktemp("broken")
    info = target / "zsrbench_broken-0.4.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zsrbench-broken\nVersion: 0.4.1\n")
    groups: dict[str, list[str]] = {}
    for name, (group, value, source, _) in BROKEN.items():
        groups.setdefault(group, []).append(f"{name} = {value}")
        (target / f"{value.split(':')[0]}.py").write_text(source)
    (info / "entry_points.txt").write_text("".join(f"[{g}]\n" + "\n".join(lines) + "\n" for g, lines in groups.items()))
    return target


@pytest.mark.parametrize("name", list(BROKEN))
def test_using_a_broken_entry_is_one_paragraph_naming_the_plugin(broken, tmp_path, name):
    group, value, _, says = BROKEN[name]
    flag = "--defense" if group == "zsrbench.defenses" else "--attack"
    res = zsrbench("run", "--protocol", "synthetic", flag, name, "--steps", "1", "--quiet", "--no-leaderboard",
                   "--results-dir", str(tmp_path / "r"), path=[broken], cwd=tmp_path)
    text = " ".join((res.stdout + res.stderr).split())
    assert res.returncode == 2 and "Traceback" not in text, text
    assert f"Could not load '{name}' from plugin zsrbench-broken 0.4.1 ({value})" in text and says in text, text
    assert not (tmp_path / "r").exists()


def test_list_shows_broken_entries_and_every_other_one(broken, tmp_path):
    for kind in ("defenses", "attacks"):
        res = zsrbench("list", kind, path=[broken], cwd=tmp_path)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
        for name, (group, *_rest) in BROKEN.items():
            if group.endswith(kind):
                assert "BROKEN: Could not load" in row(res.stdout, name), row(res.stdout, name)
        assert row(res.stdout, "pgd" if kind == "attacks" else "clip").endswith("zsrbench")


def test_other_entries_stay_usable(broken, tmp_path):
    res = zsrbench("run", "--protocol", "synthetic", "--defense", "clip", "--attack", "pgd", "--steps", "1",
                   "--quiet", "--no-leaderboard", "--results-dir", str(tmp_path / "r"), path=[broken], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "r").rglob("*.json"))
