"""The caption overlay: through the real command, in a real (headless) browser.

The captioner runs as a subprocess against the fake AssemblyAI server, whose session is
held at a gate until the viewers are connected, so a test sees the meeting from its
first word at any replay speed. Chromium is Debian's (scripts/system-deps.sh), driven
by Playwright; Playwright's own browser download is never used.
"""

from __future__ import annotations

from dataclasses import replace

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from captioner import CaptionError, MeetingSummary, Session, Translation, Turn
from captioner.testing import FakeServerThread, FakeStreamingServer, TranscriptScript, drop_at
from captioner_overlay import parse_address
from captioner_overlay.captions import HISTORY_FINALS, CaptionBoard
from captioner_overlay.server import VIEWER_BUFFER, OverlayServer, OverlayThread, Viewer
from captioner_translate.testing import FakeLibreTranslate

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
SCRIPT = TranscriptScript.load(FIXTURES / "meeting.json")
FORMATTED = [turn.text for turn in SCRIPT.turns]  # the finals with --format-turns
FORMATTED_PLAIN = SCRIPT.finals  # and without
SPEAKERS = [turn.speaker for turn in SCRIPT.turns]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
GUARD = 120  # seconds: only ever a deadlock guard, never what a test measures
TOKEN = "overlay-test-token-0123"

# Installed before the page's own script: a snapshot of what the page shows after every
# change to it, so a test can tell what a viewer saw and in which order.
RECORDER = """
window.__log = [];
document.addEventListener("DOMContentLoaded", () => {
  const text = (node, selector) => node.querySelector(selector)?.textContent ?? null;
  const snapshot = () => {
    const partial = document.querySelector("#partials .partial");
    const style = partial ? getComputedStyle(partial) : null;
    const entry = JSON.stringify({
      finals: [...document.querySelectorAll("#finals .final")].map((item) => ({
        turn: Number(item.dataset.turn), speaker: text(item, ".speaker"), text: text(item, ".text"),
        translation: text(item, ".translation"),
      })),
      partial: !partial ? null : {
        turn: Number(partial.dataset.turn), text: text(partial, ".text"),
        fontStyle: style.fontStyle, opacity: Number(style.opacity),
      },
      state: document.body.dataset.state,
      link: document.body.dataset.link,
      status: document.getElementById("status").hidden ? null : document.getElementById("status").textContent,
    });
    if (window.__log[window.__log.length - 1] !== entry) window.__log.push(entry);
  };
  new MutationObserver(snapshot).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
  snapshot();
});
"""


# --- helpers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class GatedFakeServer(FakeStreamingServer):
    """The fake AssemblyAI server, holding every session until `gate` is set."""

    def __init__(self, script: TranscriptScript, **options):
        super().__init__(script, **options)
        self.gate = threading.Event()

    def conversation(self, websocket):
        conversation = super().conversation(websocket)
        run = conversation.run

        async def gated_run():
            while not self.gate.is_set():
                await asyncio.sleep(0.02)
            await run()

        conversation.run = gated_run
        return conversation


class CaptionerRun:
    """`captioner ARGS` as a subprocess, its output collected line by line as it comes."""

    def __init__(self, *args: str, env: dict | None = None, cwd: Path | None = None):
        environment = {**os.environ, "CAPTIONER_LOAD_PLUGINS": "captioner-overlay,captioner-translate"}
        environment.pop("ASSEMBLYAI_API_KEY", None)
        environment.pop("CAPTIONER_OVERLAY_TOKEN", None)
        environment.update(env or {})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "captioner", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=environment, cwd=cwd,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, lines: list[str]) -> None:
        for line in stream:
            with self._changed:
                lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, what: str, condition) -> None:
        with self._changed:
            if not self._changed.wait_for(condition, timeout=GUARD):
                raise AssertionError(f"timed out waiting for {what}; stderr: {self.stderr}")

    def wait_for_finals(self, count: int) -> None:
        self.wait_for(f"{count} finals on stdout", lambda: len(self.stdout) >= count or self.process.poll() is not None)
        assert len(self.stdout) >= count, f"the run ended with {len(self.stdout)} finals; stderr: {self.stderr}"

    def overlay_url(self) -> str:
        prefix = "captioner: overlay at "
        self.wait_for("the overlay's URL", lambda: any(line.startswith(prefix) for line in self.stderr)
                      or self.process.poll() is not None)
        lines = [line for line in self.stderr if line.startswith(prefix)]
        assert lines, f"no overlay URL; stderr: {self.stderr}"
        return lines[0][len(prefix):].split()[0]

    def finish(self) -> int:
        code = self.process.wait(timeout=GUARD)
        for reader in self._readers:
            reader.join(timeout=GUARD)
        return code

    def __enter__(self) -> CaptionerRun:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=GUARD)


class ReadingViewer:
    """A well-behaved viewer in a thread: reads every message until the server closes."""

    def __init__(self, url: str):
        self.websocket = connect(url, open_timeout=GUARD)
        self.messages: list[dict] = []
        self.close_code: int | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for frame in self.websocket:
                self.messages.append(json.loads(frame))
        except ConnectionClosed:
            pass
        self.close_code = self.websocket.close_code

    def join(self) -> None:
        self._thread.join(timeout=GUARD)
        assert not self._thread.is_alive(), "the viewer's connection was never closed"

    @property
    def finals(self) -> list[str]:
        history = [f["text"] for m in self.messages if m["type"] == "history" for f in m["finals"]]
        return history + [m["text"] for m in self.messages if m["type"] == "final"]

    @property
    def states(self) -> list[str]:
        return [m["state"]["state"] if m["type"] == "history" else m["state"]
                for m in self.messages if m["type"] in ("state", "history")]


def frozen_viewer(port: int) -> socket.socket:
    """A WebSocket viewer that completes the handshake and then never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    sock.settimeout(GUARD)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while not response.endswith(b"\r\n\r\n"):
        response += sock.recv(1)  # one byte at a time: stop exactly where the frames begin
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


class TcpProxy:
    """A TCP relay in front of the overlay: `cut()` drops every connection and stops
    listening, as a network outage would; `restore()` listens on the same port again."""

    def __init__(self, upstream_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.port = free_port()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def restore(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.05)
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while listener is self._listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._relay, args=(source, target), daemon=True).start()

    def _relay(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the relay threads; no WebSocket close frame
            except OSError:
                pass
            sock.close()


def page_log(page) -> list[dict]:
    return [json.loads(entry) for entry in page.evaluate("window.__log")]


def shown(page) -> list[str]:
    return page.eval_on_selector_all("#finals .final .text", "nodes => nodes.map(n => n.textContent)")


def replay_args(wav: Path, url: str, port: int, *extra: str) -> list[str]:
    return ["replay", str(wav), "--url", url, "--overlay", f"127.0.0.1:{port}", *extra]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run scripts/system-deps.sh base"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    opened = context.new_page()
    opened.set_default_timeout(GUARD * 1000)
    opened.add_init_script(RECORDER)
    problems = []
    opened.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    opened.on("console", lambda message: "Content Security Policy" in message.text and problems.append(message.text))
    yield opened
    context.close()
    assert problems == []  # no exception in the page's script, nothing it needs refused


# --- end to end ------------------------------------------------------------------------


def test_the_page_shows_each_partial_then_its_final_in_order_with_translations(page, tmp_path):
    spanish = {text: f"Traducción {index}." for index, text in enumerate(FORMATTED)}
    port = free_port()
    with FakeServerThread(GatedFakeServer(SCRIPT)) as server, FakeLibreTranslate({"es": spanish}) as translator:
        args = replay_args(FIXTURES / "meeting.wav", server.url, port, "--speed", "4", "--format-turns",
                           "--speaker-labels", "--translate", "es", "--translate-url", translator.url)
        with CaptionerRun(*args, env={"CAPTIONER_OVERLAY_TOKEN": TOKEN}) as run:
            url = run.overlay_url()
            assert url == f"http://127.0.0.1:{port}/"
            page.goto(f"{url}?token={TOKEN}&lines=20&size=30&outline=2")
            page.wait_for_selector('body[data-link="up"]')
            server.gate.set()
            page.wait_for_function("() => document.querySelectorAll('#finals .final').length >= 4")
            page.screenshot(path=tmp_path / "overlay-live.png")
            assert run.finish() == 0, run.stderr
        page.wait_for_selector('body[data-state="ended"]')
        page.screenshot(path=tmp_path / "overlay-ended.png")

    finals = page_log(page)[-1]["finals"]
    assert [line["text"] for line in finals] == FORMATTED
    assert [line["speaker"] for line in finals] == SPEAKERS
    assert [line["translation"] for line in finals] == [spanish[text] for text in FORMATTED]
    assert run.stdout == [f"{speaker}: {text}" for speaker, text in zip(SPEAKERS, FORMATTED)]
    assert not [line for line in run.stderr if "warning" in line or "error" in line]

    log = page_log(page)
    # Never out of order, never twice: at every moment the page shows the first finals.
    for entry in log:
        assert [line["text"] for line in entry["finals"]] == FORMATTED[: len(entry["finals"])]
    # Each turn was shown in progress (dimmed, italic), then replaced by its final.
    for turn, turn_script in enumerate(SCRIPT.turns):
        partials = [e for e in log if e["partial"] and e["partial"]["turn"] == turn]
        assert partials, f"turn {turn} was never shown in progress"
        assert all(e["partial"]["fontStyle"] == "italic" and e["partial"]["opacity"] < 1 for e in partials)
        assert any(turn_script.plain_text.startswith(e["partial"]["text"]) for e in partials)
        arrival = next(i for i, e in enumerate(log) if len(e["finals"]) > turn)
        assert log[arrival - 1]["partial"] is not None and log[arrival - 1]["partial"]["turn"] == turn
        assert log[arrival]["partial"] is None or log[arrival]["partial"]["turn"] > turn
        assert not any(e["partial"] and e["partial"]["turn"] == turn for e in log[arrival:])
    states = [e["state"] for e in log]
    assert states[0] == "connecting" and "live" in states and states[-1] == "ended"
    assert (tmp_path / "overlay-live.png").stat().st_size > 0 and (tmp_path / "overlay-ended.png").stat().st_size > 0


def test_a_page_cut_off_mid_meeting_reconnects_and_catches_up_from_history(page, tmp_path):
    port = free_port()
    proxy = TcpProxy(port)
    with FakeServerThread(GatedFakeServer(SCRIPT)) as server:
        with CaptionerRun(*replay_args(FIXTURES / "meeting.wav", server.url, port, "--speed", "3")) as run:
            run.overlay_url()
            proxy.restore()
            page.goto(f"http://127.0.0.1:{proxy.port}/?lines=20")
            page.wait_for_selector('body[data-link="up"]')
            page.evaluate("window.__sameDocument = true")
            server.gate.set()
            page.wait_for_function("() => document.querySelectorAll('#finals .final').length >= 2")

            proxy.cut()
            page.wait_for_selector('body[data-link="down"]')
            assert page.is_visible("#status") and "offline" in page.inner_text("#status")
            cut_at = len(shown(page))
            run.wait_for_finals(cut_at + 2)  # the meeting goes on without the page
            assert len(shown(page)) == cut_at  # nothing reached it meanwhile
            page.screenshot(path=tmp_path / "overlay-offline.png")

            proxy.restore()
            page.wait_for_selector('body[data-link="up"]')
            caught_up = shown(page)
            assert len(caught_up) >= cut_at + 2  # the finals it missed, from the history
            assert caught_up == FORMATTED_PLAIN[: len(caught_up)]
            assert page.evaluate("window.__sameDocument") is True  # reconnected, not reloaded
            assert run.finish() == 0, run.stderr
        page.wait_for_selector('body[data-state="ended"]')

    assert shown(page) == FORMATTED_PLAIN  # and live again after that, to the end
    log = page_log(page)
    for entry in log:
        assert [line["text"] for line in entry["finals"]] == FORMATTED_PLAIN[: len(entry["finals"])]
    links = [e["link"] for e in log]
    assert "down" in links[links.index("up"):] and links[-1] in ("up", "down")


def heavy_meeting(tmp_path: Path, long_turns: int = 3, words: int = 60, short_turns: int = 120) -> TranscriptScript:
    """A silent WAV with a script of a few very long turns (big partials, which fill any
    buffer a viewer has) and then many short ones (many finals)."""
    turns, at = [], 300
    for index in range(long_turns):
        spoken = [{"text": f"w{index}x{number:03d}" + "o" * 30, "start": at + 50 * number, "end": at + 50 * number + 40}
                  for number in range(words)]
        turns.append({"speaker": "A", "words": spoken})
        at = spoken[-1]["end"] + 500
    for index in range(short_turns):
        turns.append({"speaker": "B", "words": [{"text": f"short{index:03d}", "start": at, "end": at + 40}]})
        at += 40 + 460
    path = tmp_path / "heavy.json"
    path.write_text(json.dumps({"turns": turns}))
    soundfile.write(tmp_path / "heavy.wav", np.zeros((at + 1000) * 16, dtype=np.int16), 16000, subtype="PCM_16")
    return TranscriptScript.load(path)


def test_a_viewer_that_never_reads_is_dropped_and_holds_up_nobody(tmp_path):
    script = heavy_meeting(tmp_path)
    port = free_port()
    with FakeServerThread(GatedFakeServer(script)) as server:
        with CaptionerRun(*replay_args(tmp_path / "heavy.wav", server.url, port, "--speed", "8")) as run:
            run.overlay_url()
            frozen = frozen_viewer(port)
            healthy = ReadingViewer(f"ws://127.0.0.1:{port}/events")
            server.gate.set()
            assert run.finish() == 0, run.stderr  # the replay completes: nothing waited for the frozen viewer
        healthy.join()
    frozen_port = frozen.getsockname()[1]
    frozen.close()

    assert run.stdout == script.finals  # every final, on time for the terminal
    assert healthy.finals == script.finals  # and for the viewer that reads
    assert healthy.states[-1] == "ended" and healthy.close_code == 1001
    dropped = [line for line in run.stderr if "overlay: disconnected the viewer" in line]
    assert dropped == [f"captioner: warning: overlay: disconnected the viewer at 127.0.0.1:{frozen_port}: "
                       f"it fell {VIEWER_BUFFER} messages behind (the page reconnects by itself)"]


def test_the_page_says_when_the_speech_service_reconnects(tmp_path):
    port = free_port()
    with FakeServerThread(GatedFakeServer(SCRIPT, faults=[drop_at(12_000)])) as server:
        with CaptionerRun(*replay_args(FIXTURES / "meeting.wav", server.url, port, "--fast")) as run:
            run.overlay_url()
            viewer = ReadingViewer(f"ws://127.0.0.1:{port}/events")
            server.gate.set()
            assert run.finish() == 0, run.stderr
        viewer.join()
    assert viewer.states == ["connecting", "live", "reconnecting", "live", "ended"]
    reconnecting = next(m for m in viewer.messages if m.get("state") == "reconnecting")
    assert "dropped without a close frame" in reconnecting["detail"]
    assert viewer.finals == run.stdout and len(run.stdout) >= len(SCRIPT.turns)  # what the captioner printed


# --- bad input -------------------------------------------------------------------------


def test_a_port_in_use_fails_at_start_with_one_line(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with FakeServerThread(FakeStreamingServer(SCRIPT)) as server:
            with CaptionerRun(*replay_args(FIXTURES / "hello.wav", server.url, port, "--fast")) as run:
                assert run.finish() == 2
            assert server.connections == []  # stopped before any audio
    assert run.stderr == [
        f"captioner: error: --overlay 127.0.0.1:{port}: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


@pytest.mark.parametrize("spec, message", [
    ("0.0.0.0:{port}", "--overlay 0.0.0.0:{port}: 0.0.0.0 is reachable from other machines: set "
                       "CAPTIONER_OVERLAY_TOKEN, which viewers then pass as ?token="),
    ("eighty", "--overlay eighty: not a port number: 'eighty' (use [HOST:]PORT)"),
    ("127.0.0.1:70000", "--overlay 127.0.0.1:70000: not a port number (0 to 65535): 70000"),
    ("::1:8080", "--overlay ::1:8080: write an IPv6 address as [ADDRESS]:PORT"),
])
def test_an_address_that_cannot_work_fails_at_start_with_one_line(spec, message):
    port = free_port()
    spec, message = spec.format(port=port), message.format(port=port)
    with FakeServerThread(FakeStreamingServer(SCRIPT)) as server:
        with CaptionerRun("replay", str(FIXTURES / "hello.wav"), "--url", server.url, "--fast", "--overlay", spec) as run:
            assert run.finish() == 2
        assert server.connections == []
    assert run.stderr == [f"captioner: error: {message}"]
    with pytest.raises(OSError):  # and nothing listens there
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_addresses():
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address(":8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    assert parse_address("localhost:0") == ("localhost", 0)


@pytest.fixture
def overlay():
    """An overlay server in-process (its own loop and thread, as in a run), with a few captions."""
    threads = []

    def start(**options) -> OverlayThread:
        thread = OverlayThread(OverlayServer("127.0.0.1", 0, **options))
        thread.start()
        threads.append(thread)
        for order, (speaker, text) in enumerate([("A", "first line"), ("B", "second line")]):
            thread.publish("on_final", turn(order, text, speaker=speaker, final=True))
            thread.publish("on_translation", Translation(turn(order, text, final=True), "es", f"línea {order}"))
        thread.publish("on_partial", turn(2, "third li", speaker="A"))
        return thread

    yield start
    for thread in threads:
        thread.stop(1.0)


def turn(order: int, text: str, speaker: str | None = None, final: bool = False) -> Turn:
    return Turn("session", order, text, (), final, final, order * 1000, order * 1000 + 900, speaker)


def fetch(url: str, **headers) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=GUARD) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_two_sides_of_a_meeting_each_have_a_class_and_a_partial_without_a_stray_colon(overlay, page):
    thread = overlay()
    thread.publish("on_final", replace(turn(3, "we agreed", final=True), channel="meeting", label="Meeting"))
    thread.publish("on_partial", replace(turn(4, "what about", speaker=None), channel="meeting", label=None))
    thread.publish("on_partial", replace(turn(5, "I think", speaker=None), channel="mic", label="You"))
    page.goto(thread.server.url)
    page.wait_for_function("document.querySelectorAll('#partials .partial').length == 2")
    shown = page.evaluate("""() => ({
        final: document.querySelector('#finals .final.channel-meeting').textContent,
        partials: [...document.querySelectorAll('#partials .partial')].map((line) => ({
            classes: line.className, text: line.textContent,
            colon: line.querySelector('.speaker') ? getComputedStyle(line.querySelector('.speaker'), '::after').content : null})),
    })""")
    assert shown["final"] == "Meetingwe agreed"  # the speaker span, then the text (the colon is CSS)
    by_class = {line["classes"]: line for line in shown["partials"]}
    assert by_class["line partial channel-meeting"]["text"] == "what about"  # no speaker: nothing before it
    assert by_class["line partial channel-meeting"]["colon"] is None
    assert by_class["line partial channel-mic"]["text"] == "YouI think" and by_class["line partial channel-mic"]["colon"] == '":"'


def test_unknown_query_parameters_are_ignored(overlay, browser):
    base = overlay().server.url
    looks = {}
    for query in ("size=50&lines=1&lang=es", "size=50&lines=1&lang=es&bogus=1&theme=dark&color=not-a-colour&lines2=9"):
        assert fetch(f"{base}?{query}")[0] == 200
        context = browser.new_context(viewport={"width": 800, "height": 300})
        page = context.new_page()
        page.set_default_timeout(GUARD * 1000)
        page.goto(f"{base}?{query}")
        page.wait_for_selector("#partials .partial")
        looks[query] = page.evaluate("""() => {
            const style = getComputedStyle(document.querySelector('#finals .final .text'));
            return {html: document.getElementById('captions').innerHTML, size: style.fontSize, color: style.color};
        }""")
        context.close()
    plain, noisy = looks.values()
    assert noisy == plain
    assert plain["size"] == "50px" and plain["color"] == "rgb(255, 255, 255)"  # known ones apply, a bad colour does not
    assert plain["html"].count('class="line final channel-mic"') == 1 and "second line" in plain["html"] and "línea 1" in plain["html"]


def test_a_wrong_token_gets_403_and_the_right_one_the_captions(overlay):
    base = overlay(token=TOKEN).server.url
    events = base.replace("http:", "ws:") + "events"
    for query in ("", "?token=wrong", f"?token={TOKEN}x"):
        assert fetch(base + query)[0] == 403
        assert fetch(base + "overlay.js" + query)[0] == 403
        with pytest.raises(InvalidStatus) as refused:
            connect(events + query, open_timeout=GUARD).close()
        assert refused.value.response.status_code == 403
    status, html = fetch(f"{base}?token={TOKEN}")
    assert status == 200 and f'overlay.js?token={TOKEN}"' in html  # the assets are asked for with it
    assert fetch(f"{base}overlay.js?token={TOKEN}")[0] == 200
    with connect(f"{events}?token={TOKEN}", open_timeout=GUARD) as viewer:
        history = json.loads(viewer.recv(timeout=GUARD))
    assert [f["text"] for f in history["finals"]] == ["first line", "second line"]


def test_other_sites_and_host_names_are_refused_without_a_token(overlay):
    server = overlay().server
    base, events = server.url, f"ws://127.0.0.1:{server.port}/events"
    assert fetch(base)[0] == 200
    assert fetch(base, Host=f"localhost:{server.port}")[0] == 200
    assert fetch(base, Host=f"attacker.example:{server.port}")[0] == 403  # DNS rebinding
    with pytest.raises(InvalidStatus) as refused:
        connect(events, origin="http://attacker.example", open_timeout=GUARD).close()
    assert refused.value.response.status_code == 403
    with connect(events, origin=f"http://127.0.0.1:{server.port}", open_timeout=GUARD) as viewer:
        assert json.loads(viewer.recv(timeout=GUARD))["type"] == "history"
    assert fetch(base + "nothing-here")[0] == 404


# --- the parts, without sockets ----------------------------------------------------------


def test_the_board_keeps_recent_finals_with_translations_and_the_partial():
    board = CaptionBoard(history=3)
    for order in range(5):
        board.on_partial(turn(order, f"words {order}"))
        board.on_final(turn(order, f"final {order}", final=True))
        board.on_translation(Translation(turn(order, f"final {order}", final=True), "es", f"final {order} es"))
    board.on_partial(turn(5, "in progress"))
    snapshot = board.snapshot()
    assert [(f["turn"], f["text"], f["translations"]) for f in snapshot["finals"]] == [
        (order, f"final {order}", {"es": f"final {order} es"}) for order in (2, 3, 4)
    ]
    (partial,) = snapshot["partials"]
    assert partial["text"] == "in progress" and snapshot["languages"] == ["es"]
    board.on_final(turn(5, "done", final=True))
    assert board.snapshot()["partials"] == []  # the final replaced it
    assert CaptionBoard().finals.maxlen == HISTORY_FINALS


def test_the_board_tells_the_session_state():
    board = CaptionBoard()
    assert board.snapshot()["state"]["state"] == "connecting"
    session = Session("s", "v3", "ws://x", 16000, started_at=None)  # type: ignore[arg-type]
    assert board.on_session_begin(session)["state"] == "live"
    assert board.on_error(CaptionError("plugin", "a plugin failed", fatal=False)) is None
    assert board.on_error(CaptionError("connection", "dropped", fatal=False)) == {
        "type": "state", "state": "reconnecting", "detail": "dropped"}
    assert board.on_session_begin(session)["state"] == "live"
    assert board.on_error(CaptionError("auth", "key refused", fatal=True)) is None
    ended = board.on_meeting_end(MeetingSummary((), 1.0, 0, 0))
    assert ended == {"type": "state", "state": "ended", "detail": "key refused"}
    assert board.snapshot()["state"] == ended


def test_a_viewers_outbox_is_bounded_and_keeps_only_the_latest_partial():
    viewer = Viewer(websocket=None, buffer=3)  # type: ignore[arg-type]
    assert viewer.offer("partial", "p1") and viewer.offer("partial", "p2")
    assert list(viewer.outbox) == [("partial", "p2")]
    assert viewer.offer("final", "f1") and viewer.offer("partial", "p3") and viewer.offer("partial", "p4")
    assert list(viewer.outbox) == [("partial", "p2"), ("final", "f1"), ("partial", "p4")]
    assert not viewer.offer("final", "f2")  # full: the viewer is to be dropped
    assert viewer.offer("partial", "p5")  # (a partial still replaces the last one)


def test_each_channel_has_its_own_partial_and_a_partial_replaces_only_its_own_channels():
    board = CaptionBoard()
    board.on_partial(replace(turn(1, "you say", speaker=None), channel="mic", label="You"))
    board.on_partial(replace(turn(2, "they say", speaker="A"), channel="meeting", label="Meeting A"))
    assert [(p["channel"], p["speaker"], p["text"]) for p in board.snapshot()["partials"]] == [
        ("mic", "You", "you say"), ("meeting", "Meeting A", "they say")]
    board.on_final(replace(turn(1, "you said", final=True), channel="mic", label="You"))
    assert [p["channel"] for p in board.snapshot()["partials"]] == ["meeting"]  # the other side still speaks
    viewer = Viewer(websocket=None, buffer=5)  # type: ignore[arg-type]
    viewer.offer("partial:mic", "m1")
    viewer.offer("partial:meeting", "t1")
    viewer.offer("partial:meeting", "t2")
    assert list(viewer.outbox) == [("partial:mic", "m1"), ("partial:meeting", "t2")]
