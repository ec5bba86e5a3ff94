"""Text from the network is untrusted: made safe before a plugin, a terminal or a file sees it.

A server (or a translation service) can send any string. Escape sequences in it would
reach the terminal (a title change, a screen clear, a clipboard write through OSC 52),
control characters would break caption files (a blank line ends an SRT cue), a lone
surrogate would make writing a UTF-8 file fail, and a server that echoes the API key in
a warning would have it printed and logged. `Untrusted(secrets).text(s)` removes escape
sequences, turns line breaks and tabs into spaces (one space for a run), drops every other control character
(C0, DEL, C1, and the bidirectional overrides that reorder what a terminal shows),
replaces lone surrogates, and masks the secrets with ***. Pure functions; no I/O.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable, TypeVar

MASK = "***"

_ESCAPE_SEQUENCES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: cursor moves, colours, screen clears
    r"|\x1b[\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC, DCS, SOS, PM, APC strings (OSC 52: the clipboard)
    r"|\x1b[ -/]*[0-~]"  # two-character escapes (ESC c resets the terminal)
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
    r"|[\x90\x98\x9d\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # 8-bit string controls
)
_SPACES = re.compile(r"[\t\n\v\f\r\x85\u2028\u2029]")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_RUNS_OF_SPACES = re.compile(r"  +")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

T = TypeVar("T")


def clean_text(text: str) -> str:
    """`text` without escape sequences or control characters; line breaks become spaces."""
    if not _UNSAFE.search(text):
        return text
    text = _ESCAPE_SEQUENCES.sub("", text)
    text = _CONTROLS.sub("", _SPACES.sub(" ", text))
    return _SURROGATES.sub("\ufffd", _RUNS_OF_SPACES.sub(" ", text))


class Untrusted:
    """Makes network text safe, masking `secrets` (the API key, a token) wherever they appear."""

    def __init__(self, secrets: Iterable[str | None] = ()):
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def text(self, text: str) -> str:
        return self._mask(clean_text(self._mask(text)))  # masked before and after: controls may split a key

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def fields(self, value: T) -> T:
        """A frozen dataclass (or a tuple of them) with every string field made safe; the
        same object when nothing needed it, so the usual case costs one scan per string."""
        if isinstance(value, str):
            return self.text(value)  # type: ignore[return-value]
        if isinstance(value, tuple):
            cleaned = tuple(self.fields(item) for item in value)
            return value if all(a is b for a, b in zip(cleaned, value)) else cleaned  # type: ignore[return-value]
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {}
            for field in dataclasses.fields(value):
                current = getattr(value, field.name)
                if isinstance(current, (str, tuple)) or dataclasses.is_dataclass(current):
                    cleaned = self.fields(current)
                    if cleaned is not current:
                        changes[field.name] = cleaned
            return dataclasses.replace(value, **changes) if changes else value
        return value
