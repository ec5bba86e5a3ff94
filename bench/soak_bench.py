"""An hour-long meeting with every first-party plugin on, and a resilience run.

Soak: the fixture meeting looped to an hour, replayed by `captioner replay --fast` (its
own process, the command users run) to the fake server with the terminal view, SRT and
WebVTT files, the meeting log, translation into Spanish through a LibreTranslate
stand-in, and the overlay with one viewer connected. Its memory is sampled as the
server receives the audio, so "peak RSS at 10 minutes" means the process's high-water
mark when the server had received ten minutes of audio.

Resilience: the fixture meeting replayed through the fake server while it drops or
closes the connection at seeded random points (before `Begin`, mid-turn, between turns,
during `Terminate`), against an undisturbed replay of the same meeting.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from measure import FIXTURES, ROOT, audio_seconds, looped_meeting, memory_mb, table

from captioner.client.reconnect import ReconnectPolicy
from captioner import Settings
from captioner.testing import ANY, FakeServerThread, FakeStreamingServer, Fault, TranscriptScript, replay

MARKS_MINUTES = (10, 30, 60)
BYTES_PER_S = 32000  # 16 kHz, 16-bit mono


class Viewer:
    """One overlay viewer: reads every event the page would get, in a thread of its own."""

    def __init__(self, url: str):
        self.url = url.replace("http://", "ws://").rstrip("/") + "/events"
        self.received = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._read()), daemon=True)
        self.thread.start()

    async def _read(self) -> None:
        import websockets

        try:
            async with websockets.connect(self.url) as websocket:
                async for _ in websocket:
                    self.received += 1
        except (OSError, websockets.ConnectionClosed):
            pass  # the run ended


def cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def soak(loops: int) -> dict:
    from captioner_translate.testing import FakeLibreTranslate

    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        wav, script = looped_meeting(directory, loops)
        seconds = audio_seconds(wav)
        # An hour: 10, 30 and 60 minutes; a shorter (quick) run: a sixth, half, and all of it.
        marks = [m * 60 for m in MARKS_MINUTES] if seconds >= 3590 else [seconds / 6, seconds / 2, seconds]
        with FakeServerThread(FakeStreamingServer(script)) as server, FakeLibreTranslate({"es": {}}) as translator:
            command = [
                sys.executable, "-m", "captioner", "replay", str(wav), "--fast", "--url", server.url,
                "--srt", str(directory / "m.srt"), "--vtt", str(directory / "m.vtt"), "--log", str(directory / "m.jsonl"),
                "--translate", "es", "--translate-backend", "libretranslate", "--translate-url", translator.url,
                "--overlay", "127.0.0.1:0",
            ]
            started, cpu_before = time.monotonic(), cpu_of_children()
            client = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            viewer = None
            for line in client.stderr:  # the overlay says where it listens before any audio
                if "overlay at " in line:
                    viewer = Viewer(line.split("overlay at ", 1)[1].split()[0])
                    break
            stderr_tail: list[str] = []
            drain = threading.Thread(target=lambda: stderr_tail.extend(client.stderr), daemon=True)
            drain.start()
            samples = []  # (audio seconds the server had, client RSS MB, client peak RSS MB)
            while client.poll() is None:
                received = server.connections[-1].audio_bytes / BYTES_PER_S if server.connections else 0.0
                try:
                    rss, peak = memory_mb(client.pid, "VmRSS"), memory_mb(client.pid)
                except OSError:
                    break  # it just ended
                if not math.isnan(peak):  # an exiting process has no memory lines left
                    samples.append((round(received, 1), round(rss, 1), round(peak, 1)))
                time.sleep(0.2)
            # The peak so far at each mark: the last sample taken with no more audio than that.
            peaks = {
                f"{mark / 60:.3g} min": max((p for a, _, p in samples if a <= mark + 1), default=None) for mark in marks
            }
            client.wait()
            wall = time.monotonic() - started
            # All of its CPU, shutdown included: the children's usage, now that it is reaped.
            cpu = cpu_of_children() - cpu_before
            drain.join(timeout=5)
        if client.returncode != 0:
            raise SystemExit(f"the soak replay failed ({client.returncode}): {''.join(stderr_tail)[-1500:]}")
        logged = [json.loads(line) for line in (directory / "m.jsonl").read_text().splitlines() if line.strip()]
        finals = [entry["text"] for entry in logged if entry.get("type") == "final"]
        translations = sum(1 for entry in logged if entry.get("type") == "translation")
        translated = (directory / "m.es.srt").read_text().count(" --> ") if (directory / "m.es.srt").exists() else None
        figures = {
            "audio_s": round(seconds, 1),
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "peak_rss_mb": peaks,
            "finals_scripted": len(script.turns),
            "finals_logged": len(finals),
            "finals_equal_script": finals == script.finals,
            "srt_cues": (directory / "m.srt").read_text().count(" --> "),
            "translated_cues": translated,
            "translations_logged": translations,
            "overlay_events_viewed": viewer.received if viewer else None,
            "rss_samples": [sample[:2] for sample in samples[:: max(1, len(samples) // 60)]],
        }
    print(json.dumps({k: v for k, v in figures.items() if k != "rss_samples"}), flush=True)
    return figures


def resilience(faults_count: int, seed: int = 20261124) -> dict:
    """Seeded drops and closes; what survived, what was lost or repeated, what was resent."""
    script = TranscriptScript.load(FIXTURES / "meeting.json")
    rng = random.Random(seed)
    faults = [Fault("drop", when="connect", connection=0)]  # before Begin
    for connection in range(1, faults_count - 1):
        action = rng.choice(["drop", "drop", "close"])
        faults.append(Fault(action, at_ms=rng.randint(300, 6000), code=rng.choice([1011, 1013, 3005, 3008]),
                            connection=connection))
    faults.append(Fault("drop", when="terminate", connection=ANY))  # while the last turn is flushed
    injected = len(faults)
    settings = Settings(reconnect=ReconnectPolicy(first_delay=0.001, max_delay=0.01, max_attempts=faults_count + 5,
                                                  first_session_attempts=5))
    disturbed = replay(FIXTURES / "meeting.wav", faults=faults, settings=settings)
    undisturbed = replay(FIXTURES / "meeting.wav")
    expected, got = Counter(undisturbed.final_texts), Counter(disturbed.final_texts)
    connections = disturbed.server.connections
    received_s = sum(c.audio_bytes for c in connections) / BYTES_PER_S
    sent_once_s = sum(c.audio_bytes for c in undisturbed.server.connections) / BYTES_PER_S
    resent_s = received_s - sent_once_s
    reconnects = disturbed.summary.reconnects
    figures = {
        "faults_injected": injected,
        "faults_fired": injected - len(disturbed.server.faults),
        "connections": len(connections),
        "reconnects": reconnects,
        "survived": disturbed.error is None and disturbed.summary.ok,
        "finals_expected": sum(expected.values()),
        "finals_lost": sum((expected - got).values()),
        "finals_duplicated": sum((got - expected).values()),
        "same_words_and_times": [(w.text, w.start_ms, w.end_ms) for t in disturbed.finals for w in t.words]
        == [(w.text, w.start_ms, w.end_ms) for t in undisturbed.finals for w in t.words],
        "equals_script": disturbed.final_texts == script.finals,
        "audio_resent_s": round(resent_s, 1),
        "audio_resent_per_reconnect_s": round(resent_s / max(1, reconnects), 2),
        "audio_lost_s": disturbed.summary.audio_seconds_lost,
    }
    print(json.dumps(figures), flush=True)
    return figures


def markdown(soak_figures: dict, resilience_figures: dict) -> list[str]:
    s, r = soak_figures, resilience_figures
    peaks = ", ".join(f"{mark}: {mb} MB" for mark, mb in s["peak_rss_mb"].items())
    lines = [
        "## Soak: an hour-long meeting with every plugin",
        "",
        f"The fixture meeting looped to {s['audio_s'] / 60:.1f} minutes, replayed by `captioner replay --fast` "
        "(its own process) to the fake server with every first-party plugin on: the terminal view, `--srt`, "
        "`--vtt`, `--log`, `--translate es` (through a LibreTranslate stand-in on loopback) and `--overlay` "
        "with one viewer connected.",
        "",
    ]
    lines += table(["figure", "value"], [
        ["audio / wall time", f"{s['audio_s']:.0f} s of audio in {s['wall_s']:.0f} s ({s['audio_s'] / s['wall_s']:.0f}x real time)"],
        ["client CPU", f"{s['cpu_s']:.0f} s ({s['cpu_s'] / s['audio_s'] * 3600:.0f} CPU s per audio hour)"],
        ["peak RSS when the server had received (minutes of audio)", peaks],
        ["finals delivered (meeting log lines) / scripted", f"{s['finals_logged']} / {s['finals_scripted']}"
         f"{', word for word' if s['finals_equal_script'] else ', NOT equal to the script'}"],
        ["SRT cues; translations logged; translated (es) SRT cues",
         f"{s['srt_cues']}; {s['translations_logged']}; {s['translated_cues']}"],
        ["overlay events the viewer received", s["overlay_events_viewed"]],
    ])
    lines += [
        "",
        "Peak RSS is the client process's high-water resident memory (VmHWM) when the server had received that "
        "much audio; flat figures mean memory does not grow with the meeting's length. The plugins keep a "
        "bounded window (the overlay a few recent lines, subtitles one cue), so only the transcript itself, on "
        "disk, grows.",
        "",
        "## Resilience: seeded connection faults",
        "",
        f"The fixture meeting replayed through the fake server while it drops or closes the connection "
        f"{r['faults_injected']} times at seeded random points (before `Begin`, mid-turn, between turns, during "
        "`Terminate`), compared with an undisturbed replay.",
        "",
    ]
    lines += table(
        ["faults injected / fired", "connections", "survived", "finals lost", "finals duplicated",
         "same words and times", "audio resent per reconnect", "audio lost"],
        [[f"{r['faults_injected']} / {r['faults_fired']}", r["connections"], "yes" if r["survived"] else "NO",
          f"{r['finals_lost']} of {r['finals_expected']}", r["finals_duplicated"],
          "yes" if r["same_words_and_times"] else "NO",
          f"{r['audio_resent_per_reconnect_s']} s ({r['audio_resent_s']} s in all)", f"{r['audio_lost_s']} s"]],
    )
    return lines + [
        "",
        "Audio resent is what the server received beyond the undisturbed replay's audio: the audio of the turn in "
        "progress (from the last final's end), sent again on each new connection.",
    ]
