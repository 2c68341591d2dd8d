"""Finding and loading plugins, one entry point at a time, so that one broken plugin cannot break the rest.

Plugins are entry points in the `plinth` group. Each is imported inside try/except; a failure is recorded on
its `PluginInfo` (shown by `plinth plugins`) and skipped with a warning, unless strict mode
(`--strict-plugins` or PLINTH_STRICT_PLUGINS=1) makes it fatal. PLINTH_PLUGINS=a,b loads only those entry points
(or distributions); PLINTH_DISABLE_PLUGINS=c blocks some. Components are collected per slot; a name claimed twice
in one slot is an error naming both distributions. A plugin whose registration fails halfway keeps nothing.

A plugin cannot take the platform down after loading either: each of its event and command hook implementations
runs guarded, so a raising metrics logger or `plinth_stage_finished` is reported like a load error (a warning
naming the plugin, once per hook; fatal under strict mode) and the run goes on. A hook implementation whose name
matches no spec (a misspelling pluggy would silently never call) is reported the same way.
"""

from __future__ import annotations

import difflib
import functools
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

# hooks called after loading; a plugin's implementation of one runs guarded (see the module docstring)
GUARDED_HOOKS = {
    "plinth_run_started", "plinth_run_finished", "plinth_stage_started", "plinth_stage_finished",
    "plinth_metrics_logged", "plinth_progress", "plinth_artifact_written", "plinth_register_commands",
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
    failed_hooks: set[str] = field(default_factory=set)

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
            return
        if info.distribution != CORE_DIST:  # the core's own hooks are not guarded: their errors are bugs to see
            self._guard_hooks(plugin, info)
        self._check_hook_names(plugin, info)

    def _guard_hooks(self, plugin: Any, info: PluginInfo) -> None:
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.name not in GUARDED_HOOKS:
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not (impl.hookwrapper or impl.wrapper):
                    impl.function = self._guarded(info, caller.name, impl.function)

    def _guarded(self, info: PluginInfo, hook: str, function: Any) -> Any:
        @functools.wraps(function)
        def guarded(*args: Any) -> Any:
            try:
                return function(*args)
            except Exception as exc:  # noqa: BLE001 - a plugin's bug must not end the run or the command
                self._hook_failed(info, hook, exc)
                return None

        return guarded

    def _hook_failed(self, info: PluginInfo, hook: str, exc: Exception) -> None:
        message = f"hook {hook} raised {type(exc).__name__}: {exc}"
        if self.strict:
            raise PluginError(f"plugin '{info.name}' ({info.distribution} {info.version}): {message}") from exc
        if hook in info.failed_hooks:  # a metrics logger fails every step: say it once
            return
        info.failed_hooks.add(hook)
        info.error = "; ".join(filter(None, [info.error, message]))
        warnings.warn(
            f"plinth: plugin '{info.name}' ({info.distribution}): {message}; ignored, the run goes on. "
            "--strict-plugins makes this fatal.",
            stacklevel=2,
        )

    def _check_hook_names(self, plugin: Any, info: PluginInfo) -> None:
        """pluggy's `check_pending`, per plugin so that the message names it and suggests the hook meant."""
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.has_spec() or all(i.optionalhook for i in caller.get_hookimpls() if i.plugin is plugin):
                continue
            specs = [name for name in dir(hookspecs) if name.startswith("plinth_")]
            close = difflib.get_close_matches(caller.name, specs, n=1)
            hint = f" — did you mean '{close[0]}'?" if close else ""
            message = f"implements unknown hook '{caller.name}'{hint} (plinth never calls it)"
            info.error = "; ".join(filter(None, [info.error, message]))
            if self.strict:
                raise PluginError(f"plugin '{info.name}' ({info.distribution} {info.version}): {message}")
            warnings.warn(f"plinth: plugin '{info.name}' ({info.distribution}): {message}", stacklevel=2)

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
        """Call this plugin's slot hooks (only its own: the others were collected when they loaded), checking each
        registration, and add them only when every hook returned: a plugin failing halfway registers nothing."""
        pending: list[tuple[str, str, type | str]] = []

        def collector(slot: str) -> Any:
            return lambda name, cls: pending.append((slot, name, self._checked(slot, name, cls, info)))

        hooks = {**{hook: slot for slot, hook in SLOT_HOOKS.items()}, "plinth_register_chat_backends": "chat_backend"}
        for hook_name, slot in hooks.items():
            impl = getattr(plugin, hook_name, None)
            if impl is not None:
                impl(register=collector(slot))
        for slot, name, _ in pending:
            existing = self.chat_backends.get(name) if slot == "chat_backend" else None
            if existing is not None:
                raise PluginError(
                    f"chat back end '{name}' is registered twice: by '{existing.plugin}' ({existing.distribution}) "
                    f"and by '{info.name}' ({info.distribution})"
                )
        for slot, name, cls in pending:
            if slot == "chat_backend":
                self.chat_backends[name] = ComponentEntry(name, slot, cls, info.name, info.distribution)
            else:
                self._add_component(slot, name, cls, info)
            info.components.setdefault(slot, []).append(name)
        for names in info.components.values():
            names.sort()

    def _checked(self, slot: str, name: str, cls: type | str, info: PluginInfo) -> type | str:
        if isinstance(cls, str):
            if ":" not in cls:
                raise PluginError(
                    f"plugin '{info.name}' ({info.distribution}) registered {slot} '{name}' as {cls!r}; "
                    "a lazy reference must read 'package.module:ClassName'"
                )
        else:
            _check_class(slot, name, cls, info.name, info.distribution)
        return cls

    def _add_component(self, slot: str, name: str, cls: type | str, info: PluginInfo) -> None:
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
