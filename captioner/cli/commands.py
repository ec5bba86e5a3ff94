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
import urllib.error
import urllib.request
from dataclasses import replace
from typing import Sequence
from urllib.parse import urlencode, urlsplit, urlunsplit

import pluggy

from .. import __version__
from ..audio.pcm import DEFAULT_CHUNK_MS, DEFAULT_SAMPLE_RATE
from ..audio.replay import WavReplaySource
from ..client.engine import Engine
from ..errors import AudioError, AuthError, CaptionerError, ConnectionFailed, UsageError
from ..plugins.manager import blamed_on, build_plugin_manager, configure_plugins, describe_plugins
from ..errors import ProtocolError
from ..protocol import CODECS, codec, v3
from ..protocol.messages import ForceEndpoint, SessionParams, UpdateConfiguration
from ..client.reconnect import ReconnectPolicy
from ..client.session import SessionTimeouts
from . import config_file as config_files
from ..plugins.dispatch import EventBus
from ..server.embedded import EmbeddedServer
from .keyboard import KeyboardControls
from ..outputs import OutputFiles
from ..audio.microphone import MicrophoneSource, list_input_devices
from ..server.recognizer import Recognizer, load_recognizer, registered_recognizers
from ..settings import Config, Secret, Settings, find_api_key
from ..urls import is_local, is_loopback_host, redact_url


DEFAULT_RECOGNIZER = "moonshine"
DEFAULT_MAX_TURN_SILENCE = 1280  # the service's documented default, when none was set


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


def run(argv: list[str]) -> int:
    argv = attach_opaque_values(argv)
    early = _plugin_selection_parser(add_help=False).parse_known_args(argv)[0]
    pm = build_plugin_manager(modules=early.plugins or (), disabled=early.disabled or ())
    parser = build_parser(pm)
    commands = parser._subparsers._group_actions[0].choices
    config_file = config_files.find_config(early.config)
    if config_file is not None:
        config_files.apply(commands, config_file)
    args = parser.parse_args(argv)
    args.config_file, args.commands = config_file, commands
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
    parser.add_argument(
        "--config", metavar="PATH",
        help="a TOML file of option defaults (default: $CAPTIONER_CONFIG, else ~/.config/captioner/config.toml)",
    )
    return parser


def build_parser(pm: pluggy.PluginManager) -> argparse.ArgumentParser:
    parser = Parser(
        prog="captioner",
        parents=[_plugin_selection_parser(add_help=False)],  # also before the command: captioner -p x.py cmd
        description="Live meeting captions from a streaming speech-to-text service.",
        epilog="Environment: ASSEMBLYAI_API_KEY (or a .env file), CAPTIONER_URL, "
        "CAPTIONER_LOAD_PLUGINS, CAPTIONER_TRACE_PLUGINS. Exit codes: docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"captioner {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    selection = _plugin_selection_parser(add_help=False)
    service = _service_parser()

    replay = commands.add_parser(
        "replay",
        parents=[_with_plugin_options(pm, "replay", [selection, service, _recognizer_parser(pm, "replay")])],
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

    run = commands.add_parser(
        "run",
        parents=[_with_plugin_options(pm, "run", [selection, service, _recognizer_parser(pm, "run")])],
        help="caption a live meeting from the microphone",
        description="Capture the microphone and caption it live until Ctrl-C. The first Ctrl-C stops "
        "capture and waits for the last captions; a second quits at once. Keys on a terminal: p pauses "
        "and resumes (sending silence, so the session stays open), e ends the current turn now, "
        "[ and ] shorten and lengthen the silence that ends a turn, q stops.",
    )
    run.add_argument("--device", metavar="INDEX|NAME",
                     help="input device: an index or part of a name from 'captioner devices' (default: the system's)")
    run.add_argument("--duration", type=_positive_float, metavar="S", help="stop after S seconds of audio")
    run.add_argument("--buffer-seconds", type=_positive_float, default=10.0, metavar="S",
                     help="audio held while captioner catches up, before dropping any (default 10)")
    run.set_defaults(command_function=command_run)

    token = commands.add_parser(
        "token", help="create a temporary token for a browser or a shared machine",
        description="Ask the service for a temporary token (GET /v3/token) with ASSEMBLYAI_API_KEY and "
        "print it; use it with --token or ASSEMBLYAI_TOKEN instead of the key.",
    )
    token.add_argument("--expires", type=_positive_int, default=60, metavar="S",
                       help="seconds the token stays valid for starting a session (1 to 600, default 60)")
    token.add_argument("--url", default=os.environ.get("CAPTIONER_URL"),
                       help=f"the streaming server (default {v3.DEFAULT_URL})")
    token.set_defaults(command_function=command_token)

    devices = commands.add_parser(
        "devices", help="list the input devices captioner can record from",
        description="List input-capable devices (index, name, host API, channels, default rate); "
        "the system default is marked.",
    )
    devices.add_argument("--json", action="store_true", help="print JSON")
    devices.add_argument("--all", action="store_true",
                         help="also the copies of each device that other host APIs (JACK, OSS, ...) list")
    devices.set_defaults(command_function=command_devices)

    serve = commands.add_parser(
        "serve",
        parents=[_with_plugin_options(pm, "serve", [selection, _recognizer_parser(pm, "serve")])],
        help="serve a local recognizer over the AssemblyAI v3 protocol",
        description="Run an offline recognizer behind the AssemblyAI Universal Streaming v3 protocol, "
        "on /v3/ws, for captioner or any AssemblyAI client. The first line printed is its URL.",
    )
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; another address needs CAPTIONER_SERVER_KEY)")
    serve.add_argument("--port", type=_port, default=8765, help="port (default 8765; 0: a free one)")
    serve.set_defaults(command_function=command_serve)

    config = commands.add_parser(
        "config", parents=[selection], help="show the effective configuration",
        description="Show the configuration in effect: the option defaults after the config file and the "
        "environment, for each command, with secrets masked.",
    )
    config_actions = config.add_subparsers(dest="config_action", required=True, metavar="ACTION", parser_class=Parser)
    show = config_actions.add_parser("show", help="print the effective configuration as JSON")
    show.add_argument("--command", metavar="NAME", help="only this command (e.g. run)")
    show.set_defaults(command_function=command_config_show)

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

    for impl in pm.hook.register_commands.get_hookimpls():
        with blamed_on(impl.plugin_name, "add its commands"):
            impl.function(commands=commands)
    return parser


def _service_parser() -> argparse.ArgumentParser:
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
    service.add_argument("--format-turns", action="store_true", help="ask for punctuated, cased finals")
    service.add_argument("--keyterms", metavar="WORD[,WORD...]",
                         help="names and terms the service should expect (v3 keyterms_prompt, v2 word_boost)")
    service.add_argument("--language", metavar="CODE", help="the spoken language, e.g. es (v3 language_codes)")
    service.add_argument("--speech-model", metavar="NAME", help="e.g. universal-streaming-multilingual")
    service.add_argument("--speaker-labels", action="store_true", help="ask the service to label speakers")
    service.add_argument("--min-turn-silence", type=_positive_int, metavar="MS",
                         help="silence that may end a turn (service default 400)")
    service.add_argument("--max-turn-silence", type=_positive_int, metavar="MS",
                         help="silence that always ends a turn (service default 1280)")
    service.add_argument("--max-reconnects", type=_non_negative_int, default=10, metavar="N",
                         help="reconnect attempts in a row before giving up (default 10; 0: never reconnect)")
    service.add_argument("--resend-seconds", type=_positive_float, default=60.0, metavar="S",
                         help="audio kept to resend after a drop, and held through an outage (default 60)")
    service.add_argument("--terminate-timeout", type=_positive_float, default=10.0, metavar="S",
                         help="at the end, how long the server may stay silent, and reconnecting for the "
                         "last finals may take, before captioner gives up on them (default 10)")
    return parser


def _recognizer_parser(pm: pluggy.PluginManager, command: str) -> argparse.ArgumentParser:
    parser = Parser(add_help=False)
    group = parser.add_argument_group("local recognizer")
    names = ", ".join(sorted(registered_recognizers(pm))) or "none installed"
    if command != "serve":
        group.add_argument("--offline", action="store_true",
                           help="caption with the embedded recognizer even when ASSEMBLYAI_API_KEY is set")
    group.add_argument("--recognizer", default=DEFAULT_RECOGNIZER, metavar="NAME",
                       help=f"offline recognizer: {names} (default {DEFAULT_RECOGNIZER})")
    group.add_argument("--decode-workers", type=_positive_int, metavar="N",
                       help="decoding threads, each with its own model (default: 2, or 1 on one core)")
    return parser


def _with_plugin_options(pm: pluggy.PluginManager, command: str, core: list) -> argparse.ArgumentParser:
    """`command`'s core options plus those plugins add through add_options.

    Built on the core options, so an option a plugin adds twice or takes from the core
    fails here, naming the plugin.
    """
    parser = Parser(add_help=False, parents=core)
    for impl in pm.hook.add_options.get_hookimpls():
        group = parser.add_argument_group(f"plugin {impl.plugin_name}")
        arguments = {"parser": group, "command": command}
        with blamed_on(impl.plugin_name, "add its options"):
            impl.function(**{name: arguments[name] for name in impl.argnames})
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The session settings; `url` is empty when the embedded recognizer is to be used.
    Called before the audio source is opened: a mistyped URL is the first thing said."""
    _check_url(args.url, args.protocol)
    token = Secret(args.token.strip()) if args.token and args.token.strip() else None
    credential = token or find_api_key()
    if args.url and args.offline:
        raise UsageError("--offline and --url contradict each other: choose one")
    if args.url:
        url, backend = args.url, ""
    elif credential is not None and not args.offline:
        url, backend = codec(args.protocol).DEFAULT_URL, "AssemblyAI"
    else:
        why = "--offline" if args.offline else "no ASSEMBLYAI_API_KEY"
        url, backend = "", f"the embedded {args.recognizer} recognizer (offline: {why})"
    keyterms = tuple(term.strip() for term in (args.keyterms or "").split(",") if term.strip())
    return Settings(
        url=url,
        backend=backend,
        credential_is_token=token is not None,
        keyterms=keyterms,
        language=args.language,
        speech_model=args.speech_model,
        protocol=args.protocol,
        credential=credential,
        sample_rate=args.sample_rate,
        chunk_ms=args.chunk_ms,
        format_turns=args.format_turns,
        speaker_labels=args.speaker_labels,
        min_turn_silence=args.min_turn_silence,
        max_turn_silence=args.max_turn_silence,
        timeouts=replace(SessionTimeouts(), terminate=args.terminate_timeout),
        reconnect=ReconnectPolicy(max_attempts=args.max_reconnects),
        resend_seconds=args.resend_seconds,
    )


def _check_url(url: str | None, protocol: str) -> None:
    """A mistyped --url (or CAPTIONER_URL) is one line naming where it came from."""
    if not url:
        return
    try:
        codec(protocol).connect_url(url, SessionParams(sample_rate=DEFAULT_SAMPLE_RATE))
    except ProtocolError as error:
        where = "CAPTIONER_URL" if url == os.environ.get("CAPTIONER_URL") else "--url"
        raise UsageError(f"{where}: {error}") from None


def command_replay(args: argparse.Namespace, pm: pluggy.PluginManager) -> int:
    settings = settings_from_args(args)
    source = WavReplaySource(
        args.file, sample_rate=args.sample_rate, chunk_ms=args.chunk_ms, speed=None if args.fast else args.speed
    )
    if settings.url and args.fast and not is_local(settings.url):
        raise UsageError("--fast sends audio faster than real time, which the real service refuses (4029); "
                         "use --speed 1 or a local server")
    start_captioning("replay", args, pm, settings, source, inputs=[args.file])
    return 0


def start_captioning(command: str, args: argparse.Namespace, pm, settings: Settings, source, inputs=()) -> None:
    events = EventBus()
    outputs = OutputFiles(inputs)
    outputs.claim_options(args.commands[command], args)
    config = Config(command, _options(args), pm, settings, events, outputs=outputs)
    recognizer = None if settings.url else load_recognizer(pm, args.recognizer, config)
    configure_plugins(pm, config)
    asyncio.run(caption(settings, pm, source, recognizer, args.decode_workers, events))


def command_run(args: argparse.Namespace, pm: pluggy.PluginManager) -> int:
    settings = settings_from_args(args)
    source = MicrophoneSource(
        args.device, sample_rate=args.sample_rate, chunk_ms=args.chunk_ms,
        duration=args.duration, buffer_seconds=args.buffer_seconds,
    )
    start_captioning("run", args, pm, settings, source)
    return 0


def command_config_show(args: argparse.Namespace, pm: pluggy.PluginManager) -> int:
    names = [args.command] if args.command else sorted(n for n in args.commands if n != "config")
    shown: dict = {"config_file": str(args.config_file) if args.config_file else None}
    for name in names:
        parser = args.commands.get(name)
        if parser is None:
            raise UsageError(f"--command {name}: no such command")
        options = {}
        for action in parser._actions:
            if not action.option_strings or action.dest in ("help", "plugins", "disabled", "config"):
                continue
            value = parser.get_default(action.dest)
            if action.dest in config_files.SECRET_KEYS and value:
                value = "***"
            options[action.dest] = value
        shown[name] = options
    secrets = {"ASSEMBLYAI_API_KEY": "***" if find_api_key() else None}
    shown["environment"] = secrets
    print(json.dumps(shown, indent=2, default=str))
    return 0


def command_token(args: argparse.Namespace, pm: pluggy.PluginManager) -> int:
    _check_url(args.url, v3.NAME)
    key = find_api_key()
    if key is None:
        raise UsageError("a token is made with the API key: set ASSEMBLYAI_API_KEY (environment or .env)")
    if not 1 <= args.expires <= 600:
        raise UsageError("--expires takes 1 to 600 seconds")
    print(create_token(args.url or v3.DEFAULT_URL, key, args.expires))
    return 0


def create_token(streaming_url: str, key: Secret, expires: int) -> str:
    """GET <host>/v3/token?expires_in_seconds=N with the key, as the official SDK does."""
    parts = urlsplit(streaming_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    url = urlunsplit((scheme, parts.netloc, "/v3/token", urlencode({"expires_in_seconds": expires}), ""))
    where = redact_url(urlunsplit((scheme, parts.netloc, "/v3/token", "", "")))
    request = urllib.request.Request(url, headers={"Authorization": key.reveal()})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise AuthError(f"{where} refused the API key (HTTP {error.code}); check ASSEMBLYAI_API_KEY") from None
        raise ConnectionFailed(f"{where} answered HTTP {error.code}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        raise ConnectionFailed(f"cannot reach {where}: {reason}") from None
    except ValueError:
        raise ConnectionFailed(f"{where} answered something that is not JSON") from None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ConnectionFailed(f"{where} answered without a token")
    return token


def command_devices(args: argparse.Namespace, pm: pluggy.PluginManager) -> int:
    devices = list_input_devices(all_host_apis=args.all)
    if args.json:
        print(json.dumps([device.__dict__ for device in devices], indent=2))
    elif not devices:
        raise AudioError("no input devices found: PortAudio sees no microphone on this machine")
    else:
        for device in devices:
            print(device.describe())
    return 0


def _options(args: argparse.Namespace) -> dict:
    return {key: value for key, value in vars(args).items() if key != "command_function"}


async def caption(
    settings: Settings, pm, source, recognizer: Recognizer | None, workers: int | None, events: EventBus
) -> None:
    """Caption `source`, through an embedded recognizer server when one is given."""
    if recognizer is None:
        await caption_until_stopped(Engine(settings, pm, events), source)
        return
    async with EmbeddedServer(recognizer, workers=workers) as server:
        await caption_until_stopped(Engine(replace(settings, url=server.base_url), pm, events), source)


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

    def toggle_pause() -> None:
        if source.paused:
            source.resume()
        else:
            source.pause()

    def change_silence(step: int) -> None:
        current = engine.current_settings.max_turn_silence or DEFAULT_MAX_TURN_SILENCE
        wanted = max(160, min(5000, current + step))
        engine.control(UpdateConfiguration({"max_turn_silence": wanted}))
        print(f"captioner: turns now end after {wanted} ms of silence at most", file=sys.stderr, flush=True)

    keys = {
        "q": on_signal,
        "e": lambda: engine.control(ForceEndpoint()),  # end the current turn now
        "[": lambda: change_silence(-200),  # shorter pauses end turns
        "]": lambda: change_silence(+200),
    }
    if hasattr(source, "pause"):
        keys.update({"p": toggle_pause, " ": toggle_pause})
    for signum in signals:
        loop.add_signal_handler(signum, on_signal)
    try:
        with KeyboardControls(keys):
            await engine.caption(source)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def command_serve(args: argparse.Namespace, pm: pluggy.PluginManager) -> int:
    key = os.environ.get("CAPTIONER_SERVER_KEY") or None
    if not is_loopback_host(args.host) and key is None:
        raise UsageError(
            f"--host {args.host} is reachable from other machines: set CAPTIONER_SERVER_KEY, "
            "which clients then send as their API key (ASSEMBLYAI_API_KEY)"
        )
    config = Config("serve", _options(args), pm, None)
    recognizer = load_recognizer(pm, args.recognizer, config)
    configure_plugins(pm, config)

    server = EmbeddedServer(recognizer, host=args.host, port=args.port, api_key=key, workers=args.decode_workers)
    return _serve_until_interrupted(
        server, f"captioner: serving the {args.recognizer} recognizer with {server.pool.workers} decoding "
        "thread(s); Ctrl-C stops"
    )


def command_plugins(args: argparse.Namespace, pm: pluggy.PluginManager) -> int:
    print(json.dumps(describe_plugins(pm, include_defaults=args.all), indent=2))
    return 0


def command_fake_server(args: argparse.Namespace, pm: pluggy.PluginManager) -> int:
    from ..testing import FakeStreamingServer, ScriptError, TranscriptScript

    try:
        script = TranscriptScript.load(args.script)
    except ScriptError as error:
        raise UsageError(str(error)) from None

    server = FakeStreamingServer(script, host=args.host, port=args.port, reply_delay_ms=args.reply_delay_ms,
                                 reference=script.reference_audio())
    return _serve_until_interrupted(server)


def _serve_until_interrupted(server, announcement: str | None = None) -> int:
    """Start `server`, print its URL (the first line of stdout, for scripts), serve until Ctrl-C."""

    async def serve() -> None:
        try:
            await server.start()
        except OSError as error:
            raise UsageError(f"cannot listen on {server.host}:{server.port}: {_reason(error)}") from None
        print(server.url, flush=True)
        if announcement:
            print(announcement, file=sys.stderr, flush=True)
        try:
            await asyncio.Future()  # until interrupted
        finally:
            await server.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


def _reason(error: OSError) -> str:
    """"Address already in use" rather than asyncio's wording around it."""
    return os.strerror(error.errno) if error.errno else str(error)


def _whole_number(minimum: int, condition: str):
    """An argparse type: a whole number of at least `minimum`, else one line saying so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {condition}: {text}")
        return value

    return parse


_positive_int = _whole_number(1, "positive")
_non_negative_int = _whole_number(0, "0 or more")


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
