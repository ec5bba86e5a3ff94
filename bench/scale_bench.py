"""`captioner serve` with one worker process against one per core, per recognizer: the
concurrent real-time sessions each sustains (the rule of the recognizer section: p95
final delay within 2 s, every turn final), and the peak memory of each worker."""

from __future__ import annotations

import os
from pathlib import Path

from measure import ServerProcess, memory_mb, table
from recognizer_bench import DELAY_LIMIT_S, concurrency

from captioner.server.embedded import DEFAULT_LIMITS

# Up to one worker's session limit: beyond it, --workers 1 refuses sessions by design.
MAX_SESSIONS = DEFAULT_LIMITS.max_sessions


def workers_of(pid: int) -> list[int]:
    """The worker processes of a supervisor (not multiprocessing's resource tracker), or
    the process itself when it serves alone."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    workers = [int(child) for child in children if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]
    return workers or [pid]


def bench_workers(recognizers: dict[str, list[str]], quick: bool) -> dict:
    cores = os.cpu_count() or 1
    results: dict = {"cores": cores, "limit_p95_s": DELAY_LIMIT_S, "recognizers": {}}
    if quick:  # a smoke run: the default recognizer
        recognizers = {"moonshine": recognizers["moonshine"]}
    for name, extra in recognizers.items():
        rows = {}
        for workers in sorted({1, cores}):
            server = ServerProcess(name, ["--workers", str(workers), *extra])
            try:
                sustained = concurrency(server.url, "hello" if quick else "weather", 2 if quick else MAX_SESSIONS)
                peaks = [memory_mb(pid) for pid in workers_of(server.process.pid)]
            finally:
                server.stop()
            rows[workers] = {"sustained": sustained["sustained"], "at_least": sustained["at_least"],
                             "steps": sustained["steps"], "peak_rss_mb_per_worker": round(max(peaks), 1)}
        results["recognizers"][name] = rows
    return results


def markdown(results: dict) -> list[str]:
    lines = [
        "## Worker processes",
        "",
        f"`captioner serve --workers 1` against `--workers {results['cores']}` (one per core, the default; one "
        "decoding thread each), the clip replayed in real time by more and more concurrent sessions until the p95 "
        f"final delay exceeds {results['limit_p95_s']:g} s or a turn has no final. **sustained**: the most sessions "
        "within that rule (\"at least\" when the last step tried was still within it); **peak RSS per worker**: "
        "the largest worker's high-water resident memory, MB.",
        "",
    ]
    rows = []
    for name, by_workers in results["recognizers"].items():
        for workers, row in by_workers.items():
            sustained = f"{'at least ' if row['at_least'] else ''}{row['sustained']}"
            rows.append([name, workers, sustained, row["peak_rss_mb_per_worker"]])
    return lines + table(["recognizer", "workers", "sessions sustained", "peak RSS per worker MB"], rows)
