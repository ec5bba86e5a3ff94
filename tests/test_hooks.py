"""One test per hook (test_hook_<name>), and the datasette-style checks that every hook
has such a test and a section in docs/plugins.md."""

from __future__ import annotations

import ast
import inspect
import re
from datetime import timezone
from pathlib import Path

import pytest
import soundfile

from captioner import Config, SessionParams, Settings, UsageError, collect_registrations, hookimpl
from captioner import hookspecs
from captioner.cli.parser import build_parser
from captioner.plugins.hooks import PluginHooks
from captioner.plugins.manager import build_plugin_manager
from captioner.testing import TranscriptScript, close_at, malformed_at
from conftest import ROOT, fixture

HOOKS = sorted(hookspecs.HOOKS)
HELLO = fixture("hello.wav")
HELLO_SCRIPT = TranscriptScript.load(fixture("hello.json"))


def empty_pm():
    return build_plugin_manager(defaults=False, environ={"CAPTIONER_LOAD_PLUGINS": ""})


def test_the_readme_lists_every_hook_and_no_other():
    readme = (ROOT / "README.md").read_text()
    listed = re.search(r"^Hooks: (.*?)\.$", readme, re.M | re.S).group(1)
    assert sorted(re.findall(r"`(\w+)\(", listed)) == HOOKS


def test_the_dispatcher_delivers_every_event_hook_and_no_other():
    assert hookspecs.EVENT_HOOKS == tuple(hook for hook in hookspecs.HOOKS if hook.startswith("on_"))
    assert {"on_final", "on_partial", "on_meeting_end"} <= set(hookspecs.EVENT_HOOKS)


def test_hook_add_hookspecs():
    import types

    specs = types.ModuleType("extra_specs")

    @hookspecs.hookspec
    def register_widgets(register):
        """A plugin's own registration hook."""

    specs.register_widgets = register_widgets

    class AddsAHook:
        @hookimpl
        def add_hookspecs(self, plugin_manager):
            plugin_manager.add_hookspecs(specs)

    class Widgets:
        @hookimpl
        def register_widgets(self, register):
            register("knob", object, "turns")

    pm = empty_pm()
    pm.register(Widgets(), name="widgets")  # before the hook exists: validated once it does
    pm.register(AddsAHook(), name="adds")
    assert list(collect_registrations(pm, "register_widgets", "widget")) == ["knob"]


def test_plugin_hooks_have_tests():
    tested = set()
    for path in Path(__file__).parent.rglob("test_*.py"):
        tree = ast.parse(path.read_text())
        tested |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    missing = [hook for hook in HOOKS if f"test_hook_{hook}" not in tested]
    assert not missing, f"hooks without a test_hook_<name> test: {missing}"


def test_plugin_hooks_are_documented():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    for hook in HOOKS:
        arguments = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
        assert re.search(rf"^### `{hook}\({arguments}\)`$", docs, re.M), f"{hook}({arguments}) is not documented"


def test_hook_add_options():
    class AddsAnOption:
        @hookimpl
        def add_options(self, parser):
            parser.add_argument("--shout", action="store_true", help="captions in capitals")

    class OnlyForServe:
        @hookimpl
        def add_options(self, parser, command):
            if command == "serve":
                parser.add_argument("--threads-please", type=int)

    pm = empty_pm()
    pm.register(AddsAnOption(), name="shouty")
    pm.register(OnlyForServe(), name="serve-only")
    parser = build_parser(PluginHooks(pm))
    args = parser.parse_args(["replay", "x.wav", "--shout"])
    assert args.shout is True
    commands = parser._subparsers._group_actions[0].choices
    assert "plugin shouty" in commands["replay"].format_help()
    assert "--threads-please" in commands["serve"].format_help()
    assert "--threads-please" not in commands["replay"].format_help()
    assert parser.parse_args(["serve", "--shout", "--threads-please", "2"]).threads_please == 2


def test_hook_add_options_failure_is_a_usage_error():
    class Clashes:
        @hookimpl
        def add_options(self, parser):
            parser.add_argument("--url")

    pm = empty_pm()
    pm.register(Clashes(), name="clashes")
    with pytest.raises(UsageError, match="plugin clashes failed to add its options.*--disable-plugin clashes"):
        build_parser(PluginHooks(pm))


def test_hook_configure():
    seen = []

    class Configured:
        @hookimpl
        def configure(self, config):
            seen.append((config.command, config.option("out_dir"), config.option("--out-dir"), config.settings.sample_rate))

    class Refuses:
        @hookimpl
        def configure(self, config):
            raise UsageError("--out-dir /nope: directory does not exist")

    class Crashes:
        @hookimpl
        def configure(self, config):
            raise KeyError("oops")

    config = Config("replay", {"out_dir": "/tmp/x"}, None, Settings(session=SessionParams(sample_rate=8000)))
    pm = empty_pm()
    pm.register(Configured(), name="configured")
    PluginHooks(pm).configure(config)
    assert seen == [("replay", "/tmp/x", "/tmp/x", 8000)]
    pm.register(Refuses(), name="refuses")
    with pytest.raises(UsageError, match="directory does not exist"):
        PluginHooks(pm).configure(config)
    pm.unregister(name="refuses")
    pm.register(Crashes(), name="crashes")
    with pytest.raises(UsageError, match="plugin crashes failed to start: KeyError.*skip it with --disable-plugin crashes"):
        PluginHooks(pm).configure(config)


def test_hook_register_recognizers():
    from captioner.server.recognizer import Transcription, load_recognizer, registered_recognizers

    class Echo:
        name, punctuates = "echo", True

        def __init__(self, config):
            self.config = config

        def new_decoder(self):
            return self

        def transcribe(self, audio):
            return Transcription(f"{len(audio)} samples.")

    class Registers:
        @hookimpl
        def register_recognizers(self, register):
            register("echo", Echo, "counts samples")

    pm = empty_pm()
    pm.register(Registers(), name="echo-plugin")
    entries = registered_recognizers(PluginHooks(pm))
    assert list(entries) == ["echo"] and entries["echo"].description == "counts samples"
    assert entries["echo"].plugin == "echo-plugin"
    recognizer = load_recognizer(PluginHooks(pm), "echo", "the config")
    assert recognizer.config == "the config"
    assert recognizer.new_decoder().transcribe([0] * 160).text == "160 samples."
    with pytest.raises(UsageError, match="unknown recognizer 'nope'; installed: echo"):
        load_recognizer(PluginHooks(pm), "nope", None)
    pm.register(Registers(), name="again")
    with pytest.raises(UsageError, match="registered twice"):
        registered_recognizers(PluginHooks(pm))


def test_hook_register_translators():
    """The translate plugin's own hook: added to the plugin manager by that plugin."""
    import captioner_translate

    class Registers:
        @hookimpl
        def register_translators(self, register):
            register("upper", lambda config: "made", "shouts")

    pm = empty_pm()
    pm.register(captioner_translate, name="translate")
    pm.register(Registers(), name="upper-plugin")
    assert "register_translators" in {caller.name for caller in pm.get_hookcallers(pm.get_plugin("upper-plugin"))}
    entries = collect_registrations(pm, "register_translators", "translator")
    assert entries["upper"].description == "shouts" and entries["upper"].plugin == "upper-plugin"
    assert entries["upper"].factory(None) == "made"


def test_hook_register_commands(cli, tmp_path):
    plugin = tmp_path / "hello_command.py"
    plugin.write_text(
        "from captioner import UsageError, hookimpl\n\n"
        "def hello(args, pm):\n"
        "    if args.name == 'nobody':\n"
        "        raise UsageError('hello: nobody is there')\n"
        "    print(f'hello {args.name}')\n"
        "    return 0\n\n"
        "@hookimpl\n"
        "def register_commands(commands):\n"
        "    command = commands.add_parser('hello', help='greet someone')\n"
        "    command.add_argument('name')\n"
        "    command.set_defaults(command_function=hello)\n"
    )
    result = cli("-p", str(plugin), "hello", "world")
    assert (result.returncode, result.stdout) == (0, "hello world\n")
    refused = cli("-p", str(plugin), "hello", "nobody")
    assert (refused.returncode, refused.stderr) == (2, "captioner: error: hello: nobody is there\n")
    assert "greet someone" in cli("-p", str(plugin), "--help").stdout


def test_hook_on_translation(replay):
    from captioner import Translation

    got = []

    class Translates:
        @hookimpl
        def configure(self, config):
            self.events = config.meeting

        @hookimpl
        def on_final(self, turn):  # from this plugin's worker thread
            self.events.emit("on_translation", translation=Translation(turn, "xx", turn.text.upper(), "upper"))
            self.events.error("just saying", plugin="Translates")

    class Receives:
        @hookimpl
        def on_translation(self, translation):
            got.append(translation)

    result = replay(fixture("meeting.wav"), plugins=[Translates(), Receives()], options={})
    assert [t.text for t in got] == [text.upper() for text in result.final_texts]
    assert [t.turn.turn_order for t in got] == list(range(len(result.finals)))
    assert [e.message for e in result.errors] == ["just saying"] * len(result.finals)
    with pytest.raises(ValueError, match="may emit"):
        from captioner import Meeting

        Meeting().emit("on_final", turn=None)


def test_hook_on_session_begin(replay):
    sessions = []

    class Begins:
        @hookimpl
        def on_session_begin(self, session):
            sessions.append(session)

    result = replay(HELLO, plugins=[Begins()])
    (session,) = sessions
    assert session.id == result.server.connections[0].session_id
    assert session.protocol == "v3" and session.sample_rate == 16000
    assert session.url.startswith(result.server.url + "?sample_rate=16000")
    assert session.started_at.tzinfo == timezone.utc and session.expires_at > session.started_at
    assert session.source.startswith("hello.wav (16000 Hz, 1 ch")
    assert session.offset_ms == 0


def test_hook_on_partial(replay):
    partials = []

    class Partials:
        @hookimpl
        async def on_partial(self, turn):
            partials.append(turn)

    replay(HELLO, plugins=[Partials()])
    words = HELLO_SCRIPT.turns[0].words
    assert [p.display_text for p in partials] == [" ".join(w.text for w in words[: n + 1]) for n in range(len(words))]
    assert not any(p.is_final for p in partials)
    assert partials[-1].words[-1].is_final is False  # the newest word may still change


def test_hook_on_final(replay):
    finals = []

    class Finals:
        @hookimpl
        def on_final(self, turn):
            finals.append(turn)

    replay(fixture("meeting.wav"), plugins=[Finals()], settings=Settings(session=SessionParams(speaker_labels=True)))
    script = TranscriptScript.load(fixture("meeting.json"))
    assert [f.text for f in finals] == script.finals
    assert [f.turn_order for f in finals] == list(range(len(script.turns)))
    assert [f.speaker for f in finals] == [t.speaker for t in script.turns]
    assert all(f.is_final and f.words and f.start_ms < f.end_ms for f in finals)


def test_hook_on_audio_level(replay):
    levels = []

    class Meter:
        @hookimpl
        def on_audio_level(self, level):
            levels.append(level)

    replay(HELLO, plugins=[Meter()])
    duration_ms = int(soundfile.info(HELLO).duration * 1000)
    assert [level.at_ms for level in levels] == list(range(200, 200 * len(levels) + 1, 200))
    assert abs(levels[-1].at_ms - duration_ms) < 200
    assert levels[0].rms_dbfs == -120.0  # the fixture starts with digital silence
    loudest = max(level.rms_dbfs for level in levels)
    assert -30 < loudest < -3 and all(level.peak_dbfs <= 0 for level in levels)  # normalised to -3 dBFS peak
    assert not any(level.paused for level in levels)


def test_audio_levels_are_measured_only_when_a_plugin_takes_them(replay, monkeypatch):
    from captioner.client import levels

    measured = []
    real_dbfs = levels._dbfs
    monkeypatch.setattr(levels, "_dbfs", lambda value: measured.append(value) or real_dbfs(value))

    class FinalsOnly:
        @hookimpl
        def on_final(self, turn):
            pass

    assert replay(HELLO, plugins=[FinalsOnly()]).final_texts and measured == []

    class Meter:
        @hookimpl
        def on_audio_level(self, level):
            pass

    replay(HELLO, plugins=[Meter()])
    assert measured


def test_hook_on_error(replay):
    errors = []

    class Errors:
        @hookimpl
        def on_error(self, error):
            errors.append(error)

    class Fails:
        @hookimpl
        def on_session_begin(self, session):
            raise RuntimeError("cannot begin")

    # 3006 (invalid input) is a close no reconnect could fix: it ends the session.
    replay(HELLO, plugins=[Errors(), Fails()], faults=[malformed_at(1000, "[]"), close_at(2000, 3006)])
    # The plugin's failure and the server's bad frame race each other; the fatal close comes last.
    assert sorted((e.kind, e.fatal, e.plugin) for e in errors[:2]) == [("plugin", False, "Fails"), ("protocol", False, None)]
    assert (errors[2].kind, errors[2].fatal, errors[2].code) == ("server", True, 3006)
    plugin_error = next(e for e in errors if e.kind == "plugin")
    # The file and line where it raised, so the plugin's author can find it.
    assert plugin_error.message == (
        "plugin Fails failed in on_session_begin: RuntimeError: cannot begin "
        f"(at {Path(__file__).relative_to(Path.cwd()) if Path(__file__).is_relative_to(Path.cwd()) else __file__}:"
        f"{Fails.on_session_begin.__code__.co_firstlineno + 2})"
    )


def test_hook_on_meeting_end(replay):
    ends = []

    class Ends:
        @hookimpl
        def on_meeting_end(self, summary):
            ends.append(summary)

    replay(HELLO, plugins=[Ends()])
    replay(HELLO, plugins=[Ends()], faults=[close_at(1500, 4001)])
    good, failed = ends
    assert good.ok and good.terminated and good.finals == 1 and good.error_count == 0
    assert good.audio_seconds_sent == pytest.approx(HELLO_SCRIPT.turns[-1].end / 1000, abs=1.5)
    assert good.server_audio_seconds == int(good.audio_seconds_sent)
    assert not failed.ok and not failed.terminated and failed.finals == 0
    assert [(e.kind, e.code) for e in failed.errors] == [("auth", 4001)]
