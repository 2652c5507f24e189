"""One generic registry for defenses, attacks, datasets and protocols, with entry-point plugins.

Entries are registered with a decorator (``@DEFENSES.register("name", "alias")``) or lazily as
``"module:object"`` strings that are imported only when first used. Installed packages add entries through
the entry-point groups ``zsrbench.defenses``, ``zsrbench.attacks``, ``zsrbench.datasets`` and
``zsrbench.protocols`` (see docs/plugins.md); ``origin()`` tells where each entry came from.

Names are unique within a registry (compared case-insensitively, ``-`` and ``_`` alike): an entry point named
like a built-in entry, a built-in alias or another package's entry point is refused with a :class:`ZsrError`
naming both, raised whenever the registry is used (plugins are read on first use, after the built-ins).
"""

from __future__ import annotations

import difflib
import importlib
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, Iterator, TypeVar

from zsrbench.errors import ZsrError

T = TypeVar("T")


@dataclass
class Entry:
    name: str
    target: Any  # the object, or a "module:object" string until first use
    origin: str  # "zsrbench" or "plugin <dist> (<module:object>)"
    aliases: tuple[str, ...] = ()
    where: str = ""  # in words, for errors: the module that registered it, or the entry point and its package
    package: str = ""  # a plugin's distribution name ("" for entries registered in code)
    version: str = ""  # a plugin's distribution version

    def provenance(self) -> dict[str, str]:
        """Where the entry's code comes from, as result records store it: ``{"kind": "built-in"}`` (zsrbench's
        own, versioned with zsrbench), ``{"kind": "plugin", "package", "version", "entry_point"}``, or
        ``{"kind": "code", "module"}`` for an entry registered in code by another module."""
        if self.package or self.origin.startswith("plugin "):
            target = self.origin.rpartition(" (")[2].rstrip(")")
            return {"kind": "plugin", "package": self.package or "unknown", "version": self.version or "unknown",
                    "entry_point": target}
        if self.where.startswith("the built-in entry of zsrbench"):
            return {"kind": "built-in"}
        place = self.where.removeprefix("the entry registered in code by ")
        return {"kind": "code", "module": place}

    broken: str | None = None  # why the entry cannot be loaded (set on the first failed attempt)

    def resolve(self, expects: tuple[str, str] | None = None) -> Any:
        """The registered object, imported on first use. An entry point whose module fails on import (any
        exception, ``SyntaxError``, ``sys.exit``) or that names an object of the wrong kind (``expects``:
        (``module:Class``, what it should be)) is *broken*: a :class:`ZsrError` now and on every later use, and
        nothing else of the registry is affected."""
        if self.broken is not None:
            raise ZsrError(self.broken)
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            try:
                obj = importlib.import_module(module)
                for part in attr.split(".") if attr else []:
                    obj = getattr(obj, part)
            except (Exception, SystemExit) as exc:  # a plugin's import may raise anything
                self.broken = (f"Could not load '{self.name}' from {self.origin}: {_first_line(exc)}. Check that the "
                               "package providing it is installed in this environment and imports cleanly (python -c "
                               f"'import {module}' shows the whole error).")
                raise ZsrError(self.broken) from None
            if expects is not None and not _is_kind(obj, expects[0]):
                self.broken = (f"Could not load '{self.name}' from {self.origin}: it names {_kind_of(obj)}, not "
                               f"{expects[1]}. Point the entry point at {expects[1]} (docs/plugins.md).")
                raise ZsrError(self.broken)
            self.target = obj
        return self.target


def _first_line(exc: BaseException) -> str:
    """``SyntaxError: invalid syntax (module.py, line 3)``: the exception's type and first line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, SystemExit):
        return f"the module calls sys.exit({exc.code!r}) on import"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_kind(obj: Any, expected: str) -> bool:
    """Whether ``obj`` is an instance (or, for a class, a subclass) of the ``module:Class`` named ``expected``."""
    module, _, name = expected.partition(":")
    cls = getattr(importlib.import_module(module), name)
    return isinstance(obj, cls) or (isinstance(obj, type) and issubclass(obj, cls))


def _kind_of(obj: Any) -> str:
    return f"the class {obj.__qualname__}" if isinstance(obj, type) else f"a {type(obj).__name__} ({obj!r:.40})"


def _registered_where(target: Any, origin: str) -> str:
    """Where an entry added in code comes from, in words: the module (and object) that registered it."""
    if isinstance(target, str):
        place = target
    elif hasattr(target, "__qualname__") and hasattr(target, "__module__"):
        place = f"{target.__module__}:{target.__qualname__}"
    else:  # an instance (an AttackSpec, a Protocol ...): the module whose code called add()
        frame, place = sys._getframe(1), "?"
        while frame is not None:
            place = frame.f_globals.get("__name__", "?")
            if place != __name__:
                break
            frame = frame.f_back
    if origin != "zsrbench":
        return f"{origin} ({place})"
    builtin = place == "zsrbench" or place.startswith(("zsrbench.", "zsrbench:"))
    return f"the built-in entry of zsrbench ({place})" if builtin else f"the entry registered in code by {place}"


def describe(obj: Any) -> str:
    """One line of description: the ``description`` attribute, else the docstring's first line."""
    text = getattr(obj, "description", None) or (getattr(obj, "__doc__", None) or "")
    text = text.strip().splitlines()[0] if text.strip() else ""
    return text


class Registry(Generic[T]):
    """A named collection of objects with aliases, lazy entries, plugins and helpful errors."""

    def __init__(self, kind: str, group: str | None = None, builtins: Callable[[], None] | None = None,
                 expects: tuple[str, str] | None = None) -> None:
        self.kind = kind
        self.expects = expects  # ("module:Class", in words): what a plugin's entry point must name
        self.group = group
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}
        self._plugins_loaded = group is None
        self._plugin_error: str | None = None  # a name collision found among the plugins (raised on every use)
        self._builtins = builtins  # registers the built-in entries; called before plugins are read
        self._resolvers: dict[str, tuple[Callable[[str], Any], str]] = {}

    # registration -------------------------------------------------------------------------------
    def register(self, name: str, *aliases: str, origin: str = "zsrbench") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj, *aliases, origin=origin)
            return obj

        return deco

    def add(self, name: str, target: Any, *aliases: str, origin: str = "zsrbench") -> None:
        key = self._norm(name)
        where = _registered_where(target, origin)
        existing = self._entries.get(key)
        if existing is not None and existing.target is not target and existing.origin != origin:
            new = Entry(name=name, target=target, origin=origin, where=where)
            raise ZsrError(self._collision_message(existing, new))
        self._entries[key] = Entry(name=name, target=target, origin=origin, aliases=tuple(aliases), where=where)
        for alias in aliases:
            self._aliases[self._norm(alias)] = key

    @staticmethod
    def _norm(name: str) -> str:
        return name.strip().lower().replace("-", "_") if ":" not in name else name.strip()

    def add_resolver(self, prefix: str, resolve: Callable[[str], Any], origin: str) -> None:
        """Names starting with ``prefix`` (e.g. ``ta:``) are resolved on first use by ``resolve(name)``.

        ``resolve`` returns the object (with a ``name`` attribute giving its canonical spelling) or raises
        :class:`ZsrError`.
        """
        self._resolvers[prefix.lower()] = (resolve, origin)

    # plugins ------------------------------------------------------------------------------------
    def load_plugins(self) -> None:
        """Read the entry points of this registry's group (once, after the built-ins are registered).

        An entry point whose name is taken (by a built-in entry or alias, or by another package's entry point)
        is a :class:`ZsrError` naming both; it is raised now and on every later use of the registry.
        """
        if self._plugin_error is not None:
            raise ZsrError(self._plugin_error)
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        if self._builtins is not None:
            self._builtins()
        problems = []
        for ep in entry_points(group=self.group):
            new = self._plugin_entry(ep)
            key = self._norm(ep.name)
            taken = self._entries.get(key) or self._entries.get(self._aliases.get(key, ""))
            if taken is not None and (taken.origin, taken.target) == (new.origin, new.target):
                continue  # the same entry point seen twice (one package on two path entries)
            if taken is not None:
                problems.append(self._collision_message(taken, new))
                continue
            self._entries[key] = new
        if problems:
            self._plugin_error = " ".join(problems)
            raise ZsrError(self._plugin_error)

    def _plugin_entry(self, ep: Any) -> Entry:
        dist = getattr(ep, "dist", None)
        package = f"{dist.name} {dist.version}" if dist is not None else "unknown package"
        return Entry(name=ep.name, target=ep.value, origin=f"plugin {package} ({ep.value})",
                     where=f"the entry point '{ep.name} = {ep.value}' in group {self.group} of the installed package "
                           f"{package}", package=dist.name if dist is not None else "",
                     version=dist.version if dist is not None else "")

    def _collision_message(self, taken: Entry, new: Entry) -> str:
        """Two entries want one name: say where each comes from and how to resolve it."""
        alias = "" if self._norm(taken.name) == self._norm(new.name) else f" (an alias of '{taken.name}')"
        fix = [f"`pip uninstall {e.package}`" for e in (taken, new) if e.package]
        uninstall = f", or uninstall the package ({' or '.join(fix)})" if fix else ""
        table = f"[project.entry-points.\"{self.group}\"]" if self.group else "entry-points"
        return (f"The {self.kind} name '{new.name}'{alias} is registered twice: by {taken.where} and by "
                f"{new.where}. Names must be unique: rename the plugin's entry point (the name left of '=' in the "
                f"{table} table of its pyproject.toml) and reinstall it{uninstall}.")

    # lookup -------------------------------------------------------------------------------------
    def _key(self, name: str) -> str | None:
        self.load_plugins()
        key = self._norm(name)
        if key in self._entries:
            return key
        if key in self._aliases:
            return self._aliases[key]
        for prefix, (resolve, origin) in self._resolvers.items():
            if name.strip().lower().startswith(prefix):
                obj = resolve(name.strip())
                canonical = getattr(obj, "name", name.strip())
                self.add(canonical, obj, *([name.strip()] if name.strip() != canonical else []), origin=origin)
                return self._norm(canonical)
        return None

    def __contains__(self, name: str) -> bool:
        return self._key(name) is not None

    def get(self, name: str) -> T:
        key = self._key(name)
        if key is None:
            raise ZsrError(self._unknown_message(name))
        return self._entries[key].resolve(self.expects)

    def entry(self, name: str) -> Entry:
        key = self._key(name)
        if key is None:
            raise ZsrError(self._unknown_message(name))
        return self._entries[key]

    def canonical(self, name: str) -> str:
        return self.entry(name).name

    def origin(self, name: str) -> str:
        return self.entry(name).origin

    def names(self) -> list[str]:
        self.load_plugins()
        return sorted(e.name for e in self._entries.values())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self.get(n)) for n in self.names()]

    def _unknown_message(self, name: str) -> str:
        known = self.names()
        candidates = known + [a for a in self._aliases]
        close = difflib.get_close_matches(self._norm(name), [self._norm(c) for c in candidates], n=1, cutoff=0.5)
        hint = ""
        if close:
            match = next((c for c in candidates if self._norm(c) == close[0]), close[0])
            hint = f" Did you mean '{match}'?"
        return (
            f"Unknown {self.kind} '{name}'.{hint} Known {self.kind}s: {', '.join(known) or '(none)'}. "
            f"Run `zsrbench list {self.kind}s` to see them with descriptions."
        )


def _load_builtins() -> None:
    load_builtins()


DEFENSES: Registry[Any] = Registry("defense", "zsrbench.defenses", builtins=_load_builtins,
                                   expects=("zsrbench.defenses.base:Defense", "a subclass of zsrbench.defenses.base.Defense"))
ATTACKS: Registry[Any] = Registry("attack", "zsrbench.attacks", builtins=_load_builtins,
                                  expects=("zsrbench.attacks.base:AttackSpec", "a zsrbench.attacks.base.AttackSpec"))
DATASETS: Registry[Any] = Registry("dataset", "zsrbench.datasets", builtins=_load_builtins,
                                   expects=("zsrbench.data.base:DatasetBuilder", "a zsrbench.data.base.DatasetBuilder"))
PROTOCOLS: Registry[Any] = Registry("protocol", "zsrbench.protocols", builtins=_load_builtins,
                                    expects=("zsrbench.protocols:Protocol", "a zsrbench.protocols.Protocol"))

register_defense = DEFENSES.register
register_attack = ATTACKS.register
register_dataset = DATASETS.register
register_protocol = PROTOCOLS.register


def load_builtins() -> None:
    """Import zsrbench's own modules so that their decorators register the built-in entries."""
    importlib.import_module("zsrbench.attacks")
    importlib.import_module("zsrbench.defenses")
    importlib.import_module("zsrbench.data")
    importlib.import_module("zsrbench.protocols")
    importlib.import_module("zsrbench.micro")
