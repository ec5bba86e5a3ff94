"""What `captioner serve` tells an orchestrator: Prometheus metrics, health and readiness.

The metrics are prometheus-client's, module-level as that library expects, so they are
per process. With `--workers N` each worker process writes its figures to files in
`PROMETHEUS_MULTIPROC_DIR` (set by the supervisor before any worker starts) and any
worker's `/metrics` reads all of them: the instance's figures, whichever worker answers.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import REGISTRY
from prometheus_client.multiprocess import MultiProcessCollector

SESSIONS_ACTIVE = Gauge("captioner_sessions_active", "Streaming sessions open now", multiprocess_mode="livesum")
SESSIONS = Counter("captioner_sessions", "Streaming sessions asked for, by outcome", ["outcome"])
AUDIO_SECONDS = Counter("captioner_audio_seconds", "Seconds of audio received")
FINALS = Counter("captioner_finals", "Final transcripts sent")
DECODE_SECONDS = Histogram("captioner_decode_seconds", "Time one decode took, by kind", ["kind"],
                           buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
FINAL_DELAY = Histogram("captioner_final_delay_seconds",
                        "From the end of a turn's audio reaching the server to its final being sent",
                        buckets=(0.1, 0.25, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5))
PARTIALS_HELD = Counter("captioner_partials_held_back",
                        "Partials not decoded when due: the CPU budget or a busy decode pool held them back")
DECODE_BUSY = Gauge("captioner_decode_pool_busy", "Decodes queued or running", multiprocess_mode="livesum")
DRAINING = Gauge("captioner_draining", "1 while the instance drains", multiprocess_mode="max")

for outcome in ("accepted", "refused", "drained"):
    SESSIONS.labels(outcome)  # every outcome is reported from the start, at 0


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus text format, and their content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
