"""Finding and loading plugins, one entry point at a time, so that one broken plugin cannot break the rest.

Plugins are entry points in the `plinth` group. Each is imported inside try/except; a failure is recorded on
its `PluginInfo` (shown by `plinth plugins`) and skipped with a warning, unless strict mode
(`--strict-plugins` or PLINTH_STRICT_PLUGINS=1) makes it fatal. PLINTH_PLUGINS=a,b loads only those entry points
(or distributions); PLINTH_DISABLE_PLUGINS=c blocks some. Components are collected per slot; a name claimed twice
in one slot is an error naming both distributions.
"""

from __future__ import annotations

import difflib
import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .errors import PluginError, UnknownComponentError

if TYPE_CHECKING:
    from .components import Component

# the slot names; the base classes live in components.py and are imported only to check a registration
SLOTS = ("generator", "trainer", "merger", "evaluator", "strategy")

GROUP = "plinth"
CORE_DIST = "plinth"

SLOT_HOOKS = {
    "generator": "plinth_register_generators",
    "trainer": "plinth_register_trainers",
    "merger": "plinth_register_mergers",
    "evaluator": "plinth_register_evaluators",
    "strategy": "plinth_register_strategies",
}


@dataclass
class PluginInfo:
    """What `plinth plugins` shows about one entry point."""

    name: str
    distribution: str
    version: str
    module: str
    hooks: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "hooks": self.hooks,
            "components": self.components,
            "error": self.error,
        }


@dataclass
class ComponentEntry:
    """A registered component. `target` is the class, or a lazy "module:Class" reference imported on first use,
    so that listing plugins and `plinth --help` never import a plugin's heavy modules."""

    name: str
    slot: str
    target: type | str
    plugin: str
    distribution: str

    @property
    def cls(self) -> type:
        if isinstance(self.target, str):
            import importlib

            module, _, attr = self.target.partition(":")
            try:
                obj = getattr(importlib.import_module(module), attr)
            except Exception as exc:  # noqa: BLE001 - report whose reference broke
                raise PluginError(
                    f"{self.slot} '{self.name}' from plugin '{self.plugin}' ({self.distribution}): cannot import "
                    f"{self.target}: {type(exc).__name__}: {exc}"
                ) from exc
            _check_class(self.slot, self.name, obj, self.plugin, self.distribution)
            self.target = obj
        return self.target


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {item.strip() for item in raw.split(",") if item.strip()}


def strict_from_env() -> bool:
    return os.environ.get("PLINTH_STRICT_PLUGINS", "").lower() in {"1", "true", "yes"}


class PluginManager:
    """The loaded plugins and the components they registered. Build one with `load_plugins()`."""

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self.components: dict[str, dict[str, ComponentEntry]] = {slot: {} for slot in SLOTS}
        self.chat_backends: dict[str, ComponentEntry] = {}
        #: (slot, name) claimed by two distributions -> the error; such a name is unusable until one goes.
        self.conflicts: dict[tuple[str, str], str] = {}

    @property
    def hook(self) -> Any:
        return self.pm.hook

    # -- loading ----------------------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        only = _env_list("PLINTH_PLUGINS")
        disabled = _env_list("PLINTH_DISABLE_PLUGINS") or set()
        seen: set[tuple[str, str]] = set()
        for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: (e.name, e.value)):
            dist = ep.dist.name if ep.dist is not None else "?"
            if (ep.name, ep.value) in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            keys = {ep.name, dist}
            if only is not None and not keys & only:
                continue
            if keys & disabled:
                continue
            version = ep.dist.version if ep.dist is not None else "?"
            info = PluginInfo(name=ep.name, distribution=dist, version=version, module=ep.value)
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's, not ours
                self._failed(info, f"import failed: {type(exc).__name__}: {exc}")
                continue
            self.register_plugin(plugin, info)

    def register_plugin(self, plugin: Any, info: PluginInfo) -> None:
        """Register one plugin object (module or instance) and collect what it registers."""
        self.plugins.append(info)
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as exc:  # noqa: BLE001
            self._failed(info, f"registration failed: {type(exc).__name__}: {exc}", appended=True)
            return
        info.hooks = sorted(impl.name for impl in self.pm.get_hookcallers(plugin) or [])
        try:
            self._collect(plugin, info)
        except Exception as exc:  # noqa: BLE001
            self.pm.unregister(plugin)
            self._failed(info, f"registering components failed: {type(exc).__name__}: {exc}", appended=True)

    def _failed(self, info: PluginInfo, message: str, appended: bool = False) -> None:
        info.error = message
        if not appended:
            self.plugins.append(info)
        if self.strict:
            raise PluginError(f"plugin '{info.name}' ({info.distribution} {info.version}): {message}")
        warnings.warn(
            f"plinth: skipping plugin '{info.name}' ({info.distribution}): {message}. "
            "Run `plinth plugins` for details; --strict-plugins makes this fatal.",
            stacklevel=2,
        )

    def _collect(self, plugin: Any, info: PluginInfo) -> None:
        for slot, hook_name in SLOT_HOOKS.items():
            impl = getattr(plugin, hook_name, None)
            if impl is None:
                continue
            found: list[str] = []

            def register(name: str, cls: type, _slot: str = slot, _found: list[str] = found) -> None:
                self._add_component(_slot, name, cls, info)
                _found.append(name)

            # Call only this plugin's implementation: the others were collected when they loaded.
            impl(register=register)
            if found:
                info.components[slot] = sorted(found)
        impl = getattr(plugin, "plinth_register_chat_backends", None)
        if impl is not None:
            names: list[str] = []

            def register_backend(name: str, cls: type, _names: list[str] = names) -> None:
                self._add_backend(name, cls, info)
                _names.append(name)

            impl(register=register_backend)
            if names:
                info.components["chat_backend"] = sorted(names)

    def _add_component(self, slot: str, name: str, cls: type | str, info: PluginInfo) -> None:
        if isinstance(cls, str):
            if ":" not in cls:
                raise PluginError(
                    f"plugin '{info.name}' ({info.distribution}) registered {slot} '{name}' as {cls!r}; "
                    "a lazy reference must read 'package.module:ClassName'"
                )
        else:
            _check_class(slot, name, cls, info.name, info.distribution)
        existing = self.components[slot].get(name)
        if existing is not None:
            message = (
                f"{slot} '{name}' is registered twice: by '{existing.plugin}' ({existing.distribution}) and by "
                f"'{info.name}' ({info.distribution}). Uninstall one, or block one with PLINTH_DISABLE_PLUGINS."
            )
            self.conflicts[(slot, name)] = message
            info.error = "; ".join(filter(None, [info.error, message]))
            if self.strict:
                raise PluginError(message)
            warnings.warn(f"plinth: {message}", stacklevel=2)
            return
        self.components[slot][name] = ComponentEntry(name, slot, cls, info.name, info.distribution)

    def _add_backend(self, name: str, cls: type | str, info: PluginInfo) -> None:
        if not isinstance(cls, str):
            _check_class("chat_backend", name, cls, info.name, info.distribution)
        existing = self.chat_backends.get(name)
        if existing is not None:
            raise PluginError(
                f"chat back end '{name}' is registered twice: by '{existing.plugin}' ({existing.distribution}) "
                f"and by '{info.name}' ({info.distribution})"
            )
        self.chat_backends[name] = ComponentEntry(name, "chat_backend", cls, info.name, info.distribution)

    # -- lookup -----------------------------------------------------------------------------------------
    def get(self, slot: str, name: str) -> "type[Component]":
        """The component class for `name` in `slot`, or an error listing what exists and the closest match."""
        if slot not in self.components:
            raise UnknownComponentError(_unknown("slot", slot, list(self.components)))
        if (slot, name) in self.conflicts:
            raise PluginError(self.conflicts[(slot, name)])
        entry = self.components[slot].get(name)
        if entry is None:
            raise UnknownComponentError(_unknown(slot, name, list(self.components[slot])))
        return entry.cls  # type: ignore[return-value]

    def entry(self, slot: str, name: str) -> ComponentEntry:
        self.get(slot, name)
        return self.components[slot][name]

    def chat_backend(self, name: str) -> type:
        entry = self.chat_backends.get(name)
        if entry is None:
            raise UnknownComponentError(_unknown("chat back end", name, list(self.chat_backends)))
        return entry.cls

    def errors(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.error]


def _check_class(slot: str, name: str, cls: Any, plugin: str, distribution: str) -> None:
    from .lm.chat import ChatBackend
    from .components import SLOTS as BASES

    base = BASES.get(slot, ChatBackend)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(
            f"plugin '{plugin}' ({distribution}) registered {slot} '{name}' as {cls!r}, "
            f"which is not a subclass of plinth.{base.__name__}"
        )


def _unknown(what: str, name: str, available: list[str]) -> str:
    msg = f"unknown {what} '{name}'"
    close = difflib.get_close_matches(name, available, n=1)
    if close:
        msg += f" — did you mean '{close[0]}'?"
    msg += f" Available: {', '.join(sorted(available)) or 'none (is the plugin installed? see `plinth plugins`)'}"
    return msg


_cached: PluginManager | None = None


def load_plugins(strict: bool | None = None, refresh: bool = False) -> PluginManager:
    """The process-wide plugin manager, loaded on first use (entry points are read once per process)."""
    global _cached
    if strict is None:
        strict = strict_from_env()
    if _cached is None or refresh or (strict and not _cached.strict):
        manager = PluginManager(strict=strict)
        from . import builtins

        manager.register_plugin(builtins, PluginInfo("builtins", CORE_DIST, _core_version(), "plinth.builtins"))
        manager.load_entry_points()
        _cached = manager
    return _cached


def _core_version() -> str:
    from . import __version__

    return __version__


def reset() -> None:
    """Forget the loaded plugins (tests that install plugin distributions at run time use this)."""
    global _cached
    _cached = None
