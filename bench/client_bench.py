"""captioner's client against the official SDK, and the real-time audio path.

Both run the client alone in a probe process (`probe_client.py`) against the fake
server, which runs in this process and records when it sent each `Turn` and when each
audio chunk arrived, on the system-wide monotonic clock the probe also reads.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from measure import FIXTURES, ROOT, audio_seconds, looped_meeting, ratio, spread_ms, table

from captioner.testing import FakeServerThread, FakeStreamingServer, TranscriptScript

PROBE = Path(__file__).with_name("probe_client.py")
CLIENTS = ("captioner", "sdk-async", "sdk-sync")
CHUNK_S = 0.05


def probe(client: str, script: TranscriptScript, wav: Path, *flags: str) -> tuple[dict, object]:
    """Run one probe against a fresh fake server; its figures and the server's record of it."""
    with FakeServerThread(FakeStreamingServer(script)) as server:
        run = subprocess.run(
            [sys.executable, str(PROBE), client, server.url, str(wav), *flags],
            capture_output=True, text=True, cwd=ROOT, timeout=3600,
        )
        if run.returncode != 0:
            raise SystemExit(f"probe {client} failed: {run.stderr[-1500:]}")
        (connection,) = server.connections
    return json.loads(run.stdout.strip().splitlines()[-1]), connection


def turn_delays(figures: dict, connection) -> tuple[list[float], int]:
    """Seconds from the server sending each Turn to the client's handler getting it.

    A Turn message of the fake server is identified by its turn order, end of turn and
    word count (each partial adds one word). Returns the delays and how many Turns the
    server sent that the handler never got.
    """
    sent: dict[tuple, list[float]] = {}
    for frame in connection.frames:
        if frame.direction == "out" and isinstance(frame.data, str):
            message = json.loads(frame.data)
            if message.get("type") == "Turn":
                key = (message["turn_order"], bool(message["end_of_turn"]), len(message["words"]))
                sent.setdefault(key, []).append(frame.at)
    total = sum(len(times) for times in sent.values())
    found = []
    for at, order, final, count in figures["receipts"]:
        times = sent.get((order, final, count))
        if times:
            found.append(at - times.pop(0))
    return found, total - len(found)


def compare_clients(loops: int, rounds: int) -> dict:
    """The fixture meeting looped, streamed as fast as the server takes it, by each client in turn."""
    with tempfile.TemporaryDirectory() as directory:
        wav, script = looped_meeting(Path(directory), loops)
        seconds = audio_seconds(wav)
        runs: dict[str, list[dict]] = {client: [] for client in CLIENTS}
        delays: dict[str, list[float]] = {client: [] for client in CLIENTS}
        for round_number in range(rounds):
            # Interleaved, and each round in another order, so drift in the machine's load
            # falls on every client alike.
            order = CLIENTS[round_number % len(CLIENTS):] + CLIENTS[: round_number % len(CLIENTS)]
            for client in order:
                figures, connection = probe(client, script, wav)
                found, missed = turn_delays(figures, connection)
                delays[client] += found
                runs[client].append(
                    {
                        "round": round_number,
                        "audio_per_wall_s": round(seconds / figures["wall_s"], 1),
                        "cpu_s_per_audio_hour": round(figures["cpu_s"] / seconds * 3600, 1),
                        "peak_rss_mb": round(figures["maxrss_mb"], 1),
                        "turns_received": len(found),
                        "turns_missed": missed,
                    }
                )
                print(json.dumps({"client": client, **runs[client][-1]}), flush=True)
    summary = {}
    for client in CLIENTS:
        rows = runs[client]
        summary[client] = {
            "audio_per_wall_s": statistics.median(r["audio_per_wall_s"] for r in rows),
            "cpu_s_per_audio_hour": statistics.median(r["cpu_s_per_audio_hour"] for r in rows),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
            "turn_delay": spread_ms(delays[client]),
            "turns_missed": sum(r["turns_missed"] for r in rows),
        }
    ratios = {}
    for sdk in CLIENTS[1:]:
        # Per round, captioner's figure over the SDK's in the same round; the median of those.
        per_round = lambda key: statistics.median(
            c[key] / s[key] for c, s in zip(runs["captioner"], runs[sdk]) if s[key]
        )
        ratios[sdk] = {
            "audio_per_wall_s": round(per_round("audio_per_wall_s"), 2),
            "cpu_s_per_audio_hour": round(per_round("cpu_s_per_audio_hour"), 2),
            "peak_rss_mb": round(per_round("peak_rss_mb"), 2),
            "turn_delay_median": ratio(summary["captioner"]["turn_delay"]["median_ms"], summary[sdk]["turn_delay"]["median_ms"]),
            "turn_delay_p99": ratio(summary["captioner"]["turn_delay"]["p99_ms"], summary[sdk]["turn_delay"]["p99_ms"]),
        }
    figures = {"audio_s": round(seconds, 1), "rounds": rounds, "clients": summary, "ratios": ratios, "runs": runs}
    print(json.dumps({"ratios": ratios}), flush=True)
    return figures


def realtime_path(clip: str) -> dict:
    """Chunk send times against the 50 ms schedule at real-time pacing, without and with a blocking plugin."""
    wav = FIXTURES / f"{clip}.wav"
    script = TranscriptScript.load(FIXTURES / f"{clip}.json")
    rows = {}
    for label, flags in (("no plugins", ()), ("a plugin blocking 0.5 s per event", ("--slow-plugin",))):
        figures, connection = probe("captioner", script, wav, "--realtime", *flags)
        arrivals = [f.at for f in connection.frames if f.direction == "in" and isinstance(f.data, bytes)]
        # Chunk k is due k x 50 ms after the schedule's start; the start is where the
        # earliest chunk says it is (the first may wait for the handshake), so each
        # figure is how late a chunk reached the server against its slot.
        origin = min(at - k * CHUNK_S for k, at in enumerate(arrivals))
        deviations = [at - origin - k * CHUNK_S for k, at in enumerate(arrivals)]
        found, missed = turn_delays(figures, connection)
        rows[label] = {
            "chunks": len(arrivals),
            "jitter": spread_ms(deviations),
            "cpu_share": round(figures["cpu_s"] / figures["wall_s"], 4),
            "turn_delay": spread_ms(found),
            "turns_missed": missed,
        }
        print(json.dumps({label: rows[label]}), flush=True)
    return {"clip": clip, "audio_s": round(audio_seconds(wav), 1), "rows": rows}


def markdown(clients: dict, realtime: dict) -> list[str]:
    lines = [
        "## captioner's client against the official SDK",
        "",
        f"The fixture meeting looped to {clients['audio_s']:g} s of audio, streamed in 50 ms chunks as fast as "
        "the fake server takes them, by captioner (`Engine` with one async plugin) and by the official "
        "`assemblyai` v3 SDK's `AsyncStreamingClient` and `StreamingClient`, each alone in a probe process "
        f"(`bench/probe_client.py`), {clients['rounds']} interleaved rounds in rotating order.",
        "",
        "- **audio s / wall s**: seconds of audio streamed per wall second, connect to `Termination` (median of rounds; higher is faster).",
        "- **CPU s / audio hour**: the probe process's CPU seconds (all threads, after imports) per hour of audio (median of rounds).",
        "- **peak RSS**: the probe process's high-water resident memory, MB (max of rounds).",
        "- **Turn delay**: from the fake server handing a `Turn` message to its socket to captioner's "
        "`on_partial`/`on_final` hook or the SDK's `Turn` handler running, on the system-wide monotonic clock; "
        "median and p99 over every Turn of every round, ms.",
        "",
    ]
    lines += table(
        ["client", "audio s / wall s", "CPU s / audio hour", "peak RSS MB", "Turn delay median ms",
         "Turn delay p99 ms", "Turns handled (missed)"],
        (
            [client, row["audio_per_wall_s"], row["cpu_s_per_audio_hour"], row["peak_rss_mb"],
             row["turn_delay"]["median_ms"], row["turn_delay"]["p99_ms"],
             f"{row['turn_delay']['count']} ({row['turns_missed']})"]
            for client, row in clients["clients"].items()
        ),
    )
    lines += [
        "",
        "Ratios captioner / SDK, per round (same round, side by side) then the median; for the delays, of the "
        "pooled figures. Below 1 means captioner uses less (CPU, memory, delay); above 1 in audio s / wall s "
        "means captioner streams faster.",
        "",
    ]
    lines += table(
        ["against", "audio s / wall s", "CPU s / audio hour", "peak RSS", "Turn delay median", "Turn delay p99"],
        (
            [sdk, r["audio_per_wall_s"], r["cpu_s_per_audio_hour"], r["peak_rss_mb"], r["turn_delay_median"],
             r["turn_delay_p99"]]
            for sdk, r in clients["ratios"].items()
        ),
    )
    lines += [
        "",
        "## The real-time audio path",
        "",
        f"The fixture `{realtime['clip']}` ({realtime['audio_s']:g} s) replayed by captioner at real time in 50 ms "
        "chunks to the fake server. **Jitter**: how late each chunk reached the server against its slot "
        "(k x 50 ms after the schedule's start, placed by the earliest chunk), ms, so it includes loopback delivery. **CPU share**: the whole "
        "client process's CPU seconds per wall second (1.0 = one core). The second row adds a plugin whose "
        "`on_partial` and `on_final` block for 0.5 s each: audio must go out on schedule all the same.",
        "",
    ]
    return lines + table(
        ["client", "chunks", "jitter median ms", "jitter p99 ms", "jitter max ms", "CPU share",
         "Turn delay median ms", "Turns handled (missed)"],
        (
            [f"captioner, {label}", row["chunks"], row["jitter"]["median_ms"], row["jitter"]["p99_ms"],
             row["jitter"]["max_ms"], f"{row['cpu_share']:.2%}", row["turn_delay"]["median_ms"],
             f"{row['turn_delay']['count']} ({row['turns_missed']})"]
            for label, row in realtime["rows"].items()
        ),
    )
