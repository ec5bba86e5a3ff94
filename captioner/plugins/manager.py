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
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Iterable, Mapping

import pluggy

from .. import hookspecs
from ..errors import UsageError
from .hooks import trace_enabled, trace_hook_calls

GROUP = "captioner"

# name -> module; hidden from `captioner plugins` unless --all
DEFAULT_PLUGINS = {
    "terminal": "captioner.default_plugins.terminal",
    "moonshine": "captioner.default_plugins.moonshine",
    "pocketsphinx": "captioner.default_plugins.pocketsphinx",
}


class PluginManager(pluggy.PluginManager):
    """pluggy's, refusing at registration a plugin object it could not call alone."""

    def register(self, plugin: object, name: str | None = None) -> str | None:
        # Each hook call reaches one plugin through pluggy's subset_hook_caller, which
        # keeps plugins in a set: an unhashable one would fail every plugin's calls later.
        try:
            hash(plugin)
        except TypeError:
            kind = type(plugin).__name__
            raise UsageError(
                f"plugin {name or kind} cannot be registered: {kind} objects are unhashable (a @dataclass "
                "compares by value); declare it @dataclass(eq=False), or give it a __hash__"
            ) from None
        return super().register(plugin, name)


def build_plugin_manager(
    *,
    modules: Iterable[str] = (),
    disabled: Iterable[str] = (),
    environ: Mapping[str, str] = os.environ,
    defaults: bool = True,
) -> pluggy.PluginManager:
    pm = PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    if trace_enabled(environ):
        trace_hook_calls(pm)
    # Historic: every plugin registered from now on may add hooks of its own.
    pm.hook.add_hookspecs.call_historic(kwargs={"plugin_manager": pm})
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
    """What `captioner plugins` prints: name, version and hooks of each plugin, those of
    the objects it registers for a run (classes of its package with hook methods) included."""
    owners = metadata.packages_distributions()  # top-level module -> distributions
    described = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None or (name in DEFAULT_PLUGINS and not include_defaults):
            continue
        hooks = {caller.name for caller in pm.get_hookcallers(plugin) or ()}
        if isinstance(plugin, ModuleType):
            hooks |= _hooks_of_classes(plugin)
        described.append({"name": name, "version": _version_of(plugin, owners), "hooks": sorted(hooks)})
    return described


def _hooks_of_classes(module: ModuleType) -> set[str]:
    """The hooks that classes defined in `module`'s package implement: what a plugin's
    configure registers (a caption writer, the terminal view) is known only at run time."""
    package = module.__name__.partition(".")[0]
    found = set()
    for value in list(vars(module).values()):
        if isinstance(value, type) and value.__module__.partition(".")[0] == package:
            found |= {name for name, attribute in vars(value).items() if hasattr(attribute, f"{GROUP}_impl")}
    return found


def _version_of(plugin: object, owners: Mapping[str, list[str]]) -> str | None:
    """The version of the distribution that ships the plugin's module, if any does."""
    module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
    for dist in owners.get(module.partition(".")[0], ()):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None
