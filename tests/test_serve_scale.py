"""`captioner serve` for an organisation, through real processes: worker processes on one
port, health, readiness and Prometheus metrics, draining on SIGTERM, and a real nginx in
front of two instances with one drained in the middle of a turn."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from captioner import hookimpl
from captioner.testing import replay_async
from conftest import ROOT, fixture

HANG_GUARD_S = 60  # only against a hang: nothing here is timed


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class Instance:
    """One `captioner serve` process (a supervisor and its workers when --workers > 1)."""

    def __init__(self, *options: str):
        command = [sys.executable, "-m", "captioner", "serve", "--port", "0", *options]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, "CAPTIONER_LOAD_PLUGINS": ""})
        self.url = self.process.stdout.readline().strip()
        assert self.url.startswith("ws://"), self.process.stderr.read()
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def get(self, path: str) -> tuple[int, str]:
        return http_get(self.port, path)

    def metrics(self) -> dict[str, float]:
        status, text = self.get("/metrics")
        assert status == 200
        return {
            sample.name + "".join(f"{{{k}={v}}}" for k, v in sample.labels.items()): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()  # drains: the tests close their sessions first
        return self.process.wait(timeout=HANG_GUARD_S)


@pytest.fixture
def instances():
    started: list[Instance] = []

    def start(*options: str) -> Instance:
        started.append(Instance(*options))
        return started[-1]

    yield start
    for instance in started:
        if instance.process.poll() is None:
            instance.process.kill()
            instance.process.wait()


async def open_session(url: str):
    ws = await connect(f"{url}?sample_rate=16000")
    await ws.send(bytes(3200))
    return ws


def test_two_workers_answer_sessions_and_report_as_one_instance(instances):
    instance = instances("--workers", "2", "--recognizer", "pocketsphinx")
    assert instance.get("/healthz") == (200, "ok\n") and instance.get("/readyz") == (200, "ready\n")

    async def sessions_on_both_workers():
        # An idle worker takes the next connection; open sessions until both have some.
        opened = []
        while len({ws.response.headers["X-Captioner-Worker"] for ws in opened}) < 2 and len(opened) < 12:
            opened.append(await open_session(instance.url))
        return opened

    async def check():
        opened = await sessions_on_both_workers()
        workers = {ws.response.headers["X-Captioner-Worker"] for ws in opened}
        figures = instance.metrics()  # whichever worker answers, the figures are the instance's
        for ws in opened:
            await ws.close()
        return workers, len(opened), figures

    workers, count, figures = asyncio.run(check())
    assert len(workers) == 2 and str(instance.process.pid) not in workers
    for pid in workers:  # both are the supervisor's own worker processes
        status = Path(f"/proc/{pid}/status").read_text()
        assert f"PPid:\t{instance.process.pid}\n" in status
    assert figures["captioner_sessions_active"] == count
    assert figures["captioner_sessions_total{outcome=accepted}"] == count
    assert figures["captioner_draining"] == 0

    # A worker that dies with a session open is replaced, the instance goes on serving,
    # and the dead worker's session no longer counts as open.
    async def held_session():
        return await open_session(instance.url)

    loop = asyncio.new_event_loop()
    held = loop.run_until_complete(held_session())
    killed = int(held.response.headers["X-Captioner-Worker"])
    os.kill(killed, signal.SIGKILL)
    for _ in range(HANG_GUARD_S * 10):
        if len(worker_processes(instance.process.pid) - {killed}) == 2:
            break
        threading.Event().wait(0.1)
    assert len(worker_processes(instance.process.pid) - {killed}) == 2

    async def one_more():
        ws = await open_session(instance.url)
        await ws.close()
        return ws.response.headers["X-Captioner-Worker"]

    assert int(asyncio.run(one_more())) in worker_processes(instance.process.pid)
    assert instance.metrics()["captioner_sessions_active"] == 0
    loop.run_until_complete(held.close())
    loop.close()
    assert instance.stop() == 0


def test_each_connection_goes_to_the_worker_with_the_fewest_open(instances):
    instance = instances("--workers", "2", "--recognizer", "pocketsphinx")

    async def check():
        # Sessions that start together (a meeting's participants, a bench) are spread evenly.
        together = await asyncio.gather(*(open_session(instance.url) for _ in range(8)))
        spread = Counter(ws.response.headers["X-Captioner-Worker"] for ws in together)
        # Once one worker's sessions end, the next sessions go to it, not to the busy one.
        freed = together[0].response.headers["X-Captioner-Worker"]
        for ws in together:
            if ws.response.headers["X-Captioner-Worker"] == freed:
                await ws.close()
        later = [await open_session(instance.url) for _ in range(3)]
        for ws in together + later:
            await ws.close()
        return spread, freed, [ws.response.headers["X-Captioner-Worker"] for ws in later]

    spread, freed, later = asyncio.run(check())
    assert sorted(spread.values()) == [4, 4]
    assert later == [freed] * 3
    assert instance.stop() == 0


def test_workers_whose_supervisor_is_killed_stop_instead_of_lingering(instances):
    instance = instances("--workers", "2", "--recognizer", "pocketsphinx")
    workers = worker_processes(instance.process.pid)
    assert len(workers) == 2
    instance.process.kill()
    instance.process.wait()
    for _ in range(HANG_GUARD_S * 10):
        if not any(map(running, workers)):
            break
        threading.Event().wait(0.1)
    assert [pid for pid in workers if running(pid)] == []


def running(pid: int) -> bool:
    """A process that exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def slow_to_exit_worker(argv, channel, index, ready, done) -> None:
    """A stand-in worker: told to stop, it asks to be released at once, then lingers
    until its supervisor is gone (a real worker's models and threads take a moment)."""
    from captioner.server.handover import RELEASE

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    ready.put((index, None))
    stopping.wait()
    channel.sendall(RELEASE)
    while channel.recv(16):  # the supervisor's answer, then nothing until it exits
        pass


SUPERVISOR = """
import sys
from captioner.server.workers import Supervisor, listening_socket
from test_serve_scale import slow_to_exit_worker
sock = listening_socket("127.0.0.1", 0)
Supervisor(slow_to_exit_worker, [], 2, sock).run(str(sock.getsockname()[1]), "")
"""


def test_once_no_worker_takes_connections_the_port_refuses_at_once():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR], stdout=subprocess.PIPE, text=True, env=env)
    try:
        port = int(supervisor.stdout.readline())
        socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD_S).close()  # served
        supervisor.send_signal(signal.SIGTERM)
        refused = False
        for _ in range(HANG_GUARD_S * 10):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD_S).close()
            except ConnectionRefusedError:
                refused = True
                break
            threading.Event().wait(0.1)
        assert refused and supervisor.poll() is None  # refused while the workers are still exiting
    finally:
        supervisor.kill()
        supervisor.wait()


def worker_processes(pid: int) -> set[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(child) for child in children if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()}


def test_a_server_at_its_session_limit_is_not_ready_and_says_so():
    from captioner.default_plugins.pocketsphinx import PocketSphinxRecognizer
    from captioner.server.embedded import EmbeddedServer
    from captioner.testing import ServerLimits, ServerThread

    with ServerThread(EmbeddedServer(PocketSphinxRecognizer(), limits=ServerLimits(max_sessions=1))) as server:
        async def at_the_limit():
            ws = await open_session(server.url)
            answer = http_get(server.port, "/readyz")
            with pytest.raises(ConnectionClosed) as refused:
                await (await connect(f"{server.url}?sample_rate=16000")).recv()
            await ws.close()
            return answer, refused.value.rcvd.code

        before = http_get(server.port, "/readyz")
        full, refused_code = asyncio.run(at_the_limit())
    assert before == (200, "ready\n") and full == (503, "at capacity\n") and refused_code == 3009


def test_sigterm_drains_then_exits_zero_and_a_second_sigterm_exits_at_once(instances):
    instance = instances("--workers", "2", "--recognizer", "pocketsphinx", "--drain-seconds", "5")
    second = instances("--workers", "1", "--recognizer", "pocketsphinx", "--drain-seconds", "600")
    workers = worker_processes(instance.process.pid)

    async def drain():
        ws = await open_session(instance.url)
        instance.process.send_signal(signal.SIGTERM)
        while (readiness := instance.get("/readyz"))[0] == 200:
            await asyncio.sleep(0.05)
        # The worker without a session has nothing to drain: it exits at once, the other
        # goes on answering until its session is over.
        while all(map(running, workers)):
            await asyncio.sleep(0.05)
        assert instance.get("/readyz") == (503, "draining\n")
        with pytest.raises(ConnectionClosed) as refused:  # a new session: try again, elsewhere
            newcomer = await connect(f"{instance.url}?sample_rate=16000")
            await newcomer.recv()
        with pytest.raises(ConnectionClosed):  # the open one goes on until --drain-seconds, then is closed
            while True:
                await ws.send(bytes(3200))
                await asyncio.sleep(0.1)
        return readiness, refused.value.rcvd.code, ws.close_code

    readiness, refused_code, drained_code = asyncio.run(drain())
    assert readiness == (503, "draining\n")
    assert refused_code == 1013 and drained_code == 1012
    assert instance.process.wait(timeout=HANG_GUARD_S) == 0

    async def hold():
        ws = await open_session(second.url)
        second.process.send_signal(signal.SIGTERM)
        while second.get("/readyz")[0] == 200:
            await asyncio.sleep(0.05)
        second.process.send_signal(signal.SIGTERM)  # the session would have been allowed 600 s
        code = second.process.wait(timeout=HANG_GUARD_S)
        await ws.close()
        return code

    assert asyncio.run(hold()) == 0


# ---------------------------------------------------------------- nginx in front


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def nginx(tmp_path):
    """nginx running docs/deploy/nginx.conf, with `ports` for its two upstreams."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        pytest.fail("nginx is not installed: make setup installs it (scripts/system-deps.sh)")
    processes = []

    def start(first: int, second: int) -> str:
        port = free_port()
        site = (ROOT / "docs" / "deploy" / "nginx.conf").read_text()
        site = site.replace("127.0.0.1:8765", f"127.0.0.1:{first}").replace("127.0.0.1:8766", f"127.0.0.1:{second}")
        site = site.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{port};")
        os.chmod(tmp_path, 0o777)  # nginx's workers may run as nobody
        temp = "\n".join(f"    {kind}_temp_path {tmp_path}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (tmp_path / "nginx.conf").write_text(
            f"daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
            f"events {{ worker_connections 256; }}\nhttp {{\n    access_log off;\n{temp}\n{site}\n}}\n"
        )
        processes.append(subprocess.Popen([binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                                          stderr=subprocess.PIPE, text=True))
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return f"ws://127.0.0.1:{port}/v3/ws"
            except OSError:
                assert processes[-1].poll() is None, processes[-1].stderr.read()
                threading.Event().wait(0.1)
        raise AssertionError(f"nginx did not listen: {(tmp_path / 'error.log').read_text()}")

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=HANG_GUARD_S)


class DrainMidTurn:
    """A plugin that, at the first partial of the fourth turn (mid-turn, by definition),
    drains the instance that holds the session."""

    def __init__(self, instances: list[Instance]):
        self.instances = instances
        self.drained: Instance | None = None

    @hookimpl
    def on_partial(self, turn) -> None:
        if self.drained is None and turn.turn_order >= 3:
            self.drained = next(i for i in self.instances if i.metrics()["captioner_sessions_active"] == 1)
            self.drained.process.send_signal(signal.SIGTERM)


def test_behind_nginx_an_instance_drained_mid_turn_loses_and_repeats_nothing(instances, nginx):
    # Moonshine, as users run it; one worker each, so the instance holding the session is
    # the one whose metrics say so.
    pair = [instances("--workers", "1", "--drain-seconds", "1") for _ in range(2)]
    url = nginx(pair[0].port, pair[1].port)
    meeting = fixture("meeting.wav")

    undisturbed = asyncio.run(replay_async(meeting, url, speed=2))
    assert undisturbed.error is None and len(undisturbed.finals) >= 10

    drain = DrainMidTurn(pair)
    disturbed = asyncio.run(replay_async(meeting, url, speed=2, plugins=[drain]))
    assert drain.drained is not None, "the session got no partial of its fourth turn"
    assert drain.drained.process.wait(timeout=HANG_GUARD_S) == 0
    assert disturbed.error is None and disturbed.summary.reconnects >= 1
    assert disturbed.summary.audio_seconds_lost == 0
    assert disturbed.final_texts == undisturbed.final_texts  # nothing lost, nothing repeated


def test_the_nginx_configuration_in_the_docs_is_the_one_tested():
    tested = [line.strip() for line in (ROOT / "docs" / "deploy" / "nginx.conf").read_text().splitlines()
              if line.strip() and not line.strip().startswith("#")]
    docs = (ROOT / "docs" / "deploy.md").read_text()
    shown = docs.split("```nginx\n", 1)[1].split("```", 1)[0]
    assert [line.strip() for line in shown.splitlines() if line.strip()] == tested
