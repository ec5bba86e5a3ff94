"""The `captioner` command.

Plugins can add options to the captioning commands, so plugins are loaded before the
full parser is built: a first pass reads only `-p` and `--disable-plugin` (as pytest
does for `-p`). Every failure the user can act on ends as one line on stderr and an
exit code from captioner.errors; see docs/cli.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from dataclasses import replace
from typing import Sequence

import pluggy

from . import __version__
from .audio import DEFAULT_CHUNK_MS, DEFAULT_SAMPLE_RATE, WavReplaySource
from .engine import Engine
from .errors import CaptionerError, UsageError
from .plugins import build_plugin_manager, describe_plugins
from .errors import ProtocolError
from .protocol import CODECS, codec, v3
from .session import SessionTimeouts
from .settings import Config, Settings, find_api_key
from .urls import is_local


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line, like every other error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(argv)
    except CaptionerError as error:
        print(f"captioner: error: {error}", file=sys.stderr, flush=True)
        return error.exit_code
    except KeyboardInterrupt:
        print("captioner: interrupted", file=sys.stderr)
        return 130


def run(argv: list[str]) -> int:
    early = _plugin_selection_parser(add_help=False).parse_known_args(argv)[0]
    pm = build_plugin_manager(modules=early.plugins or (), disabled=early.disabled or ())
    args = build_parser(pm).parse_args(argv)
    return args.command_function(args, pm)


def _plugin_selection_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = Parser(add_help=add_help)
    parser.add_argument(
        "-p", dest="plugins", action="append", metavar="MODULE",
        help="load a plugin module (importable name or path to a .py file); repeatable",
    )
    parser.add_argument(
        "--disable-plugin", dest="disabled", action="append", metavar="NAME",
        help="do not load the plugin NAME (see 'captioner plugins --all'); repeatable",
    )
    return parser


def build_parser(pm: pluggy.PluginManager) -> argparse.ArgumentParser:
    parser = Parser(
        prog="captioner",
        description="Live meeting captions from a streaming speech-to-text service.",
        epilog="Environment: ASSEMBLYAI_API_KEY (or a .env file), CAPTIONER_URL, "
        "CAPTIONER_LOAD_PLUGINS, CAPTIONER_TRACE_PLUGINS. Exit codes: docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"captioner {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    selection = _plugin_selection_parser(add_help=False)
    captioning = _captioning_parser(pm)

    replay = commands.add_parser(
        "replay",
        parents=[selection, captioning],
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
    replay.set_defaults(command_function=command_replay)

    plugins = commands.add_parser(
        "plugins", parents=[selection], help="list installed plugins as JSON",
        description="Print the installed plugins (name, version, hooks) as JSON.",
    )
    plugins.add_argument("--all", action="store_true", help="include the default plugins")
    plugins.set_defaults(command_function=command_plugins)

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
    fake.set_defaults(command_function=command_fake_server)
    return parser


def _captioning_parser(pm: pluggy.PluginManager) -> argparse.ArgumentParser:
    """Options shared by the commands that caption, plugins' options included."""
    parser = Parser(add_help=False)
    service = parser.add_argument_group("service")
    service.add_argument(
        "--url", default=os.environ.get("CAPTIONER_URL"),
        help=f"streaming server (default {v3.DEFAULT_URL}; env CAPTIONER_URL)",
    )
    service.add_argument("--protocol", default=v3.NAME, choices=sorted(CODECS), help="wire protocol (default v3)")
    service.add_argument("--sample-rate", type=_sample_rate, default=DEFAULT_SAMPLE_RATE, metavar="HZ",
                         help=f"session sample rate; audio is resampled to it (default {DEFAULT_SAMPLE_RATE})")
    service.add_argument("--chunk-ms", type=_chunk_ms, default=DEFAULT_CHUNK_MS, metavar="MS",
                         help=f"audio per message, 50 to 1000 (default {DEFAULT_CHUNK_MS})")
    service.add_argument("--format-turns", action="store_true", help="ask for punctuated, cased finals")
    service.add_argument("--speaker-labels", action="store_true", help="ask the service to label speakers")
    service.add_argument("--min-turn-silence", type=_positive_int, metavar="MS",
                         help="silence that may end a turn (service default 400)")
    service.add_argument("--max-turn-silence", type=_positive_int, metavar="MS",
                         help="silence that always ends a turn (service default 1280)")
    service.add_argument("--terminate-timeout", type=_positive_float, default=10.0, metavar="S",
                         help="how long to wait for the last finals at the end (default 10)")
    for impl in pm.hook.add_options.get_hookimpls():
        group = parser.add_argument_group(f"plugin {impl.plugin_name}")
        try:
            impl.function(parser=group)
        except Exception as error:
            raise UsageError(
                f"plugin {impl.plugin_name} failed to add its options: {type(error).__name__}: {error}; "
                f"skip it with --disable-plugin {impl.plugin_name}"
            ) from None
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    credential = find_api_key()
    url = args.url
    if not url:
        if credential is None:
            raise UsageError(
                "no ASSEMBLYAI_API_KEY in the environment or .env, and no --url: set the key, "
                "or point --url at a compatible server (e.g. 'captioner fake-server')"
            )
        url = v3.DEFAULT_URL
    return Settings(
        url=url,
        protocol=args.protocol,
        credential=credential,
        sample_rate=args.sample_rate,
        chunk_ms=args.chunk_ms,
        format_turns=args.format_turns,
        speaker_labels=args.speaker_labels,
        min_turn_silence=args.min_turn_silence,
        max_turn_silence=args.max_turn_silence,
        timeouts=replace(SessionTimeouts(), terminate=args.terminate_timeout),
    )


def configure_plugins(pm: pluggy.PluginManager, config: Config) -> None:
    """Call each plugin's `configure`; a UsageError (or a crash) stops before any audio."""
    for impl in pm.hook.configure.get_hookimpls():
        try:
            impl.function(config=config)
        except UsageError:
            raise
        except Exception as error:
            raise UsageError(
                f"plugin {impl.plugin_name} failed to start: {type(error).__name__}: {error}"
            ) from None


def command_replay(args: argparse.Namespace, pm: pluggy.PluginManager) -> int:
    source = WavReplaySource(
        args.file, sample_rate=args.sample_rate, chunk_ms=args.chunk_ms, speed=None if args.fast else args.speed
    )
    settings = settings_from_args(args)
    if args.fast and not is_local(settings.url):
        raise UsageError("--fast sends audio faster than real time, which the real service refuses (4029); "
                         "use --speed 1 or a local server")
    try:
        codec(settings.protocol).connect_url(settings.url, settings.session_params())
    except ProtocolError as error:  # a bad URL fails before plugins create any file
        raise UsageError(str(error)) from None
    options = {key: value for key, value in vars(args).items() if key != "command_function"}
    configure_plugins(pm, Config("replay", options, pm, settings))
    asyncio.run(caption_until_stopped(Engine(settings, pm), source))
    return 0


async def caption_until_stopped(engine: Engine, source) -> None:
    """Caption to the end of the source, or until Ctrl-C / SIGTERM.

    The first signal stops the audio and waits (bounded by --terminate-timeout) for the
    last finals, so the sentence being spoken is not lost; a second one exits at once.
    """
    loop = asyncio.get_running_loop()
    signals = [signal.SIGINT, signal.SIGTERM]
    received = 0

    def on_signal() -> None:
        nonlocal received
        received += 1
        if received == 1:
            print("captioner: stopping; waiting for the last captions (press Ctrl-C again to quit now)",
                  file=sys.stderr, flush=True)
            engine.stop()
        else:
            print("captioner: interrupted", file=sys.stderr, flush=True)
            os._exit(130)

    for signum in signals:
        loop.add_signal_handler(signum, on_signal)
    try:
        await engine.caption(source)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def command_plugins(args: argparse.Namespace, pm: pluggy.PluginManager) -> int:
    print(json.dumps(describe_plugins(pm, include_defaults=args.all), indent=2))
    return 0


def command_fake_server(args: argparse.Namespace, pm: pluggy.PluginManager) -> int:
    from .testing import FakeStreamingServer, ScriptError, TranscriptScript

    try:
        script = TranscriptScript.load(args.script)
    except ScriptError as error:
        raise UsageError(str(error)) from None

    async def serve() -> None:
        server = FakeStreamingServer(script, host=args.host, port=args.port, reply_delay_ms=args.reply_delay_ms)
        try:
            await server.start()
        except OSError as error:
            raise UsageError(f"cannot listen on {args.host}:{args.port}: {error.strerror}") from None
        print(server.url, flush=True)
        try:
            await asyncio.Future()  # until interrupted
        finally:
            await server.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _sample_rate(text: str) -> int:
    value = _positive_int(text)
    if not 8000 <= value <= 48000:
        raise argparse.ArgumentTypeError("the service takes 8000 to 48000 Hz")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0 to 65535): {text}")
    return value


def _chunk_ms(text: str) -> int:
    value = _positive_int(text)
    if not 50 <= value <= 1000:
        raise argparse.ArgumentTypeError("the service takes chunks of 50 to 1000 ms")
    return value
