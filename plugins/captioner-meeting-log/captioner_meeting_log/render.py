"""A meeting log (JSON lines) to a Markdown transcript. Pure: reads entries, writes text.

A log left by a crash may end in a half-written line; it is skipped and counted, never
fatal, so every complete final still makes it into the transcript.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Log:
    finals: list[dict] = field(default_factory=list)
    sessions: list[dict] = field(default_factory=list)
    translations: dict[tuple, dict[str, str]] = field(default_factory=dict)  # (session, turn) -> language -> text
    damaged_lines: int = 0


def read_log(path: Path) -> Log:
    log = Log()
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                log.damaged_lines += 1
                continue
            if not isinstance(entry, dict):
                log.damaged_lines += 1
                continue
            kind = entry.get("type")
            if kind == "final":
                log.finals.append(entry)
            elif kind == "session":
                log.sessions.append(entry)
            elif kind == "translation":
                key = (entry.get("session_id"), entry.get("turn_order"))
                log.translations.setdefault(key, {})[entry.get("language", "?")] = entry.get("text", "")
    return log


def clock(ms: int | None) -> str:
    seconds = max(0, (ms or 0) // 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


def render_markdown(log: Log, title: str = "Meeting transcript") -> str:
    finals = sorted(log.finals, key=lambda f: (f.get("start_ms") or 0))
    lines = [f"# {title}", ""]
    started = log.sessions[0].get("started_at", "") if log.sessions else ""
    if finals:
        duration = (finals[-1].get("end_ms") or 0) - (finals[0].get("start_ms") or 0)
    else:
        duration = 0
    speakers = sorted({_who(f) for f in finals if _who(f)})
    facts = []
    if started:
        facts.append(f"**Date:** {started[:16].replace('T', ' ')} UTC")
    facts.append(f"**Duration:** {clock(duration)}")
    facts.append(f"**Speakers:** {', '.join(speakers) if speakers else 'not labelled'}")
    facts.append(f"**Turns:** {len(finals)}")
    lines += [" · ".join(facts), ""]
    for final in finals:
        who = f" {_who(final)}" if _who(final) else ""
        lines.append(f"**[{clock(final.get('start_ms'))}]{who}:** {final.get('text', '')}")
        for language, text in sorted(log.translations.get((final.get("session_id"), final.get("turn_order")), {}).items()):
            lines.append(f"> *{language}:* {text}")
        lines.append("")
    if log.damaged_lines:
        lines.append(f"*{log.damaged_lines} damaged line(s) in the log were skipped.*")
        lines.append("")
    return "\n".join(lines)


def _who(final: dict) -> str | None:
    """Who spoke, as captioner showed it ("You", "Meeting A"); a log written before
    channels has the speaker label only."""
    return final.get("label") or final.get("speaker")


def markdown_path(log_path: Path) -> Path:
    return log_path.with_suffix(".md")
