"""Replaying an audio file as if it were a live source: decoded, converted and paced.

`WavReplaySource` reads anything libsndfile reads, in any sample format, rate and channel
count, and yields session-rate PCM chunks on a schedule (`Pacer`), or as fast as the
session takes them. Opening the file turns every way it can fail into one `AudioError`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import AsyncIterator, Callable

import numpy as np
import soundfile

from ..errors import AudioError
from ..events import CaptionError
from .pcm import DEFAULT_CHUNK_MS, DEFAULT_SAMPLE_RATE, PcmConverter, Rechunker, chunk_bytes

READ_SECONDS = 1.0  # how much of a file one blocking read takes, off the event loop


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
