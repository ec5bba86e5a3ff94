"""Delivering events to plugins without letting any plugin hold up the others or the audio.

Each plugin that implements an event hook gets a `PluginQueue`: its events in order
from its own queue; a plain hook function runs on the plugin's own worker thread, a
coroutine function on the event loop; every call goes through pluggy's caller for that
plugin alone (captioner.plugins.hooks). So:

- a plugin that raises is reported to the others through `on_error`, with the file and
  line where it raised, and keeps receiving events;
- a coroutine hook that blocks the event loop (a `time.sleep` in an `async def`) is
  reported by name: the audio waited for it;
- a plugin more than `max_pending` events behind is disabled for the meeting and
  reported, so memory stays bounded;
- at the end, each plugin gets `on_meeting_end` right after its own last event, however
  slow another plugin is, with the summary as it stands then (its own failures in it);
  only a plugin that takes events plugins emit (`on_translation`) waits, for the others
  to finish (bounded), so the last translation still reaches it; a plugin still busy
  after the drain timeout is named, and its remaining events dropped.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import sys
import threading
import time
from typing import Any, Callable

from ..events import CaptionError, MeetingSummary
from ..hookspecs import EVENT_HOOKS, PLUGIN_EVENTS
from .hooks import PluginHooks, describe_failure, print_traceback

_CLOSE = object()
# An async hook that holds the loop this long without awaiting is reported: the audio
# and every other coroutine waited for it.
BLOCKING_SECONDS = 0.5


class PluginDispatcher:
    """A queue for each plugin that implements an event hook; `emit` never blocks."""

    def __init__(
        self,
        hooks: PluginHooks,
        report: Callable[[CaptionError], None],
        *,
        max_pending: int = 1000,
        trace: bool = False,
    ):
        self.hooks = hooks
        self._report = report
        self.trace = trace  # full tracebacks of plugin failures, on stderr
        self.ended = False
        names = dict.fromkeys(name for hook in EVENT_HOOKS for name in hooks.implementers(hook))
        self.plugins = [PluginQueue(name, self, max_pending) for name in names]

    def start(self) -> None:
        for plugin in self.plugins:
            plugin.start()

    def wants(self, hook: str) -> bool:
        """Whether any plugin implements `hook`: an event nobody takes need not be computed."""
        return any(hook in plugin.implements for plugin in self.plugins)

    def emit(self, hook: str, **kwargs: Any) -> None:
        for plugin in self.plugins:
            plugin.offer(hook, kwargs)

    def report(self, error: CaptionError) -> None:
        self._report(error)
        if self.ended:  # the plugins may have had their end: say it where it is seen
            print(f"captioner: warning: {error.message}", file=sys.stderr, flush=True)

    def plugin_failed(self, plugin: PluginQueue, hook: str, error: BaseException) -> None:
        message = f"plugin {plugin.name} failed in {hook}: {describe_failure(error)}"
        if self.trace:
            print_traceback(message, error)
        if hook == "on_error":
            # Reporting it through on_error again could loop; say it once, here.
            print(f"captioner: warning: {message}", file=sys.stderr, flush=True)
            return
        self.report(CaptionError(kind="plugin", message=message, fatal=False, plugin=plugin.name))

    def plugin_blocked(self, plugin: PluginQueue, hook: str, seconds: float) -> None:
        self.report(CaptionError(
            kind="plugin",
            message=f"plugin {plugin.name} blocked the event loop for {seconds:.1f} s in its async {hook}: "
            "the audio waited; an async def hook must await, or be a plain def (it then runs on its own thread)",
            fatal=False,
            plugin=plugin.name,
        ))

    async def finish(self, summarise: Callable[[], MeetingSummary], timeout: float) -> None:
        """End the meeting for every plugin, waiting at most `timeout` seconds in all.

        Each plugin gets on_meeting_end after its own last event (a disabled one too, so it
        can close its files), with the summary as it stands then. A plugin that takes
        events other plugins emit (`on_translation`) gets it once every other plugin has
        finished, or after half the bound: the last translation reaches the subtitle
        track. No other plugin waits for anyone."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0)
        takers = [plugin for plugin in self.plugins if plugin.implements & set(PLUGIN_EVENTS)]
        others = [plugin for plugin in self.plugins if plugin not in takers]
        for plugin in others:
            plugin.finish(summarise)
        if takers and others:
            # Half the bound at most, so a taker still has time for its own end.
            joins = [asyncio.ensure_future(plugin.events.join()) for plugin in others]
            await asyncio.wait(joins, timeout=max(0.0, timeout / 2))
            for join in joins:
                join.cancel()
        for plugin in takers:
            plugin.finish(summarise)
        self.ended = True
        await self._close(deadline - loop.time(), timeout)

    async def _close(self, remaining: float, timeout: float) -> None:
        """Let every plugin finish its queue, until the deadline; name those that did not."""
        tasks = {plugin.task: plugin for plugin in self.plugins if plugin.task}
        if tasks:
            await asyncio.wait(tasks, timeout=max(remaining, 0))
        for task, plugin in tasks.items():
            if not task.done():
                print(
                    f"captioner: warning: plugin {plugin.name} did not finish within {max(timeout, 0):g} s "
                    f"of the end; {plugin.pending} events were not delivered to it",
                    file=sys.stderr,
                    flush=True,
                )
                task.cancel()
        for plugin in self.plugins:
            plugin.worker.stop()
        await asyncio.gather(*tasks, return_exceptions=True)


class PluginQueue:
    def __init__(self, name: str, dispatcher: PluginDispatcher, max_pending: int):
        self.name = name
        self.dispatcher = dispatcher
        hooks = dispatcher.hooks
        self.implements = {hook for hook in EVENT_HOOKS if name in hooks.implementers(hook)}
        self.coroutines = {hook for hook in self.implements if inspect.iscoroutinefunction(hooks.impl(hook, name).function)}
        self.max_pending = max_pending
        self.events: asyncio.Queue = asyncio.Queue()  # bounded by offer(), so finish() always fits
        self.worker = WorkerThread(f"captioner-plugin-{name}")
        self.task: asyncio.Task | None = None
        self.disabled = False
        self.finished = False

    @property
    def pending(self) -> int:
        """Events not delivered yet (the close that follows them not counted)."""
        return self.events.qsize() - (1 if self.finished and self.task and not self.task.done() else 0)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"captioner-plugin-{self.name}")

    def offer(self, hook: str, kwargs: dict) -> None:
        if hook not in self.implements or self.disabled or self.finished:
            return
        if self.events.qsize() >= self.max_pending:
            self.disabled = True
            self._drop_pending()
            self.dispatcher.report(
                CaptionError(
                    kind="plugin",
                    message=f"plugin {self.name} fell {self.max_pending} events behind and was "
                    "disabled for the rest of this meeting",
                    fatal=False,
                    plugin=self.name,
                )
            )
            return
        self.events.put_nowait((hook, kwargs))

    def finish(self, summarise: Callable[[], MeetingSummary]) -> None:
        if "on_meeting_end" in self.implements:
            self.events.put_nowait(("on_meeting_end", summarise))
        self.events.put_nowait(_CLOSE)
        self.finished = True

    def _drop_pending(self) -> None:
        while not self.events.empty():
            self.events.get_nowait()
            self.events.task_done()

    async def _run(self) -> None:
        await self._deliver_all()
        # The close itself: join() means done. Not when cancelled waiting for an event:
        # nothing was taken then, and a task_done() too many raised at shutdown.
        self.events.task_done()

    async def _deliver_all(self) -> None:
        while (item := await self.events.get()) is not _CLOSE:
            hook, kwargs = item
            if hook == "on_meeting_end":
                kwargs = {"summary": kwargs()}  # the summary as it stands now
            try:
                await self._deliver(hook, kwargs)
            except asyncio.CancelledError:
                raise
            except BaseException as error:  # even SystemExit: a plugin must not end the meeting
                self.dispatcher.plugin_failed(self, hook, error)
            finally:
                self.events.task_done()  # after any failure report

    async def _deliver(self, hook: str, kwargs: dict) -> None:
        call = self.dispatcher.hooks.caller(hook, self.name)
        if hook in self.coroutines:
            for result in call(**kwargs):
                if inspect.isawaitable(result):
                    await self._timed(result, hook)
        else:
            for result in await self.worker.call(lambda: call(**kwargs)):
                if inspect.isawaitable(result):
                    await result

    async def _timed(self, awaitable, hook: str) -> Any:
        """`await awaitable`, timing each stretch it runs without yielding to the loop."""
        reported = False

        def check(started: float) -> None:
            nonlocal reported
            held = time.perf_counter() - started
            if held >= BLOCKING_SECONDS and not reported:
                reported = True
                self.dispatcher.plugin_blocked(self, hook, held)

        return await _TimedAwait(awaitable.__await__(), check)


class _TimedAwait:
    """Drives a coroutine as `await` would, calling `check(started)` after every step."""

    def __init__(self, steps, check: Callable[[float], None]):
        self.steps, self.check = steps, check

    def __await__(self):
        value, error = None, None
        while True:
            started = time.perf_counter()
            try:
                yielded = self.steps.throw(error) if error is not None else self.steps.send(value)
            except StopIteration as stop:
                self.check(started)
                return stop.value
            self.check(started)
            value, error = None, None
            try:
                value = yield yielded
            except BaseException as raised:  # cancellation and the loop's errors go to the coroutine
                error = raised


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
                    wrapped.__traceback__ = error.__traceback__
                    error = wrapped
                outcome, value = _set_exception, error
            try:
                loop.call_soon_threadsafe(outcome, future, value)
            except RuntimeError:
                return  # the loop is gone: the meeting ended without waiting for us


def _set_result(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
