"""Exceptions that end a command, each with the exit code the CLI returns for it.

Plugins never see these: they learn about problems through `on_error` events. These are
for the code that runs a command, so that `captioner` can print one actionable line
and exit with a code a script can act on (documented in docs/cli.md).
"""

from __future__ import annotations


class CaptionerError(Exception):
    """A failure the user can act on; its message is one line, without secrets."""

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code  # a WebSocket close code, when one caused it


class UsageError(CaptionerError):
    """Bad command-line input, configuration, or plugin selection."""

    exit_code = 2
    kind = "usage"


class AuthError(CaptionerError):
    """The server rejected the API key or token."""

    exit_code = 3
    kind = "auth"


class ConnectionFailed(CaptionerError):
    """The server could not be reached, or the connection broke."""

    exit_code = 4
    kind = "connection"


class NoTermination(ConnectionFailed):
    """The server stayed silent after Terminate: the last finals may never come. Not retried."""


class AudioError(CaptionerError):
    """An audio source could not be opened or read."""

    exit_code = 5
    kind = "audio"


class ServerError(CaptionerError):
    """The server ended the session with an error close code."""

    exit_code = 6
    kind = "server"


class NotAStreamingServer(ServerError):
    """Connected, but the server does not speak the protocol: it never began a session,
    or sent nothing but frames that are not the protocol's."""


class MessageTooBig(ServerError):
    """The server sent a message larger than captioner reads. Not retried: it would again."""


class ProtocolError(ValueError):
    """A frame that does not follow the protocol. Decoders raise nothing else."""
