"""One generic registry for defenses, attacks, datasets and protocols, with entry-point plugins.

Entries are registered with a decorator (``@DEFENSES.register("name", "alias")``) or lazily as
``"module:object"`` strings that are imported only when first used. Installed packages add entries through
the entry-point groups ``zsrbench.defenses``, ``zsrbench.attacks`` and ``zsrbench.datasets``; ``origin()``
tells where each entry came from.
"""

from __future__ import annotations

import difflib
import importlib
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

    def resolve(self) -> Any:
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            try:
                obj = importlib.import_module(module)
                for part in attr.split(".") if attr else []:
                    obj = getattr(obj, part)
            except (ImportError, AttributeError) as exc:
                raise ZsrError(
                    f"Could not load '{self.name}' from {self.origin}: {exc}. "
                    "Check that the package providing it is installed in this environment."
                ) from exc
            self.target = obj
        return self.target


def describe(obj: Any) -> str:
    """One line of description: the ``description`` attribute, else the docstring's first line."""
    text = getattr(obj, "description", None) or (getattr(obj, "__doc__", None) or "")
    text = text.strip().splitlines()[0] if text.strip() else ""
    return text


class Registry(Generic[T]):
    """A named collection of objects with aliases, lazy entries, plugins and helpful errors."""

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}
        self._plugins_loaded = group is None
        self._resolvers: dict[str, tuple[Callable[[str], Any], str]] = {}

    # registration -------------------------------------------------------------------------------
    def register(self, name: str, *aliases: str, origin: str = "zsrbench") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj, *aliases, origin=origin)
            return obj

        return deco

    def add(self, name: str, target: Any, *aliases: str, origin: str = "zsrbench") -> None:
        key = self._norm(name)
        existing = self._entries.get(key)
        if existing is not None and existing.target is not target and existing.origin != origin:
            raise ZsrError(
                f"{self.kind} '{name}' is registered twice ({existing.origin} and {origin}); "
                "uninstall one of the packages or rename the plugin's entry."
            )
        self._entries[key] = Entry(name=name, target=target, origin=origin, aliases=tuple(aliases))
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
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            dist = getattr(ep, "dist", None)
            dist_name = f"{dist.name} {dist.version}" if dist is not None else "unknown package"
            origin = f"plugin {dist_name} ({ep.value})"
            if self._norm(ep.name) in self._entries:
                continue
            self._entries[self._norm(ep.name)] = Entry(name=ep.name, target=ep.value, origin=origin)

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
        return self._entries[key].resolve()

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


DEFENSES: Registry[Any] = Registry("defense", "zsrbench.defenses")
ATTACKS: Registry[Any] = Registry("attack", "zsrbench.attacks")
DATASETS: Registry[Any] = Registry("dataset", "zsrbench.datasets")
PROTOCOLS: Registry[Any] = Registry("protocol", "zsrbench.protocols")

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
