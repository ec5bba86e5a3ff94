"""Finding and registering plugins (datasette/llm style).

Default plugins (core features that are themselves plugins) come first; then every
entry point in the `captioner` group, or only the distributions named in
CAPTIONER_LOAD_PLUGINS (comma-separated; empty loads none); then modules named with
`-p`. `--disable-plugin NAME` blocks one by name. Each command builds its own plugin
manager, so nothing global changes between runs or tests.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterable, Iterator, Mapping

import pluggy

from .. import hookspecs
from ..errors import UsageError

GROUP = "captioner"

# name -> module; hidden from `captioner plugins` unless --all
DEFAULT_PLUGINS = {
    "terminal": "captioner.default_plugins.terminal",
    "moonshine": "captioner.default_plugins.moonshine",
    "pocketsphinx": "captioner.default_plugins.pocketsphinx",
}


def build_plugin_manager(
    *,
    modules: Iterable[str] = (),
    disabled: Iterable[str] = (),
    environ: Mapping[str, str] = os.environ,
    defaults: bool = True,
) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    modules, disabled = list(modules), list(disabled)
    selected = environ.get("CAPTIONER_LOAD_PLUGINS")
    entry_points = _entry_points(selected)

    known = set(DEFAULT_PLUGINS) | {ep.name for ep, _ in entry_points} | set(modules)
    for name in disabled:
        if name not in known:
            raise UsageError(
                f"--disable-plugin {name}: no such plugin; known: {', '.join(sorted(known)) or 'none'}"
            )
        pm.set_blocked(name)

    if defaults:
        for name, module in DEFAULT_PLUGINS.items():
            if not pm.is_blocked(name):
                pm.register(importlib.import_module(module), name=name)
    for ep, dist in entry_points:
        if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except Exception as error:  # a broken third-party plugin: say which and how to skip it
            raise UsageError(
                f"plugin {ep.name!r} ({dist.metadata['Name']}) failed to load: "
                f"{type(error).__name__}: {error}; skip it with --disable-plugin {ep.name}"
            ) from None
        _register(pm, plugin, ep.name)
    for module in modules:
        if not pm.is_blocked(module):
            _register(pm, _import_plugin_module(module), module)
    return pm


def _entry_points(selected: str | None) -> list[tuple[metadata.EntryPoint, metadata.Distribution]]:
    """(entry point, distribution) pairs of the `captioner` group to load."""
    if selected is None:
        found = []
        seen = set()
        for dist in metadata.distributions():
            name = dist.metadata["Name"]
            if name in seen:  # the same distribution on sys.path twice
                continue
            seen.add(name)
            found += [(ep, dist) for ep in dist.entry_points if ep.group == GROUP]
        return found
    found = []
    for name in filter(None, (part.strip() for part in selected.split(","))):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise UsageError(f"CAPTIONER_LOAD_PLUGINS names {name!r}, which is not installed") from None
        found += [(ep, dist) for ep in dist.entry_points if ep.group == GROUP]
    return found


def _import_plugin_module(spec: str) -> ModuleType:
    """`-p name`: an importable module, or a path to a .py file."""
    if spec.endswith(".py"):
        path = Path(spec)
        if not path.is_file():
            raise UsageError(f"-p {spec}: no such file")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
        try:
            module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as error:
            raise UsageError(f"-p {spec}: {type(error).__name__}: {error}") from None
        return module
    try:
        return importlib.import_module(spec)
    except ImportError as error:
        raise UsageError(f"-p {spec}: cannot import plugin module ({error})") from None


def _register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    try:
        pm.register(plugin, name=name)
    except (ValueError, pluggy.PluginValidationError) as error:
        raise UsageError(f"plugin {name!r} cannot be registered: {error}") from None


def describe_plugins(pm: pluggy.PluginManager, include_defaults: bool = False) -> list[dict]:
    """What `captioner plugins` prints: name, version and hooks of each plugin."""
    owners = metadata.packages_distributions()  # top-level module -> distributions
    described = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None or (name in DEFAULT_PLUGINS and not include_defaults):
            continue
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
        described.append({"name": name, "version": _version_of(plugin, owners), "hooks": hooks})
    return described


def _version_of(plugin: object, owners: Mapping[str, list[str]]) -> str | None:
    """The version of the distribution that ships the plugin's module, if any does."""
    module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
    for dist in owners.get(module.partition(".")[0], ()):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


@contextmanager
def blamed_on(plugin: str, failing_to: str) -> Iterator[None]:
    """A plugin's crash while captioner starts becomes one line that names the plugin and
    says how to skip it; its own UsageError passes through as it is."""
    try:
        yield
    except UsageError:
        raise
    except Exception as error:
        raise UsageError(
            f"plugin {plugin} failed to {failing_to}: {type(error).__name__}: {error}; "
            f"skip it with --disable-plugin {plugin}"
        ) from None


def configure_plugins(pm: pluggy.PluginManager, config) -> None:
    """Call each plugin's `configure`; a UsageError (or a crash) stops before any audio."""
    for impl in pm.hook.configure.get_hookimpls():
        with blamed_on(impl.plugin_name, "start"):
            impl.function(config=config)


@dataclass(frozen=True)
class Registration:
    """Something a plugin contributed through a register_* hook."""

    name: str
    factory: Callable
    description: str
    plugin: str


def collect_registrations(pm: pluggy.PluginManager, hook: str, what: str) -> dict[str, Registration]:
    """Call every implementation of a registration hook (`register_recognizers`, ...)."""
    found: dict[str, Registration] = {}
    for impl in getattr(pm.hook, hook).get_hookimpls():

        def register(name: str, factory: Callable, description: str = "", _plugin: str = impl.plugin_name) -> None:
            if name in found:
                raise UsageError(f"{what} {name!r} is registered twice ({found[name].plugin}, {_plugin})")
            found[name] = Registration(name, factory, description, _plugin)

        with blamed_on(impl.plugin_name, f"register {what}s"):
            impl.function(register=register)
    return found


def trace_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get("CAPTIONER_TRACE_PLUGINS", "") not in ("", "0")


def warn(message: str) -> None:
    print(f"captioner: warning: {message}", file=sys.stderr, flush=True)
