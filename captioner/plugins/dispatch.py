"""Delivering events to plugins without letting any plugin hold up the others or the audio.

pluggy stops calling implementations when one raises, and a plain `pm.hook.on_final()`
would run every plugin on the event loop that also sends audio. So each plugin gets a
`PluginChannel`: its events in order from its own bounded queue, its plain functions
run on its own worker thread, its coroutines awaited on the loop. A plugin that raises
is reported through `on_error` and keeps receiving events; one that falls more than
`max_pending` events behind is disabled for the session and reported, so memory stays
bounded.

Ending takes two steps: `settle()` waits until every event so far has been handled
(including the `on_error` reports that handling may cause), so the summary is complete;
then `end(summary)` delivers `on_session_end` and `close()` lets plugins finish. A
failure after that point can no longer reach other plugins and goes to stderr.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import sys
import threading
from typing import Any, Callable

import pluggy

from ..events import CaptionError
from ..client.untrusted import Untrusted

EVENT_HOOKS = (
    "on_session_begin",
    "on_partial",
    "on_final",
    "on_translation",
    "on_audio_level",
    "on_error",
    "on_session_end",
)
_CLOSE = object()
_UNTRUSTED = Untrusted()


class PluginDispatcher:
    """One channel per plugin that implements an event hook; `emit` never blocks."""

    def __init__(
        self,
        pm: pluggy.PluginManager,
        report: Callable[[CaptionError], None],
        *,
        max_pending: int = 1000,
        trace: bool = False,
    ):
        self._report = report
        self._trace = trace
        self.ended = False
        impls: dict[str, dict[str, pluggy.HookImpl]] = {}
        for hook in EVENT_HOOKS:
            for impl in getattr(pm.hook, hook).get_hookimpls():
                impls.setdefault(impl.plugin_name, {})[hook] = impl
        self.channels = [PluginChannel(name, hooks, self, max_pending) for name, hooks in impls.items()]

    def start(self) -> None:
        for channel in self.channels:
            channel.start()

    def wants(self, hook: str) -> bool:
        """Whether any plugin implements `hook`: an event nobody takes need not be computed."""
        return any(hook in channel.impls for channel in self.channels)

    def emit(self, hook: str, **kwargs: Any) -> None:
        for channel in self.channels:
            channel.offer(hook, kwargs)

    def report(self, error: CaptionError) -> None:
        if self.ended:
            print(f"captioner: warning: {error.message}", file=sys.stderr, flush=True)
        else:
            self._report(error)

    def plugin_failed(self, channel: PluginChannel, hook: str, error: BaseException) -> None:
        message = f"plugin {channel.name} failed in {hook}: {type(error).__name__}: {error}"
        if hook == "on_error":
            # Reporting it through on_error again could loop; say it once, here.
            print(f"captioner: warning: {message}", file=sys.stderr, flush=True)
            return
        self.report(CaptionError(kind="plugin", message=message, fatal=False, plugin=channel.name))

    def trace(self, channel: PluginChannel, hook: str, kwargs: dict) -> None:
        if self._trace:
            args = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
            print(f"captioner: trace: {channel.name}.{hook}({args})", file=sys.stderr, flush=True)

    async def settle(self, timeout: float) -> None:
        """Wait (at most `timeout` s) until every event emitted so far has been handled."""
        joins = [asyncio.ensure_future(channel.queue.join()) for channel in self.channels]
        if joins:
            await asyncio.wait(joins, timeout=timeout)
        for join in joins:
            join.cancel()

    def end(self, summary: object) -> None:
        """Deliver on_session_end (also to disabled plugins, so they can close files)."""
        self.emit("on_session_end", summary=summary)
        self.ended = True

    async def close(self, timeout: float) -> None:
        """Let every plugin finish its queue, waiting at most `timeout` seconds in all."""
        for channel in self.channels:
            channel.close()
        tasks = [channel.task for channel in self.channels if channel.task]
        if tasks:
            await asyncio.wait(tasks, timeout=max(timeout, 0))
        for channel in self.channels:
            if channel.task and not channel.task.done():
                print(
                    f"captioner: warning: plugin {channel.name} did not finish within {timeout:g} s "
                    f"of the end; {channel.pending} events were not delivered to it",
                    file=sys.stderr,
                    flush=True,
                )
                channel.task.cancel()
            channel.worker.stop()
        await asyncio.gather(*tasks, return_exceptions=True)


class PluginChannel:
    def __init__(self, name: str, impls: dict[str, pluggy.HookImpl], dispatcher: PluginDispatcher, max_pending: int):
        self.name = name
        self.impls = impls
        self.dispatcher = dispatcher
        self.max_pending = max_pending
        self.queue: asyncio.Queue = asyncio.Queue()  # bounded by offer(), so close() always fits
        self.worker = WorkerThread(f"captioner-plugin-{name}")
        self.task: asyncio.Task | None = None
        self.disabled = False

    @property
    def pending(self) -> int:
        return self.queue.qsize()

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"captioner-plugin-{self.name}")

    def offer(self, hook: str, kwargs: dict) -> None:
        if hook not in self.impls or (self.disabled and hook != "on_session_end"):
            return
        if self.queue.qsize() >= self.max_pending:
            self.disabled = True
            self._drop_pending()
            self.dispatcher.report(
                CaptionError(
                    kind="plugin",
                    message=f"plugin {self.name} fell {self.max_pending} events behind and was "
                    "disabled for the rest of this session",
                    fatal=False,
                    plugin=self.name,
                )
            )
            return
        self.queue.put_nowait((hook, kwargs))

    def close(self) -> None:
        self.queue.put_nowait(_CLOSE)

    def _drop_pending(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
            self.queue.task_done()

    async def _run(self) -> None:
        while True:
            item = await self.queue.get()
            if item is _CLOSE:
                return
            hook, kwargs = item
            impl = self.impls[hook]
            args = {name: kwargs[name] for name in impl.argnames}
            self.dispatcher.trace(self, hook, args)
            try:
                if inspect.iscoroutinefunction(impl.function):
                    await impl.function(**args)
                else:
                    result = await self.worker.call(lambda: impl.function(**args))
                    if inspect.isawaitable(result):
                        await result
            except asyncio.CancelledError:
                raise
            except BaseException as error:  # even SystemExit: a plugin must not end the run
                self.dispatcher.plugin_failed(self, hook, error)
            finally:
                self.queue.task_done()  # after any failure report, so settle() waits for it


class WorkerThread:
    """A daemon thread that runs one plugin's plain hook functions, one at a time, in order.

    A daemon rather than an executor's thread, so a plugin stuck forever cannot keep the
    process from exiting.
    """

    def __init__(self, name: str):
        self.name = name
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def call(self, function: Callable[[], Any]) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()
        self._calls.put((loop, future, function))
        return future

    def stop(self) -> None:
        if self._thread is not None:
            self._calls.put(None)

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            loop, future, function = item
            try:
                outcome, value = _set_result, function()
            except BaseException as error:  # handed to the loop, which reports it
                if isinstance(error, StopIteration) or not isinstance(error, Exception):
                    # asyncio refuses StopIteration in a future, and SystemExit or
                    # KeyboardInterrupt there would end the whole run.
                    wrapped = RuntimeError(f"{type(error).__name__}: {error}")
                    wrapped.__cause__ = error
                    error = wrapped
                outcome, value = _set_exception, error
            try:
                loop.call_soon_threadsafe(outcome, future, value)
            except RuntimeError:
                return  # the loop is gone: the session ended without waiting for us


def _set_result(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


class EventBus:
    """How plugins send events into a running session: `config.events`.

    A translator emits `on_translation` for the other plugins; any plugin can report a
    survived problem with `error(...)`. Safe to call from a plugin's worker thread or the
    event loop. Outside a session, events go nowhere.
    """

    EMITTABLE = frozenset({"on_translation"})

    def __init__(self) -> None:
        self._dispatcher: PluginDispatcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine = None

    def attach(self, dispatcher: PluginDispatcher, engine=None) -> None:
        self._dispatcher = dispatcher
        self._engine = engine
        self._loop = asyncio.get_running_loop()

    def detach(self) -> None:
        self._dispatcher = self._loop = self._engine = None

    def force_endpoint(self) -> None:
        """Ask the service to end the current turn now (ForceEndpoint)."""
        from ..protocol.messages import ForceEndpoint

        self._control(ForceEndpoint())

    def update_configuration(self, **settings: Any) -> None:
        """Change session settings live (UpdateConfiguration), e.g. max_turn_silence=800.
        They also hold for the sessions a reconnect starts."""
        from ..protocol import v3
        from ..protocol.messages import UpdateConfiguration

        for key, value in settings.items():
            expected = v3.UPDATABLE.get(key)
            if expected is None:
                raise ValueError(f"{key} cannot be changed during a session; these can: {sorted(v3.UPDATABLE)}")
            if not v3.value_fits(expected, value):  # what the service would refuse, refused here
                raise ValueError(f"{key} must be {expected.__name__}, not {value!r}")
        self._control(UpdateConfiguration(settings))

    def _control(self, message) -> None:
        engine = self._engine
        if engine is not None:
            self._call(lambda dispatcher: engine.control(message))

    def emit(self, hook: str, **kwargs: Any) -> None:
        if hook not in self.EMITTABLE:
            raise ValueError(f"plugins may emit {sorted(self.EMITTABLE)}, not {hook!r}")
        # A translation comes from a network service too: its text is made safe here.
        kwargs = {name: _UNTRUSTED.fields(value) for name, value in kwargs.items()}
        # After on_session_end nothing more is delivered: a late translation is dropped.
        self._call(lambda dispatcher: dispatcher.ended or dispatcher.emit(hook, **kwargs))

    def error(self, message: str, plugin: str | None = None) -> None:
        """Report a problem the plugin survived: it reaches every plugin's on_error."""
        error = CaptionError(kind="plugin", message=_UNTRUSTED.text(message), fatal=False, plugin=plugin)
        self._call(lambda dispatcher: dispatcher.report(error))

    def _call(self, action: Callable[[PluginDispatcher], None]) -> None:
        dispatcher, loop = self._dispatcher, self._loop
        if dispatcher is None or loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            action(dispatcher)
        else:
            try:
                loop.call_soon_threadsafe(action, dispatcher)
            except RuntimeError:
                pass  # the session's loop is gone
