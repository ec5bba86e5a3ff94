"""When to reconnect, and how long to wait: bounded exponential backoff with jitter.

Closes that a retry cannot fix (a rejected key, no funds, a paid-only feature, a bad
sample rate, invalid input) stop at once. Everything else (a dropped connection, a
server error, a session that reached its maximum duration or expired) is retried.
The backoff starts again after a healthy session, so a long meeting with a drop every
hour reconnects fast every time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import (
    AuthError,
    CaptionerError,
    ConnectionFailed,
    MessageTooBig,
    NoTermination,
    NotAStreamingServer,
    ServerError,
)
from ..protocol import closecodes


@dataclass(frozen=True)
class ReconnectPolicy:
    max_attempts: int = 10  # failed attempts in a row before giving up
    first_delay: float = 0.5  # seconds
    max_delay: float = 10.0
    first_session_attempts: int = 2  # a server that never answered at all: give up sooner


def retryable(error: CaptionerError, began_before: bool = True) -> bool:
    """Whether another session could fix `error`. A server that is not a streaming server
    is worth another try only if it began sessions before in this meeting (a hiccup);
    one that stayed silent after Terminate, or sent a message too big to read, is not."""
    if isinstance(error, (AuthError, NoTermination, MessageTooBig)):
        return False
    if isinstance(error, NotAStreamingServer):
        return began_before
    if isinstance(error, ServerError):
        return error.code not in closecodes.NOT_RETRYABLE
    return isinstance(error, ConnectionFailed)


class Backoff:
    def __init__(self, policy: ReconnectPolicy, rng: random.Random | None = None):
        self.policy = policy
        self.failures = 0  # in a row
        self.rng = rng or random.Random()

    def healthy(self) -> None:
        """A session worked (it began and delivered something): start over."""
        self.failures = 0

    def next_delay(self, ever_connected: bool) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        self.failures += 1
        limit = self.policy.max_attempts if ever_connected else self.policy.first_session_attempts
        if self.failures > limit:
            return None
        ceiling = min(self.policy.max_delay, self.policy.first_delay * 2 ** (self.failures - 1))
        return ceiling * self.rng.uniform(0.5, 1.0)  # jitter: clients dropped together do not return together
