"""Audio as every source delivers it: 16-bit little-endian mono PCM chunks at the session rate.

A source is an object with `sample_rate`, `chunk_ms`, `description` and an async
`chunks()` iterator of int16 bytes. Pacing is the source's business: a microphone is
paced by the device, a file replay by its own clock, so the session can send each chunk
the moment it arrives. `PcmConverter` and `Rechunker` turn whatever a device or a file
gives into such chunks.
"""

from __future__ import annotations

from typing import AsyncIterator, Protocol

import numpy as np
import soxr

from ..protocol.messages import DEFAULT_SAMPLE_RATE  # noqa: F401  (sources default to the session rate)

DEFAULT_CHUNK_MS = 50  # what AssemblyAI recommends; it rejects chunks under 50 ms or over 1 s


class AudioSource(Protocol):
    sample_rate: int
    chunk_ms: int
    description: str

    def chunks(self) -> AsyncIterator[bytes]: ...


class PcmConverter:
    """Float or int16 frames of any rate and channel count, to int16 mono at `out_rate`.

    Streaming: state carries across calls, so a long file or a live device converts in
    bounded memory. soxr does the resampling (high quality, the same library sox uses).
    """

    def __init__(self, in_rate: int, out_rate: int):
        self.in_rate, self.out_rate = in_rate, out_rate
        self._resampler = (
            soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
            if in_rate != out_rate
            else None
        )

    @property
    def is_identity(self) -> bool:
        return self._resampler is None

    def convert(self, frames: np.ndarray, last: bool = False) -> bytes:
        if frames.dtype == np.int16:
            if frames.ndim == 1 and self._resampler is None:
                return frames.astype("<i2", copy=False).tobytes()
            samples = frames.astype(np.float32) / 32768.0
        else:
            samples = frames.astype(np.float32, copy=False)
        if samples.ndim == 2:
            samples = samples.mean(axis=1, dtype=np.float32)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=last)
        return float_to_pcm16(samples)


def float_to_pcm16(samples: np.ndarray) -> bytes:
    # 32768 is the scale libsndfile uses to read int16 as float, so int16 files
    # come back bit-exact when no resampling is needed.
    # Clipped before scaling, so a huge sample cannot overflow into a numpy warning.
    scaled = np.rint(np.clip(samples, -1.0, 32767 / 32768) * 32768.0)
    return scaled.astype("<i2").tobytes()


def chunk_bytes(sample_rate: int, chunk_ms: int) -> int:
    """Bytes of 16-bit mono audio in a chunk, rounded up: the service refuses short chunks."""
    return -(-sample_rate * chunk_ms // 1000) * 2


class Rechunker:
    """Cuts a byte stream into fixed-size chunks; the tail comes out at the end."""

    def __init__(self, chunk_bytes: int):
        self.chunk_bytes = chunk_bytes
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._pending += data
        size = self.chunk_bytes
        whole = len(self._pending) // size * size
        chunks = [bytes(self._pending[i : i + size]) for i in range(0, whole, size)]
        del self._pending[:whole]
        return chunks

    def flush(self, pad: bool = False) -> bytes:
        """What is left; with `pad`, filled with silence to a whole chunk."""
        tail, self._pending = bytes(self._pending), bytearray()
        if pad and tail:
            tail += bytes(self.chunk_bytes - len(tail))
        return tail
