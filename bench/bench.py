"""captioner's benchmarks: `make bench` (or `python bench/bench.py [--quick]`).

Writes BENCHMARKS.md (a table per section, the machine, the date, the commit) and
bench/results.json with the same figures. Every figure is measured in this run; ratios
compare runs made side by side in this run. Not part of the test suite: tests check
behaviour, this measures speed.

Sections:
- recognizers: each embedded recognizer behind `captioner serve`, fixtures replayed in
  real time: WER, CPU real-time factor and peak RSS of the server process, delay from
  the end of speech (the fixture script's last word) to the final on the client, delay
  from the start of speech to the first partial, and how many concurrent real-time
  sessions the server sustains before the p95 final delay exceeds 2 s.
- capture: `MicrophoneSource` capturing a virtual microphone (a private PulseAudio null
  sink, played the fixture meeting in real time) through real PortAudio, alone in its
  own process: the CPU share of the capture path (PortAudio's thread, the hand-over,
  resampling and chunking) per wall second.
- plugins: the fixture meeting replayed at twice real time through the fake server with
  the subtitle writer (SRT and VTT), the meeting log and translation into Spanish
  (Apertium, offline): for each plugin, the delay from the engine emitting a final to
  that plugin's output for it being flushed to disk (median, p95, max).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import jiwer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
sys.path.insert(0, str(ROOT))

from captioner import hookimpl  # noqa: E402
from captioner.audio import WavReplaySource  # noqa: E402
from captioner.engine import Engine  # noqa: E402
from captioner.plugins import build_plugin_manager  # noqa: E402
from captioner.settings import Settings  # noqa: E402
from captioner.testing import TranscriptScript  # noqa: E402

DELAY_LIMIT_S = 2.0  # a session "falls behind" when its p95 final delay exceeds this


# ------------------------------------------------------------------ measuring helpers


class ServerProcess:
    """`captioner serve` in its own process, so its CPU time and memory are its own."""

    def __init__(self, recognizer: str, workers: int | None = None):
        command = [sys.executable, "-m", "captioner", "serve", "--port", "0", "--recognizer", recognizer]
        if workers:
            command += ["--decode-workers", str(workers)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("ws://"):
            raise SystemExit(f"captioner serve --recognizer {recognizer} did not start")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


@dataclass
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
    pm = build_plugin_manager(defaults=False, environ={"CAPTIONER_LOAD_PLUGINS": ""})
    timeline = Timeline()
    pm.register(timeline, name="timeline")
    source = WavReplaySource(wav, speed=speed)
    timeline.start = time.monotonic()  # audio time t is sent at start + t (real-time pacing)
    await Engine(Settings(url=url), pm).caption(source)
    return timeline


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()


def delays(timeline: Timeline, script: TranscriptScript) -> tuple[list[float], list[float]]:
    """Final delays (after the end of speech) and first-partial delays (after its start).

    Each scripted turn is matched to the first final that ends after the turn's speech
    began: at real-time pacing, audio time t was sent at wall time t.
    """
    final_delays, partial_delays = [], []
    for turn in script.turns:
        start, end = turn.start / 1000, turn.end / 1000
        final = next((wall for wall, t in timeline.finals if t.end_ms and t.end_ms / 1000 > start + 0.2), None)
        if final is not None:
            final_delays.append(final - end)
        partial = next((wall for wall, t in timeline.partials if wall > start and t.end_ms and t.end_ms / 1000 > start), None)
        if partial is not None:
            partial_delays.append(partial - start)
    return final_delays, partial_delays


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ------------------------------------------------------------------ sections


def bench_recognizer(name: str, clips: list[str], max_sessions: int, concurrency_clip: str) -> dict:
    server = ServerProcess(name)
    try:
        rows = []
        for clip in clips:
            wav = FIXTURES / f"{clip}.wav"
            script = TranscriptScript.load(FIXTURES / f"{clip}.json")
            cpu_before = server.cpu_seconds()
            timeline = asyncio.run(replay_timed(wav, server.url))
            cpu = server.cpu_seconds() - cpu_before
            audio_seconds = WavReplaySource(wav).duration_seconds
            reference = (FIXTURES / f"{clip}.txt").read_text()
            hypothesis = " ".join(t.text for _, t in timeline.finals)
            final_delays, partial_delays = delays(timeline, script)
            rows.append(
                {
                    "recognizer": name,
                    "fixture": clip,
                    "audio_s": round(audio_seconds, 1),
                    "wer": round(jiwer.wer(" ".join(words(reference)), " ".join(words(hypothesis))), 4),
                    "rtf_cpu": round(cpu / audio_seconds, 3),
                    "final_delay_median_s": round(statistics.median(final_delays), 2) if final_delays else None,
                    "final_delay_p95_s": round(percentile(final_delays, 0.95), 2) if final_delays else None,
                    "first_partial_delay_median_s": round(statistics.median(partial_delays), 2) if partial_delays else None,
                    "turns": len(script.turns),
                    "finals": len(timeline.finals),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        sustained = concurrency(server.url, concurrency_clip, max_sessions)
        return {"rows": rows, "peak_rss_mb": round(server.peak_rss_mb(), 1), "concurrency": sustained}
    finally:
        server.stop()


def concurrency(url: str, clip: str, max_sessions: int) -> dict:
    """Step up concurrent real-time sessions until the p95 final delay exceeds the limit."""
    wav = FIXTURES / f"{clip}.wav"
    script = TranscriptScript.load(FIXTURES / f"{clip}.json")
    steps = []
    sustained = 0
    for sessions in range(1, max_sessions + 1):

        async def run_all():
            return await asyncio.gather(*(replay_timed(wav, url) for _ in range(sessions)))

        timelines = asyncio.run(run_all())
        all_delays = [d for timeline in timelines for d in delays(timeline, script)[0]]
        missing = sessions * len(script.turns) - len(all_delays)
        p95 = percentile(all_delays, 0.95)
        steps.append({"sessions": sessions, "final_delay_p95_s": round(p95, 2), "turns_without_final": missing})
        print(json.dumps(steps[-1]), flush=True)
        if p95 > DELAY_LIMIT_S or missing:
            break
        sustained = sessions
    return {"clip": clip, "limit_p95_s": DELAY_LIMIT_S, "sustained": sustained, "steps": steps}


def bench_plugins(speed: float) -> dict:
    """Delay from a final's emission to each plugin's output being on disk."""
    import tempfile

    import captioner_meeting_log
    import captioner_subtitles
    import captioner_translate
    from captioner.dispatch import PluginDispatcher
    from captioner.testing import replay

    emitted: dict[int, float] = {}
    written: dict[str, list[float]] = {"subtitles (srt+vtt)": [], "meeting log (fsync)": [], "translation es (apertium, track on disk)": []}
    original_emit = PluginDispatcher.emit

    def emit(self, hook, **kwargs):
        if hook == "on_final":
            emitted[kwargs["turn"].turn_order] = time.monotonic()
        return original_emit(self, hook, **kwargs)

    def timed(function, label, turn_of):
        @functools.wraps(function)  # pluggy reads the hook's argument names through it
        def wrapper(self, *args, **kwargs):
            result = function(self, *args, **kwargs)
            event = (list(args) + list(kwargs.values()))[0]
            written[label].append(time.monotonic() - emitted[turn_of(event).turn_order])
            return result
        return wrapper

    patches = [
        (captioner_subtitles.SubtitleWriter, "on_final", "subtitles (srt+vtt)", lambda turn: turn),
        (captioner_meeting_log.MeetingLog, "on_final", "meeting log (fsync)", lambda turn: turn),
        (captioner_subtitles.SubtitleWriter, "on_translation", "translation es (apertium, track on disk)", lambda t: t.turn),
    ]
    saved = [(cls, name, getattr(cls, name)) for cls, name, _, _ in patches]
    PluginDispatcher.emit = emit
    for cls, name, label, turn_of in patches:
        setattr(cls, name, timed(getattr(cls, name), label, turn_of))
    try:
        with tempfile.TemporaryDirectory() as directory:
            options = {
                "srt": f"{directory}/m.srt", "vtt": f"{directory}/m.vtt", "log": f"{directory}/m.jsonl",
                "subtitle_max_chars": 42, "subtitle_max_lines": 2, "subtitle_max_seconds": 7.0,
                "translate": "es", "translate_backend": "apertium", "translate_from": "en", "translate_timeout": 10.0,
            }
            result = replay(FIXTURES / "meeting.wav", speed=speed, options=options,
                            plugins=[captioner_subtitles, captioner_meeting_log, captioner_translate])
    finally:
        PluginDispatcher.emit = original_emit
        for cls, name, function in saved:
            setattr(cls, name, function)
    rows = {}
    for label, delays_s in written.items():
        rows[label] = {
            "finals": len(delays_s),
            "median_ms": round(statistics.median(delays_s) * 1000, 1) if delays_s else None,
            "p95_ms": round(percentile(delays_s, 0.95) * 1000, 1) if delays_s else None,
            "max_ms": round(max(delays_s) * 1000, 1) if delays_s else None,
        }
    figures = {"speed": speed, "finals": len(result.finals), "plugins": rows}
    print(json.dumps(figures), flush=True)
    return figures


CAPTURE_PROBE = """
import asyncio, json, os, sys, time
from captioner.microphone import MicrophoneSource

async def main(seconds):
    source = MicrophoneSource("pulse", duration=seconds)
    cpu, wall, count = time.process_time(), time.monotonic(), 0
    async for chunk in source.chunks():
        count += 1
    print(json.dumps({"cpu_s": time.process_time() - cpu, "wall_s": time.monotonic() - wall,
                      "chunks": count, "device_rate": source.device_rate}))

asyncio.run(main(float(sys.argv[1])))
"""


def bench_capture(seconds: float) -> dict:
    """CPU share of the capture path on a real-time virtual microphone."""
    import tempfile

    from captioner.testing.virtual_mic import VirtualMicrophone, VirtualMicrophoneUnavailable

    with tempfile.TemporaryDirectory() as directory:
        try:
            mic = VirtualMicrophone(Path(directory))
        except VirtualMicrophoneUnavailable as error:
            return {"skipped": str(error)}
        try:
            player = mic.play(FIXTURES / "meeting.wav")
            probe = subprocess.run(
                [sys.executable, "-c", CAPTURE_PROBE, str(seconds)], env=mic.env, capture_output=True, text=True,
                timeout=seconds + 60, cwd=ROOT,
            )
            player.kill()
        finally:
            mic.stop()
    figures = json.loads(probe.stdout.strip().splitlines()[-1])
    figures["cpu_share"] = round(figures["cpu_s"] / figures["wall_s"], 4)
    print(json.dumps(figures), flush=True)
    return figures


# ------------------------------------------------------------------ report


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit or "unknown",
    }


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {m['date']}, commit `{m['commit']}`: {m['cpu']}, "
        f"{m['cores']} cores, Python {m['python']}{' (quick mode)' if results['quick'] else ''}. "
        "Every figure comes from this one run; the raw figures are in `bench/results.json`.",
        "",
        "## Embedded recognizers",
        "",
        "Each recognizer runs in `captioner serve` (its own process); the fixtures are replayed "
        "to it in real time (50 ms chunks) by captioner's client.",
        "",
        "- **WER**: word error rate of the finals against the fixture's reference text "
        "(lower-cased, punctuation removed, hyphens split).",
        "- **CPU RTF**: CPU seconds the server process used per second of audio (user + system).",
        "- **final delay**: wall seconds from the end of a turn's speech (its last word's end in "
        "the fixture script) to its final reaching a plugin; median and p95 over turns.",
        "- **first partial**: wall seconds from the start of a turn's speech to its first partial (median).",
        "- **peak RSS**: the server process's high-water resident memory, MB.",
        "",
        "| recognizer | fixture | audio s | WER | CPU RTF | final delay median s | final delay p95 s | first partial s | finals / turns |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, section in results["recognizers"].items():
        for row in section["rows"]:
            lines.append(
                f"| {name} | {row['fixture']} | {row['audio_s']} | {row['wer']:.1%} | {row['rtf_cpu']} | "
                f"{row['final_delay_median_s']} | {row['final_delay_p95_s']} | {row['first_partial_delay_median_s']} | "
                f"{row['finals']} / {row['turns']} |"
            )
    lines += [
        "",
        f"**Concurrent real-time sessions** one `captioner serve` sustains before the p95 final delay "
        f"exceeds {DELAY_LIMIT_S:g} s (or a turn gets no final), and peak RSS:",
        "",
        "| recognizer | sessions sustained | steps (sessions: p95 final delay s) | peak RSS MB |",
        "|---|---|---|---|",
    ]
    for name, section in results["recognizers"].items():
        c = section["concurrency"]
        steps = ", ".join(f"{s['sessions']}: {s['final_delay_p95_s']}" for s in c["steps"])
        lines.append(f"| {name} | {c['sustained']} (clip `{c['clip']}`) | {steps} | {section['peak_rss_mb']} |")
    plugins = results.get("plugins")
    if plugins:
        lines += [
            "",
            "## First-party plugins",
            "",
            f"The fixture meeting ({plugins['finals']} finals) replayed at {plugins['speed']:g}x real time through the "
            "fake server with the subtitle writer, the meeting log and translation into Spanish with Apertium. "
            "Delay from the engine emitting a final to that plugin's output for it being flushed to disk "
            "(for the translation: the translated cue written), in milliseconds:",
            "",
            "| plugin | finals | median ms | p95 ms | max ms |",
            "|---|---|---|---|---|",
        ]
        for label, row in plugins["plugins"].items():
            lines.append(f"| {label} | {row['finals']} | {row['median_ms']} | {row['p95_ms']} | {row['max_ms']} |")
    capture = results.get("capture", {})
    lines += ["", "## Microphone capture", ""]
    if "skipped" in capture:
        lines.append(f"Not measured: {capture['skipped']}")
    else:
        lines += [
            f"`MicrophoneSource` alone in a process, capturing {capture['wall_s']:.1f} s from a virtual "
            "microphone (a private PulseAudio null sink playing the fixture meeting in real time) through "
            f"real PortAudio, opened at {capture['device_rate']} Hz"
            f"{'' if capture['device_rate'] == 16000 else ' and resampled to 16 kHz'}: "
            f"**{capture['cpu_share']:.2%} of one core** ({capture['cpu_s']:.2f} CPU s, {capture['chunks']} chunks "
            "of 50 ms). This is the capture path only, measured from the first read to the last: PortAudio's "
            "thread and ALSA's PulseAudio plugin, the hand-over to the event loop, resampling and chunking.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short clip, one concurrency step: a smoke run")
    parser.add_argument("--out", type=Path, default=ROOT, help="where BENCHMARKS.md goes (results.json beside it in bench/)")
    args = parser.parse_args()
    clips = ["hello"] if args.quick else ["meeting", "hello", "weather", "mute"]
    results = {"machine": machine(), "quick": args.quick, "recognizers": {}}
    for name in ("moonshine", "pocketsphinx"):
        results["recognizers"][name] = bench_recognizer(
            name, clips, max_sessions=1 if args.quick else 8, concurrency_clip="hello" if args.quick else "weather"
        )
    results["capture"] = bench_capture(5 if args.quick else 30)
    results["plugins"] = bench_plugins(speed=8 if args.quick else 2)
    (args.out / "bench").mkdir(parents=True, exist_ok=True)
    (args.out / "bench" / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "BENCHMARKS.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
