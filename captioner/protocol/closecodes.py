"""WebSocket close codes of AssemblyAI's streaming service, and what a user should do.

The meanings follow the official SDK's table (../shared/PROTOCOL.md). Anything but 1000
is an error; the codes in NOT_RETRYABLE mean a reconnect would fail the same way.
"""

from __future__ import annotations

NORMAL = 1000
MESSAGE_TOO_BIG = 1009

MEANINGS: dict[int, str] = {
    1012: "service restart",  # a `captioner serve` that drains: resume on another instance
    1013: "temporary server condition",
    3005: "server error",
    3006: "input validation error",
    3007: "audio chunk duration violation",
    3008: "maximum session duration exceeded",
    3009: "too many concurrent sessions",
    4000: "sample rate must be a positive integer",
    4001: "not authorized",
    4002: "insufficient funds",
    4003: "this feature is paid-only",
    4004: "session not found",
    4008: "session expired",
    4010: "session previously closed",
    4029: "audio sent faster than real time",
    4030: "session is handled by another websocket",
    4031: "session idle for too long",
    4032: "audio duration is too short",
    4033: "audio duration is too long",
    4034: "audio too small to transcode",
    4100: "invalid JSON",
    4101: "invalid message schema",
    4102: "too many streams for this account",
    4103: "session reconnected elsewhere",
}

# What the user can do about it, where there is something to say.
ADVICE: dict[int, str] = {
    4001: "check ASSEMBLYAI_API_KEY (or the token)",
    4002: "add funds to the AssemblyAI account",
    4003: "add a payment method to the AssemblyAI account",
    4029: "replay in real time (drop --fast) when talking to the real service",
    3009: "close other sessions or wait",
    4102: "close other sessions or wait",
}

AUTH_FAILURES = frozenset({4001, 4002, 4003})
# 1008 and 1009: a policy or size limit our own messages broke; a retry would break it again.
NOT_RETRYABLE = AUTH_FAILURES | {1008, 1009, 4000, 3006, 4100, 4101, 4104}


def describe(code: int | None, reason: str = "") -> str:
    """One line for a close: 'closed with 4001 (not authorized): check ASSEMBLYAI_API_KEY'."""
    meaning = MEANINGS.get(code or 0) or reason or "no reason given"
    text = f"closed with {code} ({meaning})"
    if reason and code in MEANINGS and not meaning.lower().startswith(reason.lower()):
        detail = reason[len(meaning):].lstrip(" :") if reason.lower().startswith(meaning.lower()) else reason
        text += f": {detail}" if detail else ""
    advice = ADVICE.get(code or 0)
    return f"{text}; {advice}" if advice else text
