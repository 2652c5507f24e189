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


def test_prefix_resolver_registers_on_first_use():
    reg = Registry("widget")

    class Obj:
        def __init__(self, name):
            self.name = name

    calls = []

    def resolve(name):
        calls.append(name)
        if name.lower() == "x:bad":
            raise ZsrError("no such thing")
        return Obj("x:" + name.split(":", 1)[1].upper())

    reg.add_resolver("x:", resolve, origin="resolver")
    assert reg.get("x:foo").name == "x:FOO" and reg.origin("x:foo") == "resolver"
    assert reg.get("x:FOO").name == "x:FOO" and len(calls) == 1  # cached after the first use
    with pytest.raises(ZsrError, match="no such thing"):
        reg.get("x:bad")


def test_torchattacks_prefix_without_the_extra_says_what_to_install():
    import importlib.util

    load_builtins()
    if importlib.util.find_spec("torchattacks") is not None:
        pytest.skip("torchattacks is installed here")
    with pytest.raises(ZsrError, match=r"zsrbench\[torchattacks\]"):
        ATTACKS.get("ta:FGSM")
