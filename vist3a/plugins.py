"""Plugin discovery (entry-point group ``vist3a``) and the registrations plugins make.

``VIST3A_PLUGINS=a,b`` loads only the named entry points (an empty value loads none);
``VIST3A_TRACE_PLUGINS=1`` prints every hook call to stderr.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import entry_points
from typing import Any, Literal

import pluggy

from vist3a import hookspecs
from vist3a.config import ComponentConfig
from vist3a.errors import PluginError, UnknownPluginError, Vist3aError
from vist3a.specs import ComponentSpec, DataSourceSpec, DecoderSpec, GeneratorSpec, RewardSpec

ENTRY_POINT_GROUP = "vist3a"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._+-]*$")
SCHEME_PATTERN = re.compile(r"^[a-z][a-z0-9+.-]+$")  # two characters at least: C:\data is a path
Kind = Literal["generators", "decoders", "rewards"]
SPEC_TYPES: dict[Kind, type[ComponentSpec]] = {
    "generators": GeneratorSpec,
    "decoders": DecoderSpec,
    "rewards": RewardSpec,
}
logger = logging.getLogger("vist3a")


@dataclass(frozen=True)
class Registration:
    """A spec together with the plugin that registered it."""

    spec: ComponentSpec | DataSourceSpec
    plugin: str


@dataclass
class PluginInfo:
    """What ``vist3a plugins`` reports for one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


class Plugins:
    """The plugin manager plus what discovery found, including plugins that failed to import."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self._registrations: dict[str, dict[str, Registration]] = {}
        if os.environ.get("VIST3A_TRACE_PLUGINS", "").strip() not in {"", "0"}:
            self.pm.add_hookcall_monitoring(_trace_before, _trace_after)

    def add(self, plugin: object, name: str, info: PluginInfo | None = None) -> None:
        """Register a plugin object (a module or an instance with ``@hookimpl`` methods)."""
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(f"plugin {name!r}: {exc}") from None
        self._registrations.clear()
        self.infos[name] = info or PluginInfo(name)
        self.infos[name].hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])

    def remove(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._registrations.clear()
        self.infos.pop(name, None)

    def load_entry_points(self, only: set[str] | None = None) -> None:
        """Import and register every ``vist3a`` entry point (or those in ``only``); record import failures."""
        available = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        unknown = sorted((only or set()) - set(available))
        if unknown:
            raise UnknownPluginError(
                f"VIST3A_PLUGINS names {', '.join(unknown)}, not installed; installed: {', '.join(sorted(available)) or 'none'}"
            )
        for name, ep in sorted(available.items()):
            if only is not None and name not in only:
                continue
            dist = ep.dist
            info = PluginInfo(name, dist.name if dist else None, dist.version if dist else None)
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                info.error = f"{type(exc).__name__}: {exc}"
                self.infos[name] = info
                logger.warning("plugin %r failed to load and was skipped: %s", name, info.error)
                continue
            self.add(module, name, info)
        self.check_pending()

    def check_pending(self) -> None:
        """Fail loudly on a hook implementation that matches no hook (usually a misspelling)."""
        known = sorted(n for n in dir(self.pm.hook) if not n.startswith("_"))
        for hook_name, caller in vars(self.pm.hook).items():
            if hook_name.startswith("_") or caller.has_spec():
                continue
            plugins = sorted(impl.plugin_name for impl in caller.get_hookimpls())
            raise PluginError(
                f"plugin {', '.join(map(repr, plugins))} implements unknown hook {hook_name!r} "
                f"(known hooks: {', '.join(n for n in known if n != hook_name)}); "
                "fix it or leave it out with VIST3A_PLUGINS"
            )

    def hook_callers(self, hook_name: str) -> Iterator[tuple[str, Callable[..., Any]]]:
        """``(plugin name, caller)`` for each plugin implementing ``hook_name``, so a call knows whose it is."""
        everyone = self.pm.get_plugins()
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            others = [p for p in everyone if p is not impl.plugin]
            caller = self.pm.subset_hook_caller(hook_name, others)
            yield impl.plugin_name, partial(_attributed, caller, impl.plugin_name, hook_name)

    def registrations(self, kind: Kind) -> dict[str, Registration]:
        """Every spec of ``kind`` that the loaded plugins register, by name."""
        return self._collect(f"register_{kind}", partial(_record, kind))

    def data_sources(self) -> dict[str, Registration]:
        """Every :class:`DataSourceSpec` that the loaded plugins register, by scheme."""
        return self._collect("register_data_sources", _record_source)

    def _collect(self, hook_name: str, record: Callable[..., None]) -> dict[str, Registration]:
        """Call ``hook_name`` on every plugin with a ``register`` that ``record``s into one dict (cached)."""
        if hook_name not in self._registrations:
            found: dict[str, Registration] = {}
            for plugin, call in self.hook_callers(hook_name):
                call(register=partial(record, found, plugin=plugin))
            self._registrations[hook_name] = found
        return dict(self._registrations[hook_name])

    def get(self, kind: Kind, name: str) -> Registration:
        found = self.registrations(kind)
        if name not in found:
            known = ", ".join(sorted(found)) or "none"
            raise UnknownPluginError(f"no plugin provides the {kind[:-1]} {name!r}; known: {known}")
        return found[name]


def _attributed(caller: Callable[..., Any], plugin: str, hook_name: str, **kwargs: Any) -> Any:
    """Call a hook, naming the plugin if its implementation raises."""
    try:
        return caller(**kwargs)
    except Vist3aError:
        raise
    except Exception as exc:
        raise PluginError(f"plugin {plugin!r} failed in {hook_name}: {type(exc).__name__}: {exc}") from exc


def _record(kind: Kind, found: dict[str, Registration], spec: Any, *, plugin: str) -> None:
    """The ``register`` callback: validate one spec and attribute it to its plugin."""
    expected = SPEC_TYPES[kind]
    if not isinstance(spec, expected):
        raise PluginError(f"plugin {plugin!r} registered {spec!r}; register_{kind} expects a {expected.__name__}")
    if not NAME_PATTERN.match(spec.name):
        raise PluginError(f"plugin {plugin!r}: invalid name {spec.name!r} (lowercase letters, digits, . _ + -)")
    if not (isinstance(spec.config, type) and issubclass(spec.config, ComponentConfig)):
        raise PluginError(f"plugin {plugin!r}: {spec.name!r}.config must subclass vist3a.config.ComponentConfig")
    if not callable(spec.factory):
        raise PluginError(f"plugin {plugin!r}: {spec.name!r}.factory is not callable")
    _claim(found, kind[:-1], spec.name, Registration(spec, plugin))


def _record_source(found: dict[str, Registration], spec: Any, *, plugin: str) -> None:
    """The ``register`` callback of ``register_data_sources``."""
    if not isinstance(spec, DataSourceSpec):
        raise PluginError(f"plugin {plugin!r} registered {spec!r}; register_data_sources expects a DataSourceSpec")
    if not SCHEME_PATTERN.match(spec.scheme):
        raise PluginError(f"plugin {plugin!r}: invalid scheme {spec.scheme!r} (a lowercase letter, then letters, digits, + . -)")
    if not callable(spec.open):
        raise PluginError(f"plugin {plugin!r}: data source {spec.scheme!r}.open is not callable")
    _claim(found, "data source", spec.scheme, Registration(spec, plugin))


def _claim(found: dict[str, Registration], what: str, key: str, registration: Registration) -> None:
    """Add ``registration`` under ``key``; a key two plugins register is an error naming both."""
    if key in found:
        raise PluginError(f"{what} {key!r} is registered by both {found[key].plugin!r} and {registration.plugin!r}")
    found[key] = registration


def _trace_before(hook_name: str, impls: list[pluggy.HookImpl], kwargs: dict[str, Any]) -> None:
    names = ", ".join(impl.plugin_name for impl in impls)
    print(f"[vist3a trace] {hook_name}({', '.join(kwargs)}) -> {names}", file=sys.stderr)


def _trace_after(outcome: Any, hook_name: str, impls: list[pluggy.HookImpl], kwargs: dict[str, Any]) -> None:
    status = "raised " + repr(outcome.exception) if outcome.exception else "ok"
    print(f"[vist3a trace] {hook_name} {status}", file=sys.stderr)


_plugins: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugins, discovered on first use."""
    global _plugins
    if _plugins is None:
        plugins = Plugins()
        plugins.load_entry_points(_restriction())
        _plugins = plugins
    return _plugins


def set_plugins(plugins: Plugins | None) -> None:
    """Replace the process-wide plugins (tests); None rediscovers on next use."""
    global _plugins
    _plugins = plugins


def _restriction() -> set[str] | None:
    value = os.environ.get("VIST3A_PLUGINS")
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}
