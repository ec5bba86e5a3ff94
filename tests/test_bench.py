"""The benchmark runs and writes its files; it checks no timing (that is the benchmark's job)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT


def test_quick_benchmark_writes_both_files(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert results["quick"] is True and results["machine"]["cores"] >= 1
    for name in ("moonshine", "pocketsphinx"):
        section = results["recognizers"][name]
        (row,) = section["rows"]
        assert row["fixture"] == "hello" and 0 <= row["wer"] <= 1 and row["rtf_cpu"] > 0
        assert section["peak_rss_mb"] > 0 and section["concurrency"]["steps"]
    assert results["capture"]["chunks"] == 100 and results["capture"]["cpu_share"] > 0  # 5 s of 50 ms chunks
    plugins = results["plugins"]["plugins"]
    assert set(plugins) == {"subtitles (srt+vtt)", "meeting log (fsync)", "translation es (apertium, track on disk)"}
    assert all(row["finals"] == results["plugins"]["finals"] == 13 for row in plugins.values())
    report = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| moonshine | hello |" in report and results["machine"]["commit"] in report
