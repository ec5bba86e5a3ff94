"""captioner's benchmarks: `make bench` (or `python bench/bench.py [--quick]`).

Writes BENCHMARKS.md (a table per section, the machine, the date, the commit) and
bench/results.json with the same figures. Every figure is measured in this run; ratios
compare runs made side by side in this run. Not part of the test suite: tests check
behaviour, this measures speed.

Sections (one module each):
- recognizer_bench: each embedded recognizer (Moonshine, PocketSphinx, and Whisper
  through the faster-whisper plugin) behind `captioner serve`: WER, CPU real-time
  factor, final and first-partial delays, peak RSS, concurrent real-time sessions.
- client_bench: captioner's client against the official SDK's async and sync clients,
  the same audio as fast as the fake server takes it, interleaved rounds; and the
  real-time audio path (send jitter against the 50 ms schedule, client CPU share), with
  and without a plugin that blocks.
- soak_bench: an hour-long meeting with every first-party plugin on (memory at 10, 30
  and 60 minutes, finals delivered); seeded connection faults (finals lost, duplicated,
  audio resent per reconnect).
- plugin_bench: each first-party plugin's delay from a final to its output on disk; the
  microphone capture path's CPU share on a virtual microphone.
- latency_bench: caption latency as a live client sees `captioner serve` (first partial,
  partial cadence, final delay, CPU per audio second, the same at 1/4/8/12 sessions, and
  real-speech WER), this checkout's server side by side with the one before the latency
  work.
- scale_bench: `captioner serve --workers 1` against one worker per core: sessions
  sustained per recognizer, and peak memory per worker.
- meeting_bench: the CPU share of capturing both sides of a meeting (PulseAudio and
  PipeWire), and on speakers the meeting words captioned twice and the user's words lost,
  with and without each of the two defences.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import client_bench
import latency_bench
import meeting_bench
import plugin_bench
import recognizer_bench
import scale_bench
import soak_bench
from measure import ROOT


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
        "Every figure comes from this one run; the raw figures are in `bench/results.json`. "
        "Absolute times depend on the machine and its load; compare figures within one run.",
        "",
    ]
    lines += recognizer_bench.markdown(results["recognizers"]) + [""]
    lines += latency_bench.markdown(results["latency"]) + [""]
    lines += scale_bench.markdown(results["workers"]) + [""]
    lines += client_bench.markdown(results["clients"], results["realtime"]) + [""]
    lines += soak_bench.markdown(results["soak"], results["resilience"]) + [""]
    lines += plugin_bench.markdown(results["plugins"], results["capture"]) + [""]
    lines += meeting_bench.markdown(results["meeting_capture"], results["bleed"])
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="short fixtures, one round, one concurrency step, a 2-minute soak: a smoke run")
    parser.add_argument("--out", type=Path, default=ROOT, help="where BENCHMARKS.md goes (results.json beside it in bench/)")
    args = parser.parse_args()
    quick = args.quick
    clips = ["hello"] if quick else ["meeting", "hello", "weather", "mute"]
    results = {"machine": machine(), "quick": quick, "recognizers": {}}

    recognizers = {"moonshine": [], "pocketsphinx": []}
    whisper = recognizer_bench.whisper_model()
    if whisper:
        recognizers["faster-whisper"] = ["--whisper-model", whisper]
    for name, extra in recognizers.items():
        results["recognizers"][name] = recognizer_bench.bench_recognizer(
            name, clips, max_sessions=1 if quick else 8, concurrency_clip="hello" if quick else "weather", extra=extra
        )
    if not whisper:
        results["recognizers"]["faster-whisper"] = {"skipped": "the captioner-faster-whisper plugin or its test model is not installed"}

    results["latency"] = latency_bench.bench_latency(recognizers, quick)
    results["workers"] = scale_bench.bench_workers(recognizers, quick)
    results["clients"] = client_bench.compare_clients(loops=1 if quick else 10, rounds=1 if quick else 7)
    results["realtime"] = client_bench.realtime_path("hello" if quick else "meeting")
    results["soak"] = soak_bench.soak(loops=2 if quick else 61)
    results["resilience"] = soak_bench.resilience(faults_count=24)
    results["capture"] = plugin_bench.bench_capture(5 if quick else 30)
    results["plugins"] = plugin_bench.bench_plugins(speed=8 if quick else 2)
    results["meeting_capture"] = meeting_bench.bench_capture(5 if quick else 20)
    results["bleed"] = meeting_bench.bench_bleed(quick)

    (args.out / "bench").mkdir(parents=True, exist_ok=True)
    (args.out / "bench" / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "BENCHMARKS.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
