"""The `captioner` command line: every command's options, plugins' options included.

Plugins can add options to the captioning commands, so plugins are loaded before the
full parser is built (see captioner.cli.commands). The session's own options are one
table (`SESSION_OPTIONS`): adding a session setting is a line there and a field of
`SessionParams`, which the codecs put on the wire.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

from .. import __version__
from ..audio.pcm import DEFAULT_CHUNK_MS
from ..plugins.hooks import PluginHooks
from ..protocol import CODECS, v3
from ..protocol.messages import DEFAULT_SAMPLE_RATE, SessionParams
from ..server.recognizer import DEFAULT_RECOGNIZER, registered_recognizers


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line, like every other error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ---------------------------------------------------------------- argument types


def _whole_number(minimum: int, maximum: int | None = None, out_of_range: str = ""):
    """An argparse type: a whole number from `minimum` (to `maximum`), else one line saying so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(out_of_range or f"must be {minimum} or more: {text}")
        return value

    return parse


_positive_int = _whole_number(1, out_of_range="must be positive")
_non_negative_int = _whole_number(0)
_sample_rate = _whole_number(8000, 48000, "the service takes 8000 to 48000 Hz")
_chunk_ms = _whole_number(50, 1000, "the service takes chunks of 50 to 1000 ms")
_port = _whole_number(0, 65535, "not a port number (0 to 65535)")


def _number(positive: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (value > 0 if positive else value >= 0) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be {'positive' if positive else '0 or more'}: {text}")
        return value

    return parse


_positive_float = _number(positive=True)
_non_negative_float = _number(positive=False)


# Options whose value is an opaque string that may begin with "-" (a temporary
# token is random URL-safe text): argparse would take "--token -x" for two
# options, so the value is attached ("--token=-x") before parsing.
OPAQUE_VALUE_OPTIONS = ("--token",)


def attach_opaque_values(argv: list[str]) -> list[str]:
    attached: list[str] = []
    arguments = iter(argv)
    for argument in arguments:
        if argument == "--":
            attached.append(argument)
            attached.extend(arguments)
        elif argument in OPAQUE_VALUE_OPTIONS:
            value = next(arguments, None)
            if value is None or value.startswith("--"):  # forgotten: "--token --fast" stays an error
                attached += [argument] if value is None else [argument, value]
            else:
                attached.append(f"{argument}={value}")
        else:
            attached.append(argument)
    return attached


def plugin_selection_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = Parser(add_help=add_help)
    parser.add_argument(
        "-p", dest="plugins", action="append", metavar="MODULE",
        help="load a plugin module (importable name or path to a .py file); repeatable",
    )
    parser.add_argument(
        "--disable-plugin", dest="disabled", action="append", metavar="NAME",
        help="do not load the plugin NAME (see 'captioner plugins --all'); repeatable",
    )
    parser.add_argument(
        "--config", metavar="PATH",
        help="a TOML file of option defaults (default: $CAPTIONER_CONFIG, else ~/.config/captioner/config.toml)",
    )
    return parser


def build_parser(hooks: PluginHooks) -> argparse.ArgumentParser:
    parser = Parser(
        prog="captioner",
        parents=[plugin_selection_parser(add_help=False)],  # also before the command: captioner -p x.py cmd
        description="Live meeting captions from a streaming speech-to-text service.",
        epilog="Environment: ASSEMBLYAI_API_KEY (or a .env file), CAPTIONER_URL, "
        "CAPTIONER_LOAD_PLUGINS, CAPTIONER_TRACE_PLUGINS. Exit codes: docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"captioner {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    selection = plugin_selection_parser(add_help=False)
    service = _service_parser()
    _replay_command(commands, selection, service, hooks)
    _run_command(commands, selection, service, hooks)
    _token_command(commands)
    _devices_command(commands)
    _serve_command(commands, selection, hooks)
    _config_command(commands, selection)
    _plugins_command(commands, selection)
    _fake_server_command(commands)
    hooks.register_commands(commands)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """{command name: its parser}, plugins' commands included."""
    return parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]


def _replay_command(commands, selection: Parser, service: Parser, hooks: PluginHooks) -> None:
    replay = commands.add_parser(
        "replay",
        parents=[_with_plugin_options(hooks, "replay", [selection, service, _recognizer_parser(hooks, "replay")])],
        help="caption an audio file as if it were a live meeting",
        description="Stream an audio file (any format libsndfile reads) to the service, "
        "paced like a live microphone, and show the captions.",
    )
    replay.add_argument("file", help="the audio file to replay")
    pace = replay.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=_positive_float, default=1.0, metavar="N",
                      help="replay N times faster than real time (default 1)")
    pace.add_argument("--fast", action="store_true",
                      help="send audio as fast as the server takes it (local and fake servers only)")
    replay.set_defaults(command_name="replay")


def _run_command(commands, selection: Parser, service: Parser, hooks: PluginHooks) -> None:
    run = commands.add_parser(
        "run",
        parents=[_with_plugin_options(hooks, "run", [selection, service, _recognizer_parser(hooks, "run")])],
        help="caption a live meeting: the microphone, and with --meeting-audio what the computer plays",
        description="Capture the microphone (and with --meeting-audio the other participants: what the "
        "computer plays) and caption it live until Ctrl-C. The first Ctrl-C stops capture and waits for the "
        "last captions; a second quits at once. Keys on a terminal: p pauses and resumes every channel "
        "(sending silence, so the sessions stay open), e ends the current turns now, [ and ] shorten and "
        "lengthen the silence that ends a turn, q stops.",
    )
    run.add_argument("--device", metavar="INDEX|NAME",
                     help="input device: an index or part of a name from 'captioner devices' (default: the system's)")
    run.add_argument("--duration", type=_positive_float, metavar="S", help="stop after S seconds of audio")
    run.add_argument("--buffer-seconds", type=_positive_float, default=10.0, metavar="S",
                     help="audio held while captioner catches up, before dropping any (default 10)")
    meeting = run.add_argument_group("meeting audio (the other participants of a call)")
    meeting.add_argument(
        "--meeting-audio", nargs="?", const="", metavar="OUTPUT",
        help="also caption what the computer plays: the default output (following it when it changes), or "
        "OUTPUT, a name or number from 'captioner devices'. A second streaming session: twice the minutes "
        "on a paid service. It hears everything the computer plays, notifications included; p pauses it too")
    meeting.add_argument("--no-mic", action="store_true", help="caption the meeting audio alone (with --meeting-audio)")
    meeting.add_argument("--mic-label", default="You", metavar="TEXT",
                         help="who the microphone's captions are from, with two channels (default You)")
    meeting.add_argument("--meeting-label", default="Meeting", metavar="TEXT",
                         help="who the meeting audio's captions are from (default Meeting; 'Meeting A' with "
                         "--speaker-labels)")
    run.set_defaults(command_name="run")


def _token_command(commands) -> None:
    token = commands.add_parser(
        "token", help="create a temporary token for a browser or a shared machine",
        description="Ask the service for a temporary token (GET /v3/token) with ASSEMBLYAI_API_KEY and "
        "print it; use it with --token or ASSEMBLYAI_TOKEN instead of the key.",
    )
    token.add_argument("--expires", type=_positive_int, default=60, metavar="S",
                       help="seconds the token stays valid for starting a session (1 to 600, default 60)")
    token.add_argument("--url", default=os.environ.get("CAPTIONER_URL"),
                       help=f"the streaming server (default {v3.DEFAULT_URL})")
    token.set_defaults(command_name="token")


def _devices_command(commands) -> None:
    devices = commands.add_parser(
        "devices", help="list the microphones and the meeting audio captioner can record",
        description="List the microphones (index, name, host API, channels, default rate) and the "
        "outputs whose sound can be captioned as meeting audio (number, description, name); the "
        "defaults are marked. --json gives each a kind, microphone or meeting.",
    )
    devices.add_argument("--json", action="store_true", help="print JSON")
    devices.add_argument("--all", action="store_true",
                         help="also the copies of each device that other host APIs (JACK, OSS, ...) list")
    devices.set_defaults(command_name="devices")


def _serve_command(commands, selection: Parser, hooks: PluginHooks) -> None:
    serve = commands.add_parser(
        "serve",
        parents=[_with_plugin_options(hooks, "serve", [selection, _recognizer_parser(hooks, "serve")])],
        help="serve a local recognizer over the AssemblyAI v3 protocol",
        description="Run an offline recognizer behind the AssemblyAI Universal Streaming v3 protocol, "
        "on /v3/ws, for captioner or any AssemblyAI client. The first line printed is its URL.",
    )
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; another address needs CAPTIONER_SERVER_KEY)")
    serve.add_argument("--port", type=_port, default=8765, help="port (default 8765; 0: a free one)")
    serve.add_argument("--workers", type=_positive_int, metavar="N",
                       help="worker processes sharing the port, each with its own models "
                       "(default: one per core; each has one decoding thread unless --decode-workers says)")
    serve.add_argument("--drain-seconds", type=_non_negative_float, default=25.0, metavar="S",
                       help="on SIGTERM, how long open sessions may go on before they are closed so their clients "
                       "resume elsewhere (default 25: under Kubernetes' default 30 s grace period)")
    serve.set_defaults(command_name="serve")


def _config_command(commands, selection: Parser) -> None:
    config = commands.add_parser(
        "config", parents=[selection], help="show the effective configuration",
        description="Show the configuration in effect: the option defaults after the config file and the "
        "environment, for each command, with secrets masked.",
    )
    config_actions = config.add_subparsers(dest="config_action", required=True, metavar="ACTION", parser_class=Parser)
    show = config_actions.add_parser("show", help="print the effective configuration as JSON")
    show.add_argument("--command", metavar="NAME", help="only this command (e.g. run)")
    show.set_defaults(command_name="config show")


def _plugins_command(commands, selection: Parser) -> None:
    plugins = commands.add_parser(
        "plugins", parents=[selection], help="list installed plugins as JSON",
        description="Print the installed plugins (name, version, hooks) as JSON.",
    )
    plugins.add_argument("--all", action="store_true", help="include the default plugins")
    plugins.set_defaults(command_name="plugins")


def _fake_server_command(commands) -> None:
    fake = commands.add_parser(
        "fake-server",
        help="run the fake AssemblyAI v3 server used in tests",
        description="Serve a transcript script over the AssemblyAI v3 protocol on 127.0.0.1. "
        "The first line printed is the URL to connect to.",
    )
    fake.add_argument("--script", required=True, help="transcript script (JSON), e.g. fixtures/meeting.json")
    fake.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    fake.add_argument("--port", type=_port, default=0, help="port (default 0: a free one)")
    fake.add_argument("--reply-delay-ms", type=float, default=0, metavar="MS", help="delay every reply")
    fake.set_defaults(command_name="fake-server")


@dataclass(frozen=True)
class SessionOption:
    """A command-line option that is a session parameter: where its value goes."""

    flag: str
    field: str  # a SessionParams field, or "extra:KEY" for a parameter the codec passes on as it is
    options: dict = field(default_factory=dict)  # argparse's add_argument keywords

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def _terms(text: str) -> tuple[str, ...]:
    return tuple(term.strip() for term in text.split(",") if term.strip())


SESSION_OPTIONS = (
    SessionOption("--format-turns", "format_turns", dict(action="store_true", help="ask for punctuated, cased finals")),
    SessionOption("--keyterms", "keyterms_prompt", dict(
        type=_terms, metavar="WORD[,WORD...]",
        help="names and terms the service should expect (v3 keyterms_prompt, v2 word_boost)")),
    SessionOption("--language", "extra:language_codes", dict(
        type=lambda code: [code], metavar="CODE", help="the spoken language, e.g. es (v3 language_codes)")),
    SessionOption("--speech-model", "extra:speech_model", dict(metavar="NAME", help="e.g. universal-streaming-multilingual")),
    SessionOption("--speaker-labels", "speaker_labels", dict(action="store_true", help="ask the service to label speakers")),
    SessionOption("--min-turn-silence", "min_turn_silence", dict(
        type=_positive_int, metavar="MS", help=f"silence that may end a turn (service default {v3.MIN_TURN_SILENCE_MS})")),
    SessionOption("--max-turn-silence", "max_turn_silence", dict(
        type=_positive_int, metavar="MS", help=f"silence that always ends a turn (service default {v3.MAX_TURN_SILENCE_MS})")),
)


def session_params(args: argparse.Namespace) -> SessionParams:
    """The session parameters the options ask for."""
    fields: dict = {"sample_rate": args.sample_rate}
    extra: dict = {}
    for option in SESSION_OPTIONS:
        value = getattr(args, option.dest)
        if value in (None, False):
            continue
        if option.field.startswith("extra:"):
            extra[option.field.partition(":")[2]] = value
        else:
            fields[option.field] = value
    return SessionParams(**fields, extra=extra)


def _service_parser() -> Parser:
    """Options of the commands that caption: which service, and the session's settings."""
    parser = Parser(add_help=False)
    service = parser.add_argument_group("service")
    service.add_argument(
        "--url", default=os.environ.get("CAPTIONER_URL"),
        help=f"streaming server (env CAPTIONER_URL); without it, AssemblyAI ({v3.DEFAULT_URL}) "
        "when ASSEMBLYAI_API_KEY is set, else the embedded offline recognizer",
    )
    service.add_argument("--protocol", default=v3.NAME, choices=sorted(CODECS), help="wire protocol (default v3)")
    service.add_argument("--sample-rate", type=_sample_rate, default=DEFAULT_SAMPLE_RATE, metavar="HZ",
                         help=f"session sample rate; audio is resampled to it (default {DEFAULT_SAMPLE_RATE})")
    service.add_argument("--chunk-ms", type=_chunk_ms, default=DEFAULT_CHUNK_MS, metavar="MS",
                         help=f"audio per message, 50 to 1000 (default {DEFAULT_CHUNK_MS})")
    service.add_argument("--token", default=os.environ.get("ASSEMBLYAI_TOKEN"),
                         help="a temporary token ('captioner token') instead of the API key (env ASSEMBLYAI_TOKEN)")
    for option in SESSION_OPTIONS:
        service.add_argument(option.flag, **option.options)
    service.add_argument("--max-reconnects", type=_non_negative_int, default=10, metavar="N",
                         help="reconnect attempts in a row before giving up (default 10; 0: never reconnect)")
    service.add_argument("--resend-seconds", type=_positive_float, default=60.0, metavar="S",
                         help="audio kept to resend after a drop, and held through an outage (default 60)")
    service.add_argument("--terminate-timeout", type=_positive_float, default=10.0, metavar="S",
                         help="at the end, how long the server may stay silent, and reconnecting for the "
                         "last finals may take, before captioner gives up on them (default 10)")
    return parser


def _recognizer_parser(hooks: PluginHooks, command: str) -> Parser:
    parser = Parser(add_help=False)
    group = parser.add_argument_group("local recognizer")
    names = ", ".join(sorted(registered_recognizers(hooks))) or "none installed"
    if command != "serve":
        group.add_argument("--offline", action="store_true",
                           help="caption with the embedded recognizer even when ASSEMBLYAI_API_KEY is set")
    group.add_argument("--recognizer", default=DEFAULT_RECOGNIZER, metavar="NAME",
                       help=f"offline recognizer: {names} (default {DEFAULT_RECOGNIZER})")
    group.add_argument("--decode-workers", type=_positive_int, metavar="N",
                       help="decoding threads, each with its own model (default: 2, or 1 on one core; "
                       "1 in each process of serve --workers over 1)")
    return parser


def _with_plugin_options(hooks: PluginHooks, command: str, core: list) -> Parser:
    """`command`'s core options plus those plugins add through add_options.

    Built on the core options, so an option a plugin adds twice or takes from the core
    fails here, naming the plugin.
    """
    parser = Parser(add_help=False, parents=core)
    hooks.add_options(parser, command)
    return parser
