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
        assert row["finals"] >= 1 and row["final_delay_median_s"] is not None  # finals were matched to the script
        assert section["peak_rss_mb"] > 0 and section["concurrency"]["steps"]
    assert results["capture"]["chunks"] == 100 and results["capture"]["cpu_share"] > 0  # 5 s of 50 ms chunks
    plugins = results["plugins"]["plugins"]
    assert set(plugins) == {"subtitles (srt+vtt)", "meeting log (fsync)", "translation es (apertium, track on disk)"}
    assert all(row["finals"] == results["plugins"]["finals"] == 13 for row in plugins.values())
    whisper = results["recognizers"]["faster-whisper"]  # the plugin and its test model are installed by make setup
    assert whisper["rows"][0]["fixture"] == "hello" and whisper["concurrency"]["steps"]
    latency = results["latency"]["recognizers"]["moonshine"]
    for label in ("before", "now"):  # a clone has the baseline commit; the quick run measures both servers
        one = latency[label]["one_session"]
        assert one["finals"] == one["turns"] == 1 and one["final_median_s"] is not None and one["cpu_per_audio_s"] > 0
        assert one["rounds"] == 1  # a full run takes the median of three
        (step,) = latency[label]["steps"]
        assert step["sessions"] == 2 and step["turns_without_final"] == 0
        assert set(latency[label]["real_speech_wer"]) == {"beckett"}
    workers = results["workers"]["recognizers"]["moonshine"]  # --workers 1 and one per core
    assert set(workers) == {"1", str(results["machine"]["cores"])}
    assert all(row["steps"] and row["peak_rss_mb_per_worker"] > 0 for row in workers.values())
    clients = results["clients"]
    assert set(clients["clients"]) == {"captioner", "sdk-async", "sdk-sync"} and set(clients["ratios"]) == {"sdk-async", "sdk-sync"}
    # Every Turn the fake server sent reached each client's handler, and was matched to its send time.
    assert all(row["turns_missed"] == 0 and row["turn_delay"]["count"] > 0 for row in clients["clients"].values())
    realtime = results["realtime"]["rows"]
    assert len(realtime) == 2 and all(row["chunks"] == 100 and row["turns_missed"] == 0 for row in realtime.values())
    soak = results["soak"]
    assert soak["finals_logged"] == soak["finals_scripted"] == 26 and soak["finals_equal_script"]
    assert len(soak["peak_rss_mb"]) == 3 and soak["translations_logged"] == 26 and soak["overlay_events_viewed"] > 0
    for kind in ("pulseaudio", "pipewire"):
        rows = results["meeting_capture"][kind]
        assert rows["microphone + meeting audio"]["chunks"] == {"mic": 100, "meeting": 100}
        assert all(row["cpu_share"] > 0 for row in rows.values())
    bleed = results["bleed"]["rows"]
    assert set(bleed) == {"nothing done", "text backstop alone", "echo gate alone", "echo gate + text backstop (captioner)"}
    assert all(row["meeting_words"] > 0 and row["user_words"] > 0 for row in bleed.values())
    resilience = results["resilience"]
    assert resilience["survived"] and resilience["finals_lost"] == resilience["finals_duplicated"] == 0
    assert resilience["faults_fired"] == resilience["faults_injected"] == 24
    report = (tmp_path / "BENCHMARKS.md").read_text()
    for heading in ("## Caption latency", "## Worker processes", "## captioner's client against the official SDK", "## The real-time audio path", "## Soak", "## Resilience"):
        assert heading in report
    assert "| moonshine | hello |" in report and "| faster-whisper | hello |" in report and results["machine"]["commit"] in report
