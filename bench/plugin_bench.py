"""The first-party plugins' cost per final, and the microphone capture path's CPU share."""

from __future__ import annotations

import functools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from measure import FIXTURES, ROOT, percentile, table


def bench_plugins(speed: float) -> dict:
    """Delay from a final's emission to each plugin's output being on disk."""
    import tempfile

    import captioner_meeting_log
    import captioner_subtitles
    import captioner_translate
    from captioner.plugins.dispatch import PluginDispatcher
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
from captioner.audio.microphone import MicrophoneSource

async def main(seconds):
    source = MicrophoneSource("pulse", duration=seconds)
    count = 0
    async for chunk in source.chunks():
        if count == 0:  # from the first chunk on: opening the device is not the capture path
            cpu, wall = time.process_time(), time.monotonic()
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


def markdown(plugins: dict, capture: dict) -> list[str]:
    lines = [
        "## First-party plugins",
        "",
        f"The fixture meeting ({plugins['finals']} finals) replayed at {plugins['speed']:g}x real time through the "
        "fake server with the subtitle writer, the meeting log and translation into Spanish with Apertium. "
        "Delay from the engine emitting a final to that plugin's output for it being flushed to disk "
        "(for the translation: the translated cue written), in milliseconds:",
        "",
    ]
    lines += table(
        ["plugin", "finals", "median ms", "p95 ms", "max ms"],
        ([label, row["finals"], row["median_ms"], row["p95_ms"], row["max_ms"]] for label, row in plugins["plugins"].items()),
    )
    lines += ["", "## Microphone capture", ""]
    if "skipped" in capture:
        lines.append(f"Not measured: {capture['skipped']}")
    else:
        lines.append(
            f"`MicrophoneSource` alone in a process, capturing {capture['wall_s']:.1f} s from a virtual "
            "microphone (a private PulseAudio null sink playing the fixture meeting in real time) through "
            f"real PortAudio, opened at {capture['device_rate']} Hz"
            f"{'' if capture['device_rate'] == 16000 else ' and resampled to 16 kHz'}: "
            f"**{capture['cpu_share']:.2%} of one core** ({capture['cpu_s']:.2f} CPU s, {capture['chunks']} chunks "
            "of 50 ms). This is the capture path only, measured from the first chunk to the last (opening the device is not counted): PortAudio's "
            "thread and ALSA's PulseAudio plugin, the hand-over to the event loop, resampling and chunking."
        )
    return lines
