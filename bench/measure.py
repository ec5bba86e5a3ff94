"""What every benchmark section measures with: processes, timelines, statistics, fixtures.

A section's figures come from one process (`captioner serve`, a probe client) read
through /proc, so a figure never includes the benchmark's own work.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import jiwer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
sys.path.insert(0, str(ROOT))

from captioner import hookimpl  # noqa: E402
from captioner.audio.replay import WavReplaySource  # noqa: E402
from captioner.testing import TranscriptScript, replay_async  # noqa: E402


# ------------------------------------------------------------------ processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int, field_name: str = "VmHWM") -> float:
    """Peak (VmHWM) or current (VmRSS) resident memory of a process, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ServerProcess:
    """`captioner serve` in its own process, so its CPU time and memory are its own."""

    def __init__(self, recognizer: str, extra: list[str] = (), checkout: Path = ROOT, env: dict | None = None):
        command = [sys.executable, "-m", "captioner", "serve", "--port", "0", "--recognizer", recognizer, *extra]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        cwd=checkout, env=env)
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("ws://"):
            self.process.kill()
            raise SystemExit(f"captioner serve --recognizer {recognizer} in {checkout} did not start: "
                             f"{self.process.stderr.read()[-800:]}")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def peak_rss_mb(self) -> float:
        return memory_mb(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()  # drains: with every session over, at once
        self.process.wait(timeout=20)


# ------------------------------------------------------------------ timelines


@dataclass(eq=False)  # a plugin: registered objects must be hashable
class Timeline:
    """When each event reached a plugin, on the wall clock, from the replay's start."""

    start: float = 0.0
    finals: list = field(default_factory=list)  # (wall seconds, Turn)
    partials: list = field(default_factory=list)

    @hookimpl
    def on_partial(self, turn):
        self.partials.append((time.monotonic() - self.start, turn))

    @hookimpl
    def on_final(self, turn):
        self.finals.append((time.monotonic() - self.start, turn))


async def replay_timed(wav: Path, url: str, speed: float | None = 1.0) -> Timeline:
    timeline = Timeline(start=time.monotonic())  # audio time t is sent at start + t (real-time pacing)
    result = await replay_async(wav, url, plugins=[timeline], speed=speed)
    if result.error is not None:
        raise result.error
    return timeline


def delays(timeline: Timeline, script: TranscriptScript) -> tuple[list[float], list[float]]:
    """Final delays (after the end of speech) and first-partial delays (after its start).

    At real-time pacing, audio time t was sent at wall time t. A scripted turn's final is
    the first final whose words reach the turn's last word (so a turn a recognizer split
    in two is timed by the piece that ends it); its first partial is the first partial
    whose words overlap the turn. A turn with neither gets no figure: a recognizer that
    gives a turn no partial is not credited with the next turn's.
    """
    final_delays, partial_delays = [], []
    for turn in script.turns:
        start, end = turn.start / 1000, turn.end / 1000
        final = next((wall for wall, t in timeline.finals if overlaps(t, end - 0.3, end)), None)
        if final is not None:
            final_delays.append(final - end)
        partial = next((wall for wall, t in timeline.partials if wall > start and overlaps(t, start, end)), None)
        if partial is not None:
            partial_delays.append(partial - start)
    return final_delays, partial_delays


def overlaps(turn, start_s: float, end_s: float) -> bool:
    """Whether a captioned turn's words overlap [start_s, end_s] on the audio clock."""
    return turn.start_ms is not None and turn.end_ms is not None and turn.start_ms / 1000 < end_s and turn.end_ms / 1000 > start_s


# ------------------------------------------------------------------ statistics


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    return jiwer.wer(" ".join(words(reference)), " ".join(words(hypothesis)))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread_ms(seconds: list[float]) -> dict:
    """Median, p99 and max of durations given in seconds, as milliseconds."""
    if not seconds:
        return {"count": 0, "median_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "count": len(seconds),
        "median_ms": round(statistics.median(seconds) * 1000, 2),
        "p99_ms": round(percentile(seconds, 0.99) * 1000, 2),
        "max_ms": round(max(seconds) * 1000, 2),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


# ------------------------------------------------------------------ fixtures


def looped_meeting(directory: Path, times: int, clip: str = "meeting") -> tuple[Path, TranscriptScript]:
    """The fixture played `times` times back to back, as one WAV and one transcript script.

    The script's turns are the fixture's, shifted by the clip's length each time, so the
    fake server places every loop's words where they are in the longer file.
    """
    import json

    import soundfile

    pcm, rate = soundfile.read(FIXTURES / f"{clip}.wav", dtype="int16")
    wav = directory / f"{clip}-x{times}.wav"
    with soundfile.SoundFile(wav, "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        for _ in range(times):
            out.write(pcm)
    data = json.loads((FIXTURES / f"{clip}.json").read_text())
    length_ms = len(pcm) * 1000 // rate
    turns = []
    for loop in range(times):
        for turn in data["turns"]:
            shifted = [dict(w, start=w["start"] + loop * length_ms, end=w["end"] + loop * length_ms) for w in turn["words"]]
            turns.append(dict(turn, words=shifted))
    script_path = wav.with_suffix(".json")
    script_path.write_text(json.dumps({"turns": turns}))
    return wav, TranscriptScript.load(script_path)


def table(columns: list[str], rows: Iterable[Iterable]) -> list[str]:
    """A Markdown table: the header, its rule, then a line per row of cells."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] + [
        "| " + " | ".join(str(cell) for cell in row) + " |" for row in rows
    ]


def audio_seconds(wav: Path) -> float:
    return WavReplaySource(wav).duration_seconds
