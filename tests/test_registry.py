import pytest

from zsrbench.errors import ZsrError
from zsrbench.registry import ATTACKS, DEFENSES, Registry, load_builtins


def test_unknown_name_lists_known_and_closest():
    reg = Registry("widget")
    reg.add("alpha", object())
    reg.add("beta", object(), "b")
    with pytest.raises(ZsrError) as exc:
        reg.get("alpah")
    msg = str(exc.value)
    assert "Did you mean 'alpha'" in msg and "alpha, beta" in msg


def test_aliases_and_normalisation():
    reg = Registry("widget")
    obj = object()
    reg.add("aa-lite", obj, "tga-autoattack")
    assert reg.get("AA_LITE") is obj and reg.get("tga_autoattack") is obj
    assert reg.canonical("aa_lite") == "aa-lite"


def test_lazy_entries_resolve_on_first_use():
    reg = Registry("widget")
    reg.add("join", "os.path:join")
    import os.path

    assert reg.get("join") is os.path.join
    reg.add("broken", "no_such_module_xyz:thing")
    with pytest.raises(ZsrError, match="Could not load 'broken'"):
        reg.get("broken")


def test_duplicate_from_another_origin_is_refused():
    reg = Registry("widget")
    reg.add("x", 1)
    with pytest.raises(ZsrError, match="registered twice"):
        reg.add("x", 2, origin="plugin other 1.0")


def test_builtin_attacks_and_defenses_registered():
    load_builtins()
    for name in ("pgd", "cw", "autoattack", "aa-lite", "aa-fare"):
        assert name in ATTACKS, name
    assert "clip" in DEFENSES
    assert ATTACKS.origin("pgd") == "zsrbench"
