"""A live caption overlay: a web page for screen sharing and OBS browser sources.

    captioner run --overlay 8080            # then open http://127.0.0.1:8080/
    captioner replay meeting.wav --overlay 127.0.0.1:8080 --translate es

The page shows the turn in progress (dimmed: it may still change) and the last few
finals, each with its translation when there is one; query parameters set its look
(see README.md). Viewers get events over a WebSocket on the same port and, when they
(re)connect, the recent history first, so a late or reconnecting viewer is never blank.

The server runs on its own event loop in its own thread, started in `configure`, so a
port in use stops captioner before any audio, and no viewer can slow the captions down:
this plugin's hooks only hand each event to that loop. It listens on loopback unless
told otherwise; another address needs a token (CAPTIONER_OVERLAY_TOKEN) that viewers
pass as `?token=`.
"""

from __future__ import annotations

import os
import sys

from captioner import UsageError, hookimpl, is_loopback_host

from .server import OverlayServer, OverlayThread, bracketed

__all__ = ["Overlay", "OverlayServer", "parse_address"]

DEFAULT_HOST = "127.0.0.1"
TOKEN_VARIABLE = "CAPTIONER_OVERLAY_TOKEN"
FINISH_SECONDS = 3.0  # at the end, how long viewers get to receive the last captions


@hookimpl
def add_options(parser, command):
    if command == "serve":
        return
    parser.add_argument(
        "--overlay", metavar="[HOST:]PORT",
        help=f"serve a live caption page at http://HOST:PORT/ for screen sharing and OBS (host default "
        f"{DEFAULT_HOST}; another host needs {TOKEN_VARIABLE}, which viewers pass as ?token=)",
    )


@hookimpl
def configure(config):
    spec = config.option("overlay")
    if not spec or config.plugin_manager is None:
        return
    host, port = parse_address(str(spec))
    token = os.environ.get(TOKEN_VARIABLE) or None
    if token is None and not is_loopback_host(host):
        raise UsageError(
            f"--overlay {spec}: {host} is reachable from other machines: set {TOKEN_VARIABLE}, "
            "which viewers then pass as ?token="
        )
    events = config.meeting
    server = OverlayServer(
        host, port, token=token,
        report=(lambda message: events.error(message, plugin="overlay")) if events is not None else None,
    )
    thread = OverlayThread(server)
    try:
        thread.start()
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno and error.errno > 0 else (error.strerror or str(error))
        raise UsageError(f"--overlay {spec}: cannot listen on {bracketed(host)}:{port}: {reason}") from None
    where = server.url + (f" (viewers add ?token= with the value of {TOKEN_VARIABLE})" if token else "")
    print(f"captioner: overlay at {where}", file=sys.stderr, flush=True)
    config.plugin_manager.register(Overlay(thread), name="overlay-server")


def parse_address(spec: str) -> tuple[str, int]:
    """'8080', '0.0.0.0:8080', '[::1]:8080' -> (host, port); the host defaults to loopback."""
    text = spec.strip()
    if text.startswith("["):
        host, separator, port = text[1:].partition("]:")
        if not separator:
            raise UsageError(f"--overlay {spec}: write an IPv6 address as [ADDRESS]:PORT")
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif ":" not in text:
        host, port = "", text
    else:
        raise UsageError(f"--overlay {spec}: write an IPv6 address as [ADDRESS]:PORT")
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f"--overlay {spec}: not a port number: {port!r} (use [HOST:]PORT)") from None
    if not 0 <= number <= 65535:
        raise UsageError(f"--overlay {spec}: not a port number (0 to 65535): {number}")
    return host or DEFAULT_HOST, number


class Overlay:
    """The plugin for one run: hands every event to the overlay's loop, and returns.

    Its event hooks are coroutines, so captioner's dispatcher runs them on its own loop
    with no thread hop: the only cost to captioner is one `call_soon_threadsafe` per event.
    """

    def __init__(self, thread: OverlayThread):
        self.thread = thread

    @hookimpl
    async def on_session_begin(self, session):
        self.thread.publish("on_session_begin", session)

    @hookimpl
    async def on_partial(self, turn):
        self.thread.publish("on_partial", turn)

    @hookimpl
    async def on_final(self, turn):
        self.thread.publish("on_final", turn)

    @hookimpl
    async def on_translation(self, translation):
        self.thread.publish("on_translation", translation)

    @hookimpl
    async def on_error(self, error):
        self.thread.publish("on_error", error)

    @hookimpl
    def on_meeting_end(self, summary):  # plain: it blocks in stop(), so on its worker thread
        self.thread.publish("on_meeting_end", summary)
        # Viewers get the last captions and "ended"; a viewer that cannot take them
        # within FINISH_SECONDS is cut off, well within the dispatcher's 10 s for plugins.
        self.thread.stop(FINISH_SECONDS)
