"""Caption latency as a live client sees `captioner serve`, side by side with an earlier
commit's server in the same run, so each change is a ratio, not a guess.

For each recognizer, the server of this checkout ("now") and the server of `BASELINE`
("before", from a git worktree, in the same environment) are measured alternately:

- the fixture meeting replayed in real time to one session: first partial after a
  turn's speech starts, the gap between changed partials within a turn, the final after
  the turn's last word ends (median and p90), server CPU per audio second;
- 1, 4, 8 and 12 concurrent real-time sessions of the meeting's first 20 s: final p90
  and first-partial p90 over every turn of every session, and turns without a final;
- real speech, not text-to-speech: recordings that ship inside the moonshine-voice
  package (a reading of the opening of A Tale of Two Cities, and Beckett's "Ever tried"),
  replayed at 4x, word error rate against the published texts.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

import soundfile

from measure import (FIXTURES, ROOT, ServerProcess, audio_seconds, overlaps, percentile, replay_timed, table,
                     word_error_rate)

from captioner.testing import TranscriptScript

# The last commit before the latency work: its server is "before".
BASELINE = "3220568"
STEPS = (1, 4, 8, 12)
ROUNDS = 3  # one-session replays per server, alternating; the figures are their medians
CLIP_S = 20.0

REAL_SPEECH = {
    "two_cities": "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it was "
    "the season of Darkness, it was the spring of hope, it was the winter of despair, we had everything before us, "
    "we had nothing before us, we were all going direct to Heaven, we were all going direct the other way, in "
    "short, the period was so far like the present period, that some of its noisiest authorities insisted on its "
    "being received, for good or for evil, in the superlative degree of comparison only.",
    "beckett": "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.",
}


def real_speech(directory: Path) -> dict[str, Path]:
    """The recordings, resampled to 16 kHz mono WAVs: nothing is downloaded."""
    import moonshine_voice
    import soxr

    assets = Path(moonshine_voice.__file__).parent / "assets"
    clips = {}
    for name in REAL_SPEECH:
        audio, rate = soundfile.read(assets / f"{name}.wav", dtype="float32")
        if audio.ndim > 1:
            audio = audio.mean(axis=1)
        path = directory / f"{name}.wav"
        soundfile.write(path, soxr.resample(audio, rate, 16000) if rate != 16000 else audio, 16000, subtype="PCM_16")
        clips[name] = path
    return clips


def start_server(checkout: Path, recognizer: str, extra: list[str]) -> ServerProcess:
    """`captioner serve` of a checkout (this one, or a worktree of an earlier commit)."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    if recognizer != "faster-whisper":
        env["CAPTIONER_LOAD_PLUGINS"] = ""  # the default plugins only: what this checkout ships
    # One process on both sides: the "before" server had no worker processes.
    workers = ["--workers", "1"] if checkout == ROOT else []
    return ServerProcess(recognizer, [*workers, *extra], checkout=checkout, env=env)


def turn_figures(timeline, script: TranscriptScript) -> dict[str, list[float]]:
    """Per scripted turn: the first partial after its start, the gaps between changed
    partials within it, and the final after its last word's end (seconds)."""
    first, gaps, finals = [], [], []
    for turn in script.turns:
        start, end = turn.start / 1000, turn.end / 1000
        shown = [(wall, t.display_text) for wall, t in timeline.partials if wall > start and overlaps(t, start, end)]
        if shown:
            first.append(shown[0][0] - start)
            changed = [wall for (wall, text), (_, before) in zip(shown[1:], shown) if text != before]
            times = [shown[0][0], *changed]
            gaps += [b - a for a, b in zip(times, times[1:])]
        final = next((wall for wall, t in timeline.finals if overlaps(t, end - 0.3, end)), None)
        if final is not None:
            finals.append(final - end)
    return {"first_partial": first, "partial_gap": gaps, "final": finals}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _p90(values: list[float]) -> float | None:
    return round(percentile(values, 0.9), 3) if values else None


def one_session(server: ServerProcess, wav: Path, script: TranscriptScript) -> dict:
    cpu = server.cpu_seconds()
    timeline = asyncio.run(replay_timed(wav, server.url))
    cpu = server.cpu_seconds() - cpu
    figures = turn_figures(timeline, script)
    return {
        "first_partial_median_s": _median(figures["first_partial"]),
        "partial_gap_median_s": _median(figures["partial_gap"]),
        "final_median_s": _median(figures["final"]),
        "final_p90_s": _p90(figures["final"]),
        "cpu_per_audio_s": round(cpu / audio_seconds(wav), 3),
        "turns": len(script.turns),
        "finals": len(figures["final"]),
    }


def concurrent(server: ServerProcess, wav: Path, script: TranscriptScript, sessions: int) -> dict:
    async def run_all():
        return await asyncio.gather(*(replay_timed(wav, server.url) for _ in range(sessions)), return_exceptions=True)

    # An overloaded server may fail a session (no Termination in time): its turns are without a final.
    results = asyncio.run(run_all())
    figures = [turn_figures(timeline, script) for timeline in results if not isinstance(timeline, BaseException)]
    finals = [d for f in figures for d in f["final"]]
    firsts = [d for f in figures for d in f["first_partial"]]
    return {"sessions": sessions, "final_p90_s": _p90(finals), "first_partial_p90_s": _p90(firsts),
            "turns_without_final": sessions * len(script.turns) - len(finals),
            "sessions_failed": sum(isinstance(timeline, BaseException) for timeline in results)}


def accuracy(server: ServerProcess, clips: dict[str, Path]) -> dict:
    wers = {}
    for name, wav in clips.items():
        timeline = asyncio.run(replay_timed(wav, server.url, speed=4.0))
        wers[name] = round(word_error_rate(REAL_SPEECH[name], " ".join(t.text for _, t in timeline.finals)), 4)
    return wers


def clip(directory: Path, seconds: float) -> tuple[Path, TranscriptScript]:
    """The meeting's first `seconds`, and the turns that end within it."""
    audio, rate = soundfile.read(FIXTURES / "meeting.wav", dtype="int16")
    path = directory / "meeting-start.wav"
    soundfile.write(path, audio[: int(seconds * rate)], rate)
    data = json.loads((FIXTURES / "meeting.json").read_text())
    data["turns"] = [t for t in data["turns"] if t["words"][-1]["end"] <= seconds * 1000 - 1000]
    (directory / "meeting-start.json").write_text(json.dumps(data))
    return path, TranscriptScript.load(directory / "meeting-start.json")


def bench_latency(recognizers: dict[str, list[str]], quick: bool) -> dict:
    results: dict = {"baseline": BASELINE, "recognizers": {}}
    steps = (2,) if quick else STEPS
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        before = root / "before"
        added = subprocess.run(["git", "worktree", "add", "--detach", str(before), BASELINE], cwd=ROOT,
                               capture_output=True, text=True)
        checkouts = {"before": before, "now": ROOT}
        if added.returncode != 0:  # a shallow clone: measure this checkout alone, and say so
            results["baseline_missing"] = added.stderr.strip().splitlines()[-1:]
            checkouts = {"now": ROOT}
        try:
            meeting = (FIXTURES / ("hello" if quick else "meeting")).with_suffix(".wav")
            script = TranscriptScript.load(meeting.with_suffix(".json"))
            short, short_script = clip(root, 8.0 if quick else CLIP_S)
            clips = real_speech(root)
            if quick:  # a smoke run: the shorter recording, the default recognizer
                clips = {"beckett": clips["beckett"]}
                recognizers = {"moonshine": recognizers["moonshine"]}
            for name, extra in recognizers.items():
                results["recognizers"][name] = compare(name, extra, checkouts, (meeting, script),
                                                       (short, short_script), steps, clips, 1 if quick else ROUNDS)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, capture_output=True)
    return results


def median_of_rounds(runs: list[dict]) -> dict:
    """Each figure's median over the rounds: a single replay's figures, CPU most, vary between runs."""
    figures = {key: _median([run[key] for run in runs if run[key] is not None]) for key in runs[0]}
    # A final missing in any round is missing: the count is the worst round's.
    return {**figures, "finals": min(run["finals"] for run in runs), "rounds": len(runs)}


def compare(name: str, extra: list[str], checkouts: dict[str, Path], meeting, short, steps, clips,
            rounds: int) -> dict:
    """Both servers, measured alternately: a busy moment falls on both."""
    servers = {label: start_server(path, name, extra) for label, path in checkouts.items()}
    section: dict = {label: {"steps": []} for label in servers}
    try:
        runs: dict[str, list[dict]] = {label: [] for label in servers}
        for _ in range(rounds):
            for label, server in servers.items():
                runs[label].append(one_session(server, *meeting))
                print(json.dumps({name: {label: runs[label][-1]}}), flush=True)
        for label, figures in runs.items():
            section[label]["one_session"] = median_of_rounds(figures)
        for sessions in steps:
            for label, server in servers.items():
                section[label]["steps"].append(concurrent(server, *short, sessions))
                print(json.dumps({name: {label: section[label]["steps"][-1]}}), flush=True)
        for label, server in servers.items():
            section[label]["real_speech_wer"] = accuracy(server, clips)
    finally:
        for label, server in servers.items():
            section[label]["peak_rss_mb"] = round(server.peak_rss_mb(), 1)
            server.stop()
    return section


def _ratio(now, before) -> str:
    return f"{now / before:.2f}" if now is not None and before else "-"


def markdown(results: dict) -> list[str]:
    lines = [
        "## Caption latency",
        "",
        f"A live client's view of `captioner serve`, this commit (**now**) side by side with the server of "
        f"`{results['baseline']}` (**before**, the last commit before the latency work), measured alternately in this "
        "run. One session: the fixture meeting in real time. **first partial**: from the start of a turn's speech "
        "to its first partial; **partial gap**: between partials of a turn whose text changed; **final**: from the "
        "end of the turn's last word to its final; **CPU**: server CPU seconds per audio second. Medians unless "
        "marked, each the median of the rounds (the two servers replayed alternately, "
        f"{ROUNDS} times each in a full run); ratio is now / before (below 1 is better).",
        "",
    ]
    if "baseline_missing" in results:
        lines += [f"The baseline commit is not in this clone ({' '.join(results['baseline_missing'])}): only **now** "
                  "was measured.", ""]
    empty = {"one_session": {}, "real_speech_wer": {}, "steps": []}
    rows = []
    for name, section in results["recognizers"].items():
        now, before = section["now"], section.get("before", empty)
        for key, label in (("first_partial_median_s", "first partial s"), ("partial_gap_median_s", "partial gap s"),
                           ("final_median_s", "final s"), ("final_p90_s", "final p90 s"),
                           ("cpu_per_audio_s", "CPU per audio s")):
            b, n = before["one_session"].get(key), now["one_session"][key]
            rows.append([name, label, b, n, _ratio(n, b)])
        for text, n in now["real_speech_wer"].items():
            b = before["real_speech_wer"].get(text)
            rows.append([name, f"real speech WER, {text}", "-" if b is None else f"{b:.1%}", f"{n:.1%}", _ratio(n, b)])
    lines += table(["recognizer", "figure", "before", "now", "ratio"], rows)
    lines += ["", f"Concurrent real-time sessions of the meeting's first {CLIP_S:g} s (p90 over every turn of every "
              "session; turns without a final in brackets, when any):", ""]

    def final_p90(step: dict | None) -> str:
        if step is None:
            return "-"
        missing = step["turns_without_final"]
        return f"{step['final_p90_s']}" + (f" ({missing} without a final)" if missing else "")

    step_rows = []
    for name, section in results["recognizers"].items():
        befores = section.get("before", empty)["steps"] or [None] * len(section["now"]["steps"])
        for b, n in zip(befores, section["now"]["steps"]):
            step_rows.append([name, n["sessions"], final_p90(b), final_p90(n), b["first_partial_p90_s"] if b else "-",
                              n["first_partial_p90_s"]])
    lines += table(["recognizer", "sessions", "final p90 s before", "final p90 s now", "first partial p90 s before",
                    "first partial p90 s now"], step_rows)
    lines += ["", "What a user sees, in this run (the sessions start together, so their turns end together: a "
              "burst, harsher than meetings that start at different times):", ""]
    for name, section in results["recognizers"].items():
        for step in section["now"]["steps"]:
            lines.append(f"- {name}, {step['sessions']} session(s): in 9 turns of 10 the first words within "
                         f"{step['first_partial_p90_s']} s of the speaker starting, and the final within "
                         f"{step['final_p90_s']} s of the speaker stopping"
                         + (f"; {step['turns_without_final']} turn(s) without a final" if step["turns_without_final"] else "") + ".")
    return lines
