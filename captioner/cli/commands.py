"""The `captioner` commands: each gets its parsed options and the plugin manager.

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
from typing import Callable, Sequence

import pluggy

from ..audio.meeting import list_meeting_outputs, open_meeting_audio
from ..audio.microphone import MicrophoneSource, list_input_devices
from ..audio.replay import WavReplaySource
from ..client.settings import Secret, Settings, find_api_key
from ..client.reconnect import ReconnectPolicy
from ..client.session import SessionTimeouts
from ..client.token import create_token
from ..config import Config
from ..errors import AudioError, CaptionerError, ProtocolError, UsageError
from ..outputs import OutputFiles
from ..plugins.hooks import PluginHooks
from ..plugins.manager import build_plugin_manager, describe_plugins
from ..protocol import codec, v3
from ..protocol.messages import SessionParams
from ..runner import meeting_engine, prepare_meeting
from ..server.embedded import EmbeddedServer
from ..server.handover import Handover
from ..server.recognizer import load_recognizer, recognizer_registration
from ..server.streaming import server_url
from ..server.workers import Supervisor, listening_socket
from ..urls import is_local, is_loopback_host
from . import config_file as config_files
from .live import caption_until_stopped
from .parser import attach_opaque_values, build_parser, plugin_selection_parser, session_params, subcommands


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
    args, pm = parse(argv)
    function = getattr(args, "command_function", None) or COMMANDS[args.command_name]
    return function(args, pm)


def parse(argv: list[str]) -> tuple[argparse.Namespace, pluggy.PluginManager]:
    """The command line (with the config file and the plugins it selects) and the plugins."""
    argv = attach_opaque_values(argv)
    early = plugin_selection_parser(add_help=False).parse_known_args(argv)[0]
    pm = build_plugin_manager(modules=early.plugins or (), disabled=early.disabled or ())
    parser = build_parser(PluginHooks(pm))
    commands = subcommands(parser)
    config_file = config_files.find_config(early.config)
    if config_file is not None:
        config_files.apply(commands, config_file)
    args = parser.parse_args(argv)
    args.config_file, args.commands, args.argv = config_file, commands, argv
    return args, pm


# ---------------------------------------------------------------- captioning


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The client's settings; `url` is empty when the embedded recognizer is to be used.
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
    return Settings(
        url=url,
        backend=backend,
        protocol=args.protocol,
        credential=credential,
        credential_is_token=token is not None,
        session=session_params(args),
        chunk_ms=args.chunk_ms,
        timeouts=SessionTimeouts(terminate=args.terminate_timeout),
        reconnect=ReconnectPolicy(max_attempts=args.max_reconnects),
        resend_seconds=args.resend_seconds,
    )


def _check_url(url: str | None, protocol: str) -> None:
    """A mistyped --url (or CAPTIONER_URL) is one line naming where it came from."""
    if not url:
        return
    try:
        codec(protocol).connect_url(url, SessionParams())
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
    _caption("replay", args, pm, settings, {"mic": source}, inputs=[args.file])
    return 0


def command_run(args: argparse.Namespace, pm: pluggy.PluginManager) -> int:
    if args.no_mic and args.meeting_audio is None:
        raise UsageError("--no-mic captions the meeting audio alone: give --meeting-audio too")
    settings = replace(settings_from_args(args), channel_labels={"mic": args.mic_label, "meeting": args.meeting_label})
    sources = {}
    if not args.no_mic:
        sources["mic"] = MicrophoneSource(
            args.device, sample_rate=args.sample_rate, chunk_ms=args.chunk_ms,
            duration=args.duration, buffer_seconds=args.buffer_seconds,
        )
    if args.meeting_audio is not None:
        sources["meeting"] = open_meeting_audio(
            args.meeting_audio, sample_rate=args.sample_rate, chunk_ms=args.chunk_ms,
            duration=args.duration, buffer_seconds=args.buffer_seconds,
        )
    _caption("run", args, pm, settings, sources)
    return 0


def _caption(command: str, args: argparse.Namespace, pm, settings: Settings, sources, inputs=()) -> None:
    outputs = OutputFiles(inputs)
    options = _options(args)
    outputs.claim_options(args.commands[command], options)  # before any plugin opens a file
    prepared = prepare_meeting(command, options, pm, settings, outputs=outputs)

    async def caption() -> None:
        async with meeting_engine(prepared) as engine:
            await caption_until_stopped(engine, sources)

    asyncio.run(caption())


def _options(args: argparse.Namespace) -> dict:
    return {key: value for key, value in vars(args).items() if key not in ("command_function", "commands")}


# ---------------------------------------------------------------- the other commands


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


def command_devices(args: argparse.Namespace, pm: pluggy.PluginManager) -> int:
    """Microphones (PortAudio inputs) and meeting-audio sources (outputs whose sound can be
    captioned), each with its kind; the defaults are marked."""
    microphones = list_input_devices(all_host_apis=args.all)
    outputs, no_outputs = [], ""
    try:
        outputs = list_meeting_outputs() if sys.platform.startswith("linux") else []
    except AudioError as error:  # no sound server: the microphones are still worth listing
        no_outputs = str(error)
    if not microphones and not outputs:
        raise AudioError("no input devices found: PortAudio sees no microphone on this machine"
                         + (f", and {no_outputs}" if no_outputs else ""))
    if args.json:
        listed = [{"kind": "microphone", **vars(device)} for device in microphones]
        listed += [{"kind": "meeting", **vars(output)} for output in outputs]
        print(json.dumps(listed, indent=2))
        return 0
    print("microphones (run --device):")
    for device in microphones:
        print(f"  {device.describe()}")
    print("meeting audio, what an output plays (run --meeting-audio):")
    for output in outputs:
        print(f"  {output.describe()}")
    if no_outputs:
        print(f"  none: {no_outputs}")
    return 0


def command_serve(args: argparse.Namespace, pm: pluggy.PluginManager) -> int:
    key = os.environ.get("CAPTIONER_SERVER_KEY") or None
    if not is_loopback_host(args.host) and key is None:
        raise UsageError(
            f"--host {args.host} is reachable from other machines: set CAPTIONER_SERVER_KEY, "
            "which clients then send as their API key (ASSEMBLYAI_API_KEY)"
        )
    workers = args.workers or os.cpu_count() or 1
    if workers == 1:
        server, announcement = _embedded_server(args, pm, key)
        return _serve_until_interrupted(server, announcement, drain_seconds=args.drain_seconds)
    recognizer_registration(PluginHooks(pm), args.recognizer)  # a wrong name is said once, not by every worker
    try:
        sock = listening_socket(args.host, args.port)
    except OSError as error:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {_reason(error)}") from None
    url = server_url(*sock.getsockname()[:2]) + v3.PATH
    announcement = (f"captioner: serving the {args.recognizer} recognizer in {workers} worker processes; "
                    "Ctrl-C stops, SIGTERM drains")
    return Supervisor(serve_worker, args.argv, workers, sock).run(url, announcement)


def serve_worker(argv: list[str], channel, index: int, ready, done) -> None:
    """One worker process of `serve --workers N`: the same command line, serving the
    connections its supervisor hands over. Says it is ready once its models are loaded.
    Stopped while it starts, it has nothing to drain and exits 0."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # until serving replaces it with draining
    try:
        args, pm = parse(argv)
        handover = Handover(channel, done, index)
        server, _ = _embedded_server(args, pm, os.environ.get("CAPTIONER_SERVER_KEY") or None, handover)
        _serve_until_interrupted(server, drain_seconds=args.drain_seconds, started=lambda: ready.put((index, None)),
                                 orphaned=handover.supervisor_gone)
    except KeyboardInterrupt:
        pass
    except CaptionerError as error:  # the supervisor says it, once
        ready.put((index, (error.exit_code, str(error))))
        sys.exit(error.exit_code)


def _embedded_server(args: argparse.Namespace, pm: pluggy.PluginManager, key: str | None,
                     handover: Handover | None = None):
    config = Config("serve", _options(args), pm)
    hooks = PluginHooks(pm)
    recognizer = load_recognizer(hooks, args.recognizer, config)
    hooks.configure(config)
    # Worker processes share the cores: one decoding thread each unless told otherwise.
    threads = args.decode_workers or (1 if handover is not None else None)
    server = EmbeddedServer(recognizer, host=args.host, port=args.port, api_key=key, workers=threads,
                            handover=handover)
    return server, (f"captioner: serving the {args.recognizer} recognizer with {server.pool.workers} decoding "
                    "thread(s); Ctrl-C stops, SIGTERM drains")


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


def _serve_until_interrupted(server, announcement: str | None = None, *, drain_seconds: float = 0,
                             started: Callable[[], None] | None = None, orphaned: asyncio.Event | None = None) -> int:
    """Start `server`, print its URL (the first line of stdout, for scripts), serve until
    Ctrl-C, or until SIGTERM has drained it (a second SIGTERM stops at once). A worker
    drains too once `orphaned` is set (its supervisor is gone)."""

    async def serve() -> None:
        try:
            await server.start()
        except OSError as error:
            raise UsageError(f"cannot listen on {server.host}:{server.port}: {_reason(error)}") from None
        if started is None:
            print(server.url, flush=True)
        else:
            started()
        if announcement:
            print(announcement, file=sys.stderr, flush=True)
        stopped = asyncio.get_running_loop().create_future()
        drained: list[asyncio.Task] = []

        def terminate() -> None:
            if drained:  # the second SIGTERM
                drained[0].cancel()
                return
            drained.append(asyncio.create_task(server.drain(drain_seconds)))
            drained[0].add_done_callback(lambda _: stopped.done() or stopped.set_result(None))

        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminate)
        except NotImplementedError:  # Windows: no SIGTERM to drain on; Ctrl-C still stops
            pass
        if orphaned is not None:
            watch = asyncio.create_task(orphaned.wait())
            watch.add_done_callback(lambda task: task.cancelled() or drained or terminate())
        try:
            await stopped
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


COMMANDS: dict[str, Callable[[argparse.Namespace, pluggy.PluginManager], int]] = {
    "replay": command_replay,
    "run": command_run,
    "token": command_token,
    "devices": command_devices,
    "serve": command_serve,
    "config show": command_config_show,
    "plugins": command_plugins,
    "fake-server": command_fake_server,
}
