"""Every hook call goes through pluggy's own hook callers, one plugin at a time.

pluggy stops calling implementations when one raises, and captioner wants each plugin's
failure to be its own. So each call reaches one plugin through
`pm.subset_hook_caller` (pluggy's caller, with every hook wrapper of every plugin and
pluggy's call monitoring), never through a hand-written loop over implementations.
That is what makes `CAPTIONER_TRACE_PLUGINS=1` trace every hook call, start-up hooks
included, and lets a plugin wrap another's hooks (`@hookimpl(wrapper=True)`).

`PluginHooks` is the one place that knows this (tox's facade is the model): the CLI,
the configuration and the dispatcher call its methods, never `impl.function`.
"""

from __future__ import annotations

import os
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pluggy

from ..errors import UsageError


@dataclass(frozen=True)
class Registration:
    """Something a plugin contributed through a register_* hook."""

    name: str
    factory: Callable
    description: str
    plugin: str


class PluginHooks:
    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self._callers: dict[tuple[str, str], pluggy.HookCaller] = {}

    def implementers(self, hook: str) -> list[str]:
        """The plugins that implement `hook` (not only wrap it), in registration order."""
        impls = getattr(self.pm.hook, hook).get_hookimpls()
        return list(dict.fromkeys(impl.plugin_name for impl in impls if not (impl.wrapper or impl.hookwrapper)))

    def impl(self, hook: str, plugin: str) -> pluggy.HookImpl:
        return next(impl for impl in getattr(self.pm.hook, hook).get_hookimpls()
                    if impl.plugin_name == plugin and not (impl.wrapper or impl.hookwrapper))

    def caller(self, hook: str, plugin: str) -> pluggy.HookCaller:
        """pluggy's caller of `hook` for `plugin` alone, with every plugin's wrappers."""
        key = (hook, plugin)
        if key not in self._callers:
            others = {self.pm.get_plugin(name) for name in self.implementers(hook) if name != plugin}
            self._callers[key] = self.pm.subset_hook_caller(hook, remove_plugins=others)
        return self._callers[key]

    def call(self, hook: str, plugin: str, **kwargs: Any) -> Any:
        """Call one plugin's implementation; its result (None for most hooks)."""
        results = self.caller(hook, plugin)(**kwargs)
        return results[0] if results else None

    def each(self, hook: str, failing_to: str, **kwargs: Any) -> None:
        """Call `hook` on every plugin in turn; a crash is one line naming the plugin."""
        for plugin in self.implementers(hook):
            with blamed_on(plugin, failing_to):
                self.call(hook, plugin, **kwargs)

    # ------------------------------------------------------------ start-up hooks

    def add_options(self, parser, command: str) -> None:
        """Each plugin adds its options to `command` in an argument group of its own."""
        for plugin in self.implementers("add_options"):
            group = parser.add_argument_group(f"plugin {plugin}")
            with blamed_on(plugin, "add its options"):
                self.call("add_options", plugin, parser=group, command=command)

    def configure(self, config) -> None:
        """A UsageError (or a crash) in a plugin's configure stops before any audio."""
        self.each("configure", "start", config=config)

    def register_commands(self, commands) -> None:
        self.each("register_commands", "add its commands", commands=commands)

    def registrations(self, hook: str, what: str) -> dict[str, Registration]:
        """What every plugin contributes through a registration hook (`register_recognizers`,
        or a plugin's own, such as the translate plugin's `register_translators`)."""
        found: dict[str, Registration] = {}
        for plugin in self.implementers(hook):

            def register(name: str, factory: Callable, description: str = "", _plugin: str = plugin) -> None:
                if name in found:
                    raise UsageError(f"{what} {name!r} is registered twice ({found[name].plugin}, {_plugin})")
                found[name] = Registration(name, factory, description, _plugin)

            with blamed_on(plugin, f"register {what}s"):
                self.call(hook, plugin, register=register)
        return found


def collect_registrations(pm: pluggy.PluginManager, hook: str, what: str) -> dict[str, Registration]:
    """What plugins registered through `hook`: {name: Registration(name, factory, description, plugin)}."""
    return PluginHooks(pm).registrations(hook, what)


# ---------------------------------------------------------------- failures and tracing


def trace_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get("CAPTIONER_TRACE_PLUGINS", "") not in ("", "0")


def trace_hook_calls(pm: pluggy.PluginManager) -> None:
    """Print every hook call to stderr, through pluggy's monitoring, so whatever calls a
    hook is traced. (A failure's traceback is printed where it is reported.)"""

    def before(hook: str, impls, kwargs: Mapping[str, Any]) -> None:
        plugins = ",".join(impl.plugin_name for impl in impls) or "-"
        arguments = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
        print(f"captioner: trace: {plugins}.{hook}({arguments})", file=sys.stderr, flush=True)

    pm.add_hookcall_monitoring(before, lambda outcome, hook, impls, kwargs: None)


def print_traceback(message: str, error: BaseException) -> None:
    """Under CAPTIONER_TRACE_PLUGINS, a plugin failure's whole traceback."""
    lines = "".join(traceback.format_exception(error)).rstrip()
    print(f"captioner: trace: {message}\n{lines}", file=sys.stderr, flush=True)


def where_raised(error: BaseException) -> str:
    """' (at plugin.py:12)': the innermost frame of the traceback, so a plugin's author
    sees the file and line without tracing on."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    frame = frames[-1]
    return f" (at {_short(frame.filename)}:{frame.lineno})"


def _short(filename: str) -> str:
    try:
        relative = Path(filename).resolve().relative_to(Path.cwd())
    except ValueError:
        return filename
    return str(relative)


def describe_failure(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}{where_raised(error)}"


@contextmanager
def blamed_on(plugin: str, failing_to: str) -> Iterator[None]:
    """A plugin's crash while captioner starts becomes one line that names the plugin,
    where it raised, and how to skip it; its own UsageError passes through as it is."""
    try:
        yield
    except UsageError:
        raise
    except Exception as error:
        message = f"plugin {plugin} failed to {failing_to}: {describe_failure(error)}"
        if trace_enabled():
            print_traceback(message, error)
        raise UsageError(f"{message}; skip it with --disable-plugin {plugin}") from None
