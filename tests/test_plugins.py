"""Plugins: loading from entry points, isolation, ordering, and the non-blocking audio path."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import textwrap
import threading
import time

import pluggy
import pytest
import soundfile

from captioner import Settings, hookimpl
from captioner.plugins.dispatch import PluginDispatcher
from captioner.errors import UsageError
from captioner.plugins.manager import build_plugin_manager, describe_plugins
from captioner.plugins.hooks import PluginHooks
from captioner.testing import EventRecorder, FakeServerThread, FakeStreamingServer, TranscriptScript
from conftest import fixture

HELLO = fixture("hello.wav")
HELLO_FINALS = TranscriptScript.load(fixture("hello.json")).finals
MEETING_FINALS = TranscriptScript.load(fixture("meeting.json")).finals


class Raises:
    @hookimpl
    def on_final(self, turn):
        raise RuntimeError("boom in a plugin")


class RaisesAsync:
    @hookimpl
    async def on_partial(self, turn):
        raise ValueError("async boom")


class AsyncCollector:
    def __init__(self):
        self.finals = []
        self.threads = set()

    @hookimpl
    async def on_final(self, turn):
        await asyncio.sleep(0)
        self.finals.append(turn.text)


def test_a_raising_plugin_does_not_stop_the_others(replay):
    collector = AsyncCollector()
    result = replay(fixture("meeting.wav"), plugins=[Raises(), RaisesAsync(), collector])
    assert result.error is None
    assert result.final_texts == MEETING_FINALS  # the recorder saw everything
    assert collector.finals == MEETING_FINALS  # and so did the async plugin
    plugin_errors = [e for e in result.errors if e.kind == "plugin"]
    assert {e.plugin for e in plugin_errors} == {"Raises", "RaisesAsync"}
    assert sum("boom in a plugin" in e.message for e in plugin_errors) == len(MEETING_FINALS)
    assert any("async boom" in e.message and "on_partial" in e.message for e in plugin_errors)
    assert not any(e.fatal for e in plugin_errors)


def test_a_plugin_object_that_cannot_be_hashed_is_refused_with_the_fix(replay):
    @dataclasses.dataclass
    class Kept:  # compares by value, so it has no hash
        finals: list = dataclasses.field(default_factory=list)

        @hookimpl
        def on_final(self, turn):
            self.finals.append(turn.text)

    with pytest.raises(UsageError, match=r"plugin Kept cannot be registered: .*@dataclass\(eq=False\)"):
        replay(HELLO, plugins=[Kept()])

    @dataclasses.dataclass(eq=False)
    class Fixed:
        finals: list = dataclasses.field(default_factory=list)
        on_final = Kept.on_final

    fixed = Fixed()
    result = replay(HELLO, plugins=[fixed])
    assert result.error is None and not result.errors and fixed.finals == HELLO_FINALS


def test_sync_hooks_run_off_the_event_loop_one_thread_per_plugin(replay):
    threads = {}

    class WhereAmI:
        def __init__(self, name):
            self.name = name

        @hookimpl
        def on_final(self, turn):
            threads.setdefault(self.name, set()).add(threading.current_thread().name)

    replay(HELLO, plugins=[WhereAmI("a"), WhereAmI("b")])
    assert len(threads["a"]) == 1 and len(threads["b"]) == 1
    assert threads["a"] != threads["b"]
    assert threading.main_thread().name not in threads["a"] | threads["b"]


def test_a_blocked_plugin_stalls_neither_the_audio_nor_the_other_plugins():
    samples = len(soundfile.read(fixture("meeting.wav"), dtype="int16")[0])
    pcm_bytes = -(-samples * 2 // 1600) * 1600  # whole 50 ms chunks, the tail padded
    script = TranscriptScript.load(fixture("meeting.json"))
    with FakeServerThread(FakeStreamingServer(script)) as server:

        class BlocksUntilAllAudioArrived:
            audio_arrived = None

            @hookimpl
            def on_partial(self, turn):
                if self.audio_arrived is None:
                    # Hold the first partial until the server has every byte of audio:
                    # if this plugin could stall the audio path, this would never happen.
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline:
                        if server.connections and len(server.connections[0].audio) == pcm_bytes:
                            break
                        time.sleep(0.01)
                    self.audio_arrived = len(server.connections[0].audio) == pcm_bytes
                    self.finals_seen_by_then = len(recorder.finals)

        from captioner.testing import replay as run_replay

        blocker = BlocksUntilAllAudioArrived()
        recorder = EventRecorder()
        result = run_replay(fixture("meeting.wav"), server=server, plugins=[blocker, recorder])
    assert blocker.audio_arrived is True
    assert result.error is None
    assert recorder.final_texts == MEETING_FINALS
    assert blocker.finals_seen_by_then > 0  # the other plugin kept receiving finals meanwhile


def test_a_plugin_that_falls_too_far_behind_is_disabled_and_reported():
    release = threading.Event()
    calls = []

    class Stuck:
        @hookimpl
        def on_partial(self, turn):
            calls.append(turn)
            release.wait(10)

    pm = build_plugin_manager(defaults=False, environ={"CAPTIONER_LOAD_PLUGINS": ""})
    pm.register(Stuck(), name="stuck")
    reported = []

    async def run():
        dispatcher = PluginDispatcher(PluginHooks(pm), reported.append, max_pending=3)
        dispatcher.start()
        for n in range(10):
            dispatcher.emit("on_partial", turn=n)
            await asyncio.sleep(0.01)
        release.set()
        await dispatcher.finish(lambda: None, timeout=5)
        return dispatcher

    dispatcher = asyncio.run(run())
    assert len(reported) == 1
    assert reported[0].plugin == "stuck" and "fell 3 events behind" in reported[0].message
    assert dispatcher.plugins[0].disabled
    assert len(calls) == 1  # what was queued when it was disabled was dropped, not delivered late


def test_plugin_close_waits_a_bounded_time(capsys):
    class Forever:
        @hookimpl
        def on_meeting_end(self, summary):
            time.sleep(30)

    pm = build_plugin_manager(defaults=False, environ={"CAPTIONER_LOAD_PLUGINS": ""})
    pm.register(Forever(), name="forever")

    async def run():
        dispatcher = PluginDispatcher(PluginHooks(pm), lambda error: None)
        dispatcher.start()
        await dispatcher.finish(lambda: None, timeout=0.2)

    asyncio.run(run())
    assert "plugin forever did not finish within 0.2 s" in capsys.readouterr().err


def test_a_meeting_cancelled_before_its_plugins_finished_leaves_no_error_behind():
    # A run that fails (the server never sent Termination) can end with asyncio.run
    # cancelling the plugins' delivery tasks while they wait for events.
    class Listens:
        @hookimpl
        def on_final(self, turn):
            pass

    pm = build_plugin_manager(defaults=False, environ={"CAPTIONER_LOAD_PLUGINS": ""})
    pm.register(Listens(), name="listens")
    failures = []

    async def run():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: failures.append(context))
        dispatcher = PluginDispatcher(PluginHooks(pm), lambda error: None)
        dispatcher.start()
        await asyncio.sleep(0)
        (queue,) = dispatcher.plugins
        queue.task.cancel()
        await asyncio.gather(queue.task, return_exceptions=True)
        return queue.task

    task = asyncio.run(run())
    assert task.cancelled() and failures == []


# ----------------------------------------------------------------- installed plugins


def make_distribution(site, dist="captioner-throwaway", module="throwaway_plugin", name="throwaway", body=None):
    """A real installed distribution: a module plus a .dist-info with an entry point."""
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(body or textwrap.dedent(
        """
        import json
        from captioner import hookimpl

        state = {}

        @hookimpl
        def add_options(parser):
            parser.add_argument("--throwaway-out", help="where the throwaway plugin writes")

        @hookimpl
        def configure(config):
            state["out"] = config.option("throwaway_out")

        @hookimpl
        def on_final(turn):
            if state.get("out"):
                with open(state["out"], "a") as out:
                    out.write(json.dumps({"final": turn.text, "start": turn.start_ms}) + "\\n")

        @hookimpl
        def on_meeting_end(summary):
            if state.get("out"):
                with open(state["out"], "a") as out:
                    out.write(json.dumps({"finals": summary.finals}) + "\\n")
        """
    ))
    info = site / f"{dist.replace('-', '_')}-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3.1\n")
    (info / "entry_points.txt").write_text(f"[captioner]\n{name} = {module}\n")
    (info / "RECORD").write_text(f"{module}.py,,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
    return site


def test_an_installed_plugin_is_listed_and_its_hooks_fire(tmp_path, cli):
    site = make_distribution(tmp_path / "site")
    env = {"PYTHONPATH": str(site)}
    listed = cli("plugins", env=env)
    assert listed.returncode == 0, listed.stderr
    plugins = json.loads(listed.stdout)
    assert {"name": "throwaway", "version": "0.3.1", "hooks": ["add_options", "configure", "on_final", "on_meeting_end"]} in plugins
    assert "terminal" not in [p["name"] for p in plugins]
    assert "terminal" in [p["name"] for p in json.loads(cli("plugins", "--all", env=env).stdout)]

    out = tmp_path / "finals.jsonl"
    with FakeServerThread(FakeStreamingServer(TranscriptScript.load(fixture("hello.json")))) as server:
        ran = cli("replay", str(HELLO), "--url", server.url, "--fast", "--throwaway-out", str(out), env=env)
    assert ran.returncode == 0, ran.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["final"] for line in lines[:-1]] == HELLO_FINALS
    assert lines[-1] == {"finals": len(HELLO_FINALS)}


def test_load_plugins_variable_and_disable_flag_select_plugins(tmp_path, cli):
    site = make_distribution(tmp_path / "site")
    make_distribution(site, dist="captioner-other", module="other_plugin", name="other", body=(
        "from captioner import hookimpl\n\n@hookimpl\ndef on_partial(turn):\n    pass\n"))

    def names(*args, **env):
        result = cli("plugins", *args, env={"PYTHONPATH": str(site), **env})
        assert result.returncode == 0, result.stderr
        return sorted(p["name"] for p in json.loads(result.stdout))

    installed = {p["name"] for p in json.loads(cli("plugins").stdout)}  # the first-party plugins
    assert set(names()) - installed == {"other", "throwaway"}
    assert names(CAPTIONER_LOAD_PLUGINS="") == []
    assert names(CAPTIONER_LOAD_PLUGINS="captioner-other") == ["other"]
    assert set(names("--disable-plugin", "throwaway")) - installed == {"other"}
    assert names("-p", "throwaway_plugin", CAPTIONER_LOAD_PLUGINS="") == ["throwaway_plugin"]
    assert "terminal" not in [p["name"] for p in json.loads(cli("plugins", "--all", "--disable-plugin", "terminal").stdout)]


def test_a_plugin_file_can_be_loaded_with_p(tmp_path):
    path = tmp_path / "adhoc.py"
    path.write_text("from captioner import hookimpl\n\n@hookimpl\ndef on_final(turn):\n    pass\n")
    pm = build_plugin_manager(modules=[str(path)], environ={"CAPTIONER_LOAD_PLUGINS": ""})
    assert [p["name"] for p in describe_plugins(pm)] == [str(path)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"modules": ["no_such_module_xyz"]}, "-p no_such_module_xyz: cannot import plugin module"),
        ({"disabled": ["nope"]}, "--disable-plugin nope: no such plugin; known: moonshine, pocketsphinx, terminal"),
        ({"environ": {"CAPTIONER_LOAD_PLUGINS": "not-installed-dist"}}, "not installed"),
    ],
)
def test_unknown_plugin_names_are_usage_errors(kwargs, message):
    kwargs.setdefault("environ", {"CAPTIONER_LOAD_PLUGINS": ""})
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        build_plugin_manager(**kwargs)


def test_a_broken_installed_plugin_names_itself_and_how_to_skip_it(tmp_path, cli):
    site = make_distribution(tmp_path / "site", body="raise ImportError('missing dependency xyz')\n")
    result = cli("plugins", env={"PYTHONPATH": str(site)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "captioner: error: plugin 'throwaway' (captioner-throwaway) failed to load: "
        "ImportError: missing dependency xyz; skip it with --disable-plugin throwaway"
    ]
    assert cli("plugins", "--disable-plugin", "throwaway", env={"PYTHONPATH": str(site)}).returncode == 0


def test_trace_prints_every_hook_call(tmp_path, cli):
    with FakeServerThread(FakeStreamingServer(TranscriptScript.load(fixture("hello.json")))) as server:
        ran = cli("replay", str(HELLO), "--url", server.url, "--fast", env={"CAPTIONER_TRACE_PLUGINS": "1"})
    assert ran.returncode == 0
    assert "captioner: trace: terminal-view.on_final(turn=Turn(" in ran.stderr
    assert "captioner: trace: terminal-view.on_meeting_end(summary=MeetingSummary(" in ran.stderr


def test_hook_implementations_are_validated_against_the_specs():
    class Misspelled:
        @hookimpl
        def on_final(self, turn, extra_argument):
            pass

    pm = build_plugin_manager(defaults=False, environ={"CAPTIONER_LOAD_PLUGINS": ""})
    with pytest.raises(pluggy.PluginValidationError):
        pm.register(Misspelled())


def test_a_plugins_own_failure_is_in_the_summary_it_gets_and_one_at_the_end_is_still_reported(replay, capsys):
    class FailsOnFinal:
        summary = None

        @hookimpl
        def on_final(self, turn):
            raise OSError("disk full")

        @hookimpl
        def on_meeting_end(self, summary):
            self.summary = summary

    class FailsAtEnd:
        @hookimpl
        def on_meeting_end(self, summary):
            raise OSError("cannot flush")

    failing = FailsOnFinal()
    result = replay(HELLO, plugins=[failing, FailsAtEnd()])
    (error,) = failing.summary.errors
    assert error.message.startswith("plugin FailsOnFinal failed in on_final: OSError: disk full (at ")
    assert error.message.endswith(f"test_plugins.py:{FailsOnFinal.on_final.__code__.co_firstlineno + 2})")
    # At the end it reaches the plugins still to end (the recorder takes translations, so
    # it ends last), or else stderr: never nowhere.
    at_end = "plugin FailsAtEnd failed in on_meeting_end: OSError: cannot flush"
    assert any(e.message.startswith(at_end) for e in result.errors) or at_end in capsys.readouterr().err


@pytest.mark.parametrize("exception", [StopIteration, SystemExit, KeyboardInterrupt])
def test_no_exception_from_a_plugin_ends_the_run_or_jams_its_queue(replay, exception):
    class Hostile:
        def __init__(self):
            self.calls = 0

        @hookimpl
        def on_partial(self, turn):
            self.calls += 1
            raise exception("from a plugin")

    class HostileAsync:
        @hookimpl
        async def on_final(self, turn):
            raise exception("from an async plugin")

    hostile = Hostile()
    result = replay(HELLO, plugins=[hostile, HostileAsync()])
    assert result.error is None and result.final_texts == HELLO_FINALS
    assert hostile.calls == len(result.partials)  # it kept receiving every partial
    assert {e.plugin for e in result.errors} == {"Hostile", "HostileAsync"}
    assert result.summary.terminated


def test_a_disabled_plugin_still_gets_on_meeting_end():
    release = threading.Event()
    ended = []

    class Stuck:
        @hookimpl
        def on_partial(self, turn):
            release.wait(10)

        @hookimpl
        def on_meeting_end(self, summary):
            ended.append(summary)

    pm = build_plugin_manager(defaults=False, environ={"CAPTIONER_LOAD_PLUGINS": ""})
    pm.register(Stuck(), name="stuck")

    async def run():
        dispatcher = PluginDispatcher(PluginHooks(pm), lambda error: None, max_pending=2)
        dispatcher.start()
        for n in range(5):
            dispatcher.emit("on_partial", turn=n)
            await asyncio.sleep(0)
        release.set()
        await dispatcher.finish(lambda: "the summary", timeout=5)
        return dispatcher

    assert asyncio.run(run()).plugins[0].disabled
    assert ended == ["the summary"]


# ----------------------------------------------------------------- the contract at the edges


def test_a_stuck_plugin_delays_no_other_plugins_end_and_is_named_with_the_right_time(replay, capsys):
    release = threading.Event()

    class Stuck:
        @hookimpl
        def on_final(self, turn):
            release.wait(60)

    class Ends:
        ended_while_stuck = None

        @hookimpl
        def on_meeting_end(self, summary):
            self.ended_while_stuck = not release.is_set()

    ends = Ends()
    try:
        result = replay(HELLO, plugins=[Stuck(), ends], settings=Settings(plugin_drain_timeout=1.0))
    finally:
        release.set()
    assert ends.ended_while_stuck is True  # it got its end while the other was still stuck
    assert [kind for kind, _ in result.events].count("meeting_end") == 1 and result.events[-1][0] == "meeting_end"
    warnings = [line for line in capsys.readouterr().err.splitlines() if "did not finish" in line]
    assert warnings == ["captioner: warning: plugin Stuck did not finish within 1 s of the end; "
                        "0 events were not delivered to it"]


def test_an_async_hook_that_blocks_the_event_loop_is_reported_by_name(replay):
    class BlocksTheLoop:
        @hookimpl
        async def on_final(self, turn):
            time.sleep(0.7)  # the mistake: a blocking call in a coroutine

    class Awaits:
        @hookimpl
        async def on_final(self, turn):
            await asyncio.sleep(0.7)  # as long, but it lets the loop run

    result = replay(HELLO, plugins=[BlocksTheLoop(), Awaits()])
    blocked = [e for e in result.errors if "blocked the event loop" in e.message]
    assert [e.plugin for e in blocked] == ["BlocksTheLoop"]
    assert "in its async on_final" in blocked[0].message and not blocked[0].fatal


def test_a_plugins_traceback_is_printed_under_trace(tmp_path, cli):
    plugin = tmp_path / "breaks.py"
    plugin.write_text("from captioner import hookimpl\n\n@hookimpl\ndef on_final(turn):\n    raise ValueError('broken')\n")
    script = TranscriptScript.load(fixture("hello.json"))
    with FakeServerThread(FakeStreamingServer(script, reference=script.reference_audio())) as server:
        quiet = cli("-p", str(plugin), "replay", str(HELLO), "--url", server.url, "--fast")
        traced = cli("-p", str(plugin), "replay", str(HELLO), "--url", server.url, "--fast",
                     env={"CAPTIONER_TRACE_PLUGINS": "1"})
    warning = f"plugin {plugin} failed in on_final: ValueError: broken (at breaks.py:5)"  # relative to the cwd
    assert warning in quiet.stderr and "Traceback" not in quiet.stderr
    assert "Traceback (most recent call last)" in traced.stderr and f'File "{plugin}", line 5' in traced.stderr


def test_plugins_lists_the_hooks_of_the_objects_a_plugin_registers(cli):
    listed = json.loads(cli("plugins", env={"CAPTIONER_LOAD_PLUGINS": "captioner-subtitles"}).stdout)
    (subtitles,) = listed
    # add_options and configure are the module's; the rest are SubtitleWriter's.
    assert {"add_options", "configure", "on_final", "on_translation", "on_meeting_end"} <= set(subtitles["hooks"])
