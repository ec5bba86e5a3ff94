"""Meeting audio: what capturing both sides costs, and how well the meeting heard again by
the microphone (speakers) is kept from being captioned twice.

- capture: one process capturing the microphone (PortAudio) and the meeting audio (an
  output's monitor), on a private PulseAudio and a private PipeWire, side by side with
  the microphone alone; CPU share of one core, from the first chunk on.
- bleed: a meeting and a user speaking, the microphone also hearing the meeting (delayed
  and quieter), replayed through the engine with the embedded Moonshine recognizer, four
  ways side by side: nothing done, the text backstop alone, the echo gate alone, both
  (what captioner does). Meeting words captioned twice, and user words lost, each as a
  share of the reference words.
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from measure import FIXTURES, ROOT, table

CAPTURE_PROBE = """
import asyncio, json, sys, time
from captioner.audio.meeting import MeetingAudioSource
from captioner.audio.microphone import MicrophoneSource
from captioner.client.bleed import without_echo

async def drain(source, counts, name):
    async for chunk in source.chunks():
        if not counts:
            counts["start"] = (time.process_time(), time.monotonic())
        counts[name] = counts.get(name, 0) + 1

async def main(seconds, channels, gate):
    sources = {"mic": MicrophoneSource("pulse", duration=seconds)}
    if channels == 2:
        sources["meeting"] = MeetingAudioSource(None, duration=seconds)
    if gate:
        sources = without_echo(sources)
    counts = {}
    await asyncio.gather(*(drain(source, counts, name) for name, source in sources.items()))
    cpu, wall = counts.pop("start")
    print(json.dumps({"cpu_s": time.process_time() - cpu, "wall_s": time.monotonic() - wall, "chunks": counts}))

asyncio.run(main(float(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "gate"))
"""

CAPTURE_WAYS = {"microphone alone": (1, "none"), "microphone + meeting audio": (2, "none"),
                "microphone + meeting audio, echo gate": (2, "gate")}


def bench_capture(seconds: float) -> dict:
    """CPU share of capturing one and two channels, each sound server, side by side."""
    from captioner.testing.sound_server import PrivateSoundServer, SoundServerUnavailable

    results: dict = {}
    for kind in ("pulseaudio", "pipewire"):
        with tempfile.TemporaryDirectory() as directory:
            try:
                sound = PrivateSoundServer(Path(directory), kind)
            except SoundServerUnavailable as error:
                results[kind] = {"skipped": str(error)}
                continue
            try:
                rows = {}
                for label, (channels, gate) in CAPTURE_WAYS.items():
                    players = [sound.play_to_speakers(FIXTURES / "meeting.wav"),
                               sound.play_to_microphone(FIXTURES / "meeting.wav")]
                    probe = subprocess.run([sys.executable, "-c", CAPTURE_PROBE, str(seconds), str(channels), gate],
                                           env=sound.env, capture_output=True, text=True, timeout=seconds + 60, cwd=ROOT)
                    for player in players:
                        player.kill()
                    figures = json.loads(probe.stdout.strip().splitlines()[-1])
                    figures["cpu_share"] = round(figures["cpu_s"] / figures["wall_s"], 4)
                    rows[label] = figures
                results[kind] = rows
            finally:
                sound.stop()
    print(json.dumps(results), flush=True)
    return results


# ------------------------------------------------------------------ bleed

MEETING_SAYS = ["weather", "mute"]  # the other participant's sentences
USER_SAYS = "hello"


def _voice(name: str) -> np.ndarray:
    return soundfile.read(FIXTURES / f"{name}.wav", dtype="float32")[0]


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()


def scenario(directory: Path, delay_ms: int, gain_db: float) -> tuple[Path, Path]:
    """meeting.wav (the far side) and mic.wav: the user talking over the meeting's second
    sentence, and the meeting heard again `delay_ms` later at `gain_db`."""
    far = np.concatenate([_voice(MEETING_SAYS[0]), np.zeros(8000, np.float32), _voice(MEETING_SAYS[1]),
                          np.zeros(16000, np.float32)])
    mic = np.zeros(len(far), np.float32)
    echo = 10 ** (gain_db / 20) * far
    shift = delay_ms * 16
    mic[shift:] += echo[: len(far) - shift]
    start = len(_voice(MEETING_SAYS[0])) + 8000 + 12000
    user = _voice(USER_SAYS)[: len(far) - start]
    mic[start : start + len(user)] += user
    mic += np.random.default_rng(delay_ms).normal(0, 10 ** (-60 / 20), len(mic)).astype(np.float32)
    paths = directory / f"meeting-{delay_ms}-{gain_db}.wav", directory / f"mic-{delay_ms}-{gain_db}.wav"
    soundfile.write(paths[0], far, 16000, subtype="PCM_16")
    soundfile.write(paths[1], np.clip(mic, -1, 1), 16000, subtype="PCM_16")
    return paths


async def _caption(url: str, mic: Path, meeting: Path) -> list:
    from captioner import Settings
    from captioner.audio.replay import WavReplaySource
    from captioner.client.engine import Engine
    from captioner.plugins.manager import build_plugin_manager
    from captioner.testing import EventRecorder

    pm = build_plugin_manager(defaults=False, environ={"CAPTIONER_LOAD_PLUGINS": ""})
    recorder = EventRecorder()
    pm.register(recorder, name="recorder")
    sources = {"mic": WavReplaySource(mic, speed=2), "meeting": WavReplaySource(meeting, speed=2)}
    await Engine(Settings(url=url), pm).caption(sources)
    return recorder.finals


def bench_bleed(quick: bool) -> dict:
    """Meeting words captioned twice and user words lost, four ways, side by side."""
    from captioner.client import engine
    from captioner.default_plugins.moonshine import MoonshineRecognizer
    from captioner.testing import EmbeddedServer, ServerThread

    meeting_words = collections.Counter(w for name in MEETING_SAYS for w in _words((FIXTURES / f"{name}.txt").read_text()))
    user_words = collections.Counter(_words((FIXTURES / f"{USER_SAYS}.txt").read_text()))
    only_meeting = meeting_words - user_words
    real_gate, real_backstop = engine.without_echo, engine.without_repeats
    ways = {
        "nothing done": (lambda sources: sources, lambda turn, meeting: turn),
        "text backstop alone": (lambda sources: sources, real_backstop),
        "echo gate alone": (real_gate, lambda turn, meeting: turn),
        "echo gate + text backstop (captioner)": (real_gate, real_backstop),
    }
    scenarios = [(40, -10.0)] if quick else [(40, -10.0), (120, -10.0), (60, -3.0)]
    totals = {way: collections.Counter() for way in ways}
    with tempfile.TemporaryDirectory() as directory, ServerThread(EmbeddedServer(MoonshineRecognizer())) as server:
        for delay_ms, gain_db in scenarios:
            meeting, mic = scenario(Path(directory), delay_ms, gain_db)
            for way, (gate, backstop) in ways.items():
                engine.without_echo, engine.without_repeats = gate, backstop
                try:
                    finals = asyncio.run(_caption(server.base_url, mic, meeting))
                finally:
                    engine.without_echo, engine.without_repeats = real_gate, real_backstop
                heard = collections.Counter(w for t in finals if t.channel == "mic" for w in _words(t.text))
                totals[way]["doubled"] += sum((heard & only_meeting).values())
                totals[way]["meeting_words"] += sum(meeting_words.values())
                totals[way]["user_heard"] += sum((heard & user_words).values())
                totals[way]["user_words"] += sum(user_words.values())
    rows = {way: {"doubled": c["doubled"], "meeting_words": c["meeting_words"],
                  "doubled_share": round(c["doubled"] / c["meeting_words"], 3),
                  "user_lost": c["user_words"] - c["user_heard"], "user_words": c["user_words"],
                  "user_lost_share": round(1 - c["user_heard"] / c["user_words"], 3)}
            for way, c in totals.items()}
    results = {"scenarios": [f"{d} ms, {g:g} dB" for d, g in scenarios], "rows": rows}
    print(json.dumps(results), flush=True)
    return results


def markdown(capture: dict, bleed_results: dict) -> list[str]:
    lines = ["## Meeting audio", ""]
    for kind, rows in capture.items():
        if "skipped" in rows:
            lines.append(f"{kind}: not measured ({rows['skipped']})")
            continue
        lines += [f"Capture on a private {kind} server, each way in its own process, from the first chunk on "
                  "(CPU of the capturing process, user + system, over wall time; the sound server's own not counted):", ""]
        lines += table(["capture", "seconds", "share of one core"],
                       ([label, f"{row['wall_s']:.1f}", f"{row['cpu_share']:.2%}"] for label, row in rows.items()))
        lines.append("")
    lines += [
        "On speakers: the meeting says two sentences, the microphone hears them again "
        f"({'; '.join(bleed_results['scenarios'])} later and quieter) and the user talks over the second one, "
        "replayed through the engine with Moonshine, each way side by side. Doubled: meeting words captioned "
        "again as the user's; lost: the user's words missing from the user's captions (Moonshine loses some "
        "even alone).",
        "",
    ]
    lines += table(["way", "meeting words doubled", "user words lost"],
                   ([way, f"{row['doubled']} of {row['meeting_words']} ({row['doubled_share']:.0%})",
                     f"{row['user_lost']} of {row['user_words']} ({row['user_lost_share']:.0%})"]
                    for way, row in bleed_results["rows"].items()))
    return lines
