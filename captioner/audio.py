"""Audio sources: anything that yields 16-bit mono PCM chunks at the session's rate.

A source is an object with `sample_rate`, `chunk_ms`, `description` and an async
`chunks()` iterator of little-endian int16 bytes. Pacing is the source's business: a
microphone is paced by the device, a file replay by its own clock, so the session can
send each chunk the moment it arrives.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import AsyncIterator, Callable, Protocol

import numpy as np
import soundfile
import soxr

from .errors import AudioError
from .events import CaptionError

DEFAULT_SAMPLE_RATE = 16000
DEFAULT_CHUNK_MS = 50  # what AssemblyAI recommends; it rejects chunks under 50 ms or over 1 s
READ_SECONDS = 1.0  # how much of a file one blocking read takes, off the event loop


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


class Pacer:
    """Releases chunk n at start + n * interval: a schedule, so delays never accumulate."""

    def __init__(
        self,
        interval: float,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], "asyncio.Future | object"] = asyncio.sleep,
    ):
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._start: float | None = None
        self._count = 0

    async def wait(self) -> None:
        now = self._clock() if self._clock else asyncio.get_running_loop().time()
        if self._start is None:
            self._start = now
        due = self._start + self._count * self.interval
        self._count += 1
        if due > now:
            await self._sleep(due - now)


class WavReplaySource:
    """Replays an audio file (anything libsndfile reads) as if it were a microphone.

    `speed` 1.0 paces chunks in real time, N paces N times faster, None sends as fast
    as the session takes them (for local servers only: the real service closes a
    session that sends faster than real time with 4029).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        chunk_ms: int = DEFAULT_CHUNK_MS,
        speed: float | None = 1.0,
        clock: Callable[[], float] | None = None,
        sleep=asyncio.sleep,
    ):
        self.path = Path(path)
        self.live = speed is not None  # paced like a microphone; unpaced, it waits for the network
        self.sample_rate = sample_rate
        self.chunk_ms = chunk_ms
        self.speed = speed
        self._file = open_audio_file(self.path)
        self._report: Callable[[CaptionError], None] | None = None
        self._warned_not_finite = False
        self._pacer = Pacer(chunk_ms / 1000 / speed, clock, sleep) if speed else None
        info = self._file
        self.file_rate, self.file_channels = info.samplerate, info.channels
        self.duration_seconds = info.frames / info.samplerate
        self.description = (
            f"{self.path.name} ({info.samplerate} Hz, {info.channels} ch, {info.subtype_info})"
        )

    def attach(self, report: Callable[[CaptionError], None]) -> None:
        """Where to report survived problems (samples that are not numbers): on_error."""
        self._report = report

    async def chunks(self) -> AsyncIterator[bytes]:
        converter = PcmConverter(self.file_rate, self.sample_rate)
        # A 16-bit mono file at the session rate is read as int16 and sent untouched.
        # Anything else is read as float: libsndfile reads a float file as int16 without
        # scaling, so its samples in [-1, 1] would all become 0.
        exact = converter.is_identity and self.file_channels == 1 and self._file.subtype == "PCM_16"
        dtype = "int16" if exact else "float32"
        rechunker = Rechunker(chunk_bytes(self.sample_rate, self.chunk_ms))
        block = max(1, int(self.file_rate * READ_SECONDS))
        try:
            while True:
                frames = await asyncio.to_thread(self._read, block, dtype)
                if frames.dtype.kind == "f" and not np.isfinite(frames).all():
                    frames = self._clean(frames)
                last = len(frames) < block
                pieces = rechunker.feed(converter.convert(frames, last=last))
                if last:
                    # The service refuses chunks under 50 ms (3007): pad the tail with silence.
                    tail = rechunker.flush(pad=True)
                    pieces += [tail] if tail else []
                for piece in pieces:
                    if self._pacer:
                        await self._pacer.wait()
                    yield piece
                if last:
                    return
        finally:
            self._file.close()

    def _read(self, frames: int, dtype: str) -> np.ndarray:
        try:
            data = self._file.read(frames, dtype=dtype, always_2d=self.file_channels > 1)
        except (soundfile.LibsndfileError, RuntimeError) as error:
            raise AudioError(f"{self.path}: unreadable audio ({error})") from None
        return data

    def _clean(self, data: np.ndarray) -> np.ndarray:
        """NaN becomes silence and infinity full scale, with one warning for the whole file."""
        if not self._warned_not_finite:
            self._warned_not_finite = True
            message = (f"{self.path.name} has samples that are not numbers (NaN or infinity); "
                       "they are sent as silence or full scale")
            if self._report is not None:
                self._report(CaptionError(kind="audio", message=message, fatal=False))
        return np.nan_to_num(data, nan=0.0, posinf=1.0, neginf=-1.0)


def open_audio_file(path: Path) -> soundfile.SoundFile:
    """Open a file for reading, turning every way it can fail into one clear AudioError."""
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not path.is_file():
        # A FIFO or a device could block forever, or never end: replay reads files.
        raise AudioError(f"{path}: not a regular file; replay reads audio files (for live audio: captioner run)")
    try:
        open(path, "rb").close()  # libsndfile says only "System error" when it may not read
        audio = soundfile.SoundFile(path)
    except soundfile.LibsndfileError as error:
        reason = str(error.error_string if hasattr(error, "error_string") else error)
        raise AudioError(f"{path}: not an audio file libsndfile can read ({reason})") from None
    except PermissionError:
        raise AudioError(f"{path}: permission denied") from None
    except (OSError, RuntimeError) as error:
        raise AudioError(f"{path}: cannot open ({error})") from None
    if audio.frames <= 0 or audio.samplerate <= 0:
        audio.close()
        raise AudioError(f"{path}: contains no audio")
    return audio
