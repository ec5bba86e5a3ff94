"""Live capture from a microphone through PortAudio (PyAudio).

PortAudio calls `_on_audio` on its own thread for every buffer. It appends the bytes to
a bounded buffer (up to `buffer_seconds` of audio) under a lock, and wakes the event loop
with `call_soon_threadsafe` only when the buffer was empty: one wake per batch, however
fast the device delivers, so a runaway device cannot flood the loop. Neither side ever
waits on the other. When the buffer is full (the loop fell that far behind) new audio is
dropped and counted, and the loss is reported, at most every few seconds, rather than
growing memory.

Device choice and rate choice are pure functions (`choose_device`, `choose_rate`), so
their rules are tested without hardware; everything else goes through real PortAudio.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import threading
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Iterator

import numpy as np

from .live import LiveSource
from .pcm import DEFAULT_CHUNK_MS, DEFAULT_SAMPLE_RATE, PcmConverter, Rechunker, chunk_bytes
from ..errors import AudioError, UsageError

INSTALL_HINT = "install PortAudio and PyAudio: 'make setup', or 'apt install portaudio19-dev' then 'pip install pyaudio'"
STALL_SECONDS = 3.0  # no audio for this long from a running device: it is gone
# PortAudio's error numbers, in words a user can act on.
PORTAUDIO_ERRORS = {
    -9996: "no such device",
    -9997: "the device refuses that sample rate",
    -9998: "the device refuses that number of channels",
    -9985: "the device is busy or unavailable (another program may hold it)",
    -9999: "the sound system reported an error",
}


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    host_api: str
    channels: int  # input channels
    default_rate: int
    is_default: bool = False

    def describe(self) -> str:
        mark = ", default" if self.is_default else ""
        return f"{self.index}: {self.name} ({self.host_api}, {self.channels} ch, {self.default_rate} Hz{mark})"


@dataclass(frozen=True)
class DeviceInfo:
    """What PortAudio says about a device, input-capable or not (for choose_device)."""

    index: int
    name: str
    host_api: str
    input_channels: int
    output_channels: int
    default_rate: int
    is_default_input: bool = False
    on_default_host_api: bool = True

    def as_input(self) -> InputDevice:
        return InputDevice(
            self.index, self.name, self.host_api, self.input_channels, self.default_rate, self.is_default_input
        )


def choose_device(devices: list[DeviceInfo], selector: str | None) -> InputDevice:
    """The input device `selector` means: an index, a unique name substring, or the default."""
    inputs = [d for d in devices if d.input_channels > 0]
    listed = "; ".join(d.as_input().describe() for d in inputs if d.on_default_host_api) or "none"
    if not inputs:
        raise AudioError("no microphone: PortAudio sees no input device on this machine")
    if selector is None or selector == "":
        default = next((d for d in inputs if d.is_default_input), None)
        return (default or inputs[0]).as_input()
    if selector.isdigit():
        index = int(selector)
        match = next((d for d in devices if d.index == index), None)
        if match is None:
            raise UsageError(f"--device {index}: no such device; input devices: {listed}")
        if match.input_channels == 0:
            raise UsageError(f"--device {index} ({match.name}) has no input: it is output only; input devices: {listed}")
        return match.as_input()
    wanted = selector.lower()
    matches = [d for d in inputs if wanted in d.name.lower()]
    exact = [d for d in matches if d.name.lower() == wanted]
    # The same device appears once per host API: prefer the default API's copy.
    preferred = [d for d in (exact or matches) if d.on_default_host_api] or exact or matches
    if len(preferred) == 1:
        return preferred[0].as_input()
    if not preferred:
        outputs = [d for d in devices if wanted in d.name.lower()]
        if outputs:
            raise UsageError(f"--device {selector!r} matches only output devices; input devices: {listed}")
        raise UsageError(f"--device {selector!r} matches no input device; input devices: {listed}")
    names = "; ".join(d.as_input().describe() for d in preferred)
    raise UsageError(f"--device {selector!r} matches several devices, give the index: {names}")


def choose_rate(device: InputDevice, wanted: int, supports: Callable[[int], bool]) -> int:
    """`wanted` when the device takes it, else its own default rate (captioner resamples)."""
    if supports(wanted):
        return wanted
    if supports(device.default_rate):
        return device.default_rate
    raise AudioError(
        f"{device.name} takes neither {wanted} Hz nor its own default {device.default_rate} Hz; try another --device"
    )


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what ALSA and JACK print on file descriptor 2 while PortAudio probes.

    On a machine without a sound server they print "Unknown PCM", "jack server is not
    running" and the like: harmless, and they would drown captioner's own one-line
    errors. Python-level errors are raised as exceptions, so nothing is lost.
    """
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _pyaudio():
    try:
        import pyaudio
    except ImportError:
        raise AudioError(f"microphone capture needs PyAudio: {INSTALL_HINT}") from None
    return pyaudio


class PortAudio:
    """A PyAudio instance, opened quietly, with the device list captioner needs."""

    def __init__(self):
        self.module = _pyaudio()
        with quiet_native_stderr():
            self.pa = self.module.PyAudio()

    def devices(self) -> list[DeviceInfo]:
        pa = self.pa
        try:
            default_api = pa.get_default_host_api_info()["index"]
        except OSError:
            default_api = None
        try:
            default_input = pa.get_default_input_device_info()["index"]
        except OSError:
            default_input = None
        found = []
        for index in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(index)
            api = pa.get_host_api_info_by_index(info["hostApi"])["name"]
            found.append(
                DeviceInfo(
                    index=index,
                    name=info["name"],
                    host_api=api,
                    input_channels=int(info["maxInputChannels"]),
                    output_channels=int(info["maxOutputChannels"]),
                    default_rate=int(info["defaultSampleRate"]),
                    is_default_input=index == default_input,
                    on_default_host_api=info["hostApi"] == default_api,
                )
            )
        return found

    def supports(self, device: InputDevice, rate: int) -> bool:
        try:
            with quiet_native_stderr():
                return bool(
                    self.pa.is_format_supported(
                        rate, input_device=device.index, input_channels=1, input_format=self.module.paInt16
                    )
                )
        except ValueError:
            return False

    def close(self) -> None:
        with quiet_native_stderr():
            self.pa.terminate()


def list_input_devices(all_host_apis: bool = False) -> list[InputDevice]:
    portaudio = PortAudio()
    try:
        return [
            d.as_input() for d in portaudio.devices() if d.input_channels > 0 and (all_host_apis or d.on_default_host_api)
        ]
    finally:
        portaudio.close()


class MicrophoneSource(LiveSource):
    """Audio from an input device, as 16-bit mono chunks at `sample_rate`.

    The device is opened in the constructor, so a bad device fails before any
    connection. `pause()` sends silence instead of the microphone (the session stays
    alive); `stop()` ends the stream after the current chunk; `duration` ends it after
    that many seconds of audio.
    """

    def __init__(
        self,
        device: str | None = None,
        *,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        chunk_ms: int = DEFAULT_CHUNK_MS,
        duration: float | None = None,
        buffer_seconds: float = 10.0,
    ):
        super().__init__(sample_rate, chunk_ms, duration, buffer_seconds)
        self.overflows = 0  # PortAudio's own input overflows
        self.dropped_ms = 0.0  # audio dropped because the loop fell behind
        self._portaudio = PortAudio()
        try:
            self.device = choose_device(self._portaudio.devices(), device)
            self.device_rate = choose_rate(self.device, sample_rate, lambda rate: self._portaudio.supports(self.device, rate))
        except Exception:
            self._portaudio.close()
            raise
        resampled = "" if self.device_rate == sample_rate else f", resampled from {self.device_rate} Hz"
        self.description = f"microphone {self.device.name} ({self.device.host_api}{resampled})"
        self._stream = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        # Filled by PortAudio's thread, drained by the loop; both under _lock.
        self._lock = threading.Lock()
        self._buffers: collections.deque = collections.deque()
        self._buffered_bytes = 0
        self._dropped_bytes = 0
        self._status = 0
        self._wake_pending = False
        self._ready: asyncio.Event | None = None

    def stop(self) -> None:
        self._stopping = True

    def _open(self) -> None:
        pyaudio = self._portaudio.module
        frames = max(1, self.device_rate * self.chunk_ms // 1000)
        try:
            with quiet_native_stderr():
                self._stream = self._portaudio.pa.open(
                    rate=self.device_rate,
                    channels=1,
                    format=pyaudio.paInt16,
                    input=True,
                    input_device_index=self.device.index,
                    frames_per_buffer=frames,
                    stream_callback=self._on_audio,
                )
        except OSError as error:
            code = error.args[1] if len(error.args) > 1 else getattr(error, "errno", None)
            reason = PORTAUDIO_ERRORS.get(code, str(error))
            raise AudioError(f"cannot open {self.device.name} at {self.device_rate} Hz: {reason}") from None

    def _on_audio(self, data, frame_count, time_info, status):
        """PortAudio's thread: keep the bytes and return at once, never block."""
        wake = False
        with self._lock:
            self._status |= status
            if self._buffered_bytes + len(data) > self._capacity:
                self._dropped_bytes += len(data)
            else:
                self._buffers.append(data)
                self._buffered_bytes += len(data)
            if not self._wake_pending:
                self._wake_pending = wake = True
        loop = self._loop
        if wake and loop is not None:
            try:
                loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:
                pass  # the loop closed: capture is ending
        return (None, self._portaudio.module.paContinue)

    def _take(self) -> list[bytes]:
        """The loop's side: everything buffered, and a report of what was lost."""
        with self._lock:
            buffers, self._buffers = list(self._buffers), collections.deque()
            self._buffered_bytes = 0
            dropped, self._dropped_bytes = self._dropped_bytes, 0
            status, self._status = self._status, 0
            self._wake_pending = False
            self._ready.clear()
        if status & self._portaudio.module.paInputOverflow:
            self.overflows += 1
            self._warn("overflow", f"input overflow on {self.device.name}: the sound system dropped audio "
                                   f"({self.overflows} times so far)")
        if dropped:
            self.dropped_ms += dropped / 2 / self.device_rate * 1000
            self._warn("dropped", f"captioner fell {self.buffer_seconds:g} s behind the microphone and "
                                  f"dropped {self.dropped_ms / 1000:.1f} s of audio so far")
        return buffers

    async def chunks(self) -> AsyncIterator[bytes]:
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._capacity = max(1, int(self.buffer_seconds * self.device_rate)) * 2
        self._open()
        converter = PcmConverter(self.device_rate, self.sample_rate)
        rechunker = Rechunker(chunk_bytes(self.sample_rate, self.chunk_ms))
        limit = None if self.duration is None else int(self.duration * self.sample_rate) * 2
        sent = 0
        try:
            self._stream.start_stream()
            while not self._stopping and (limit is None or sent < limit):
                try:
                    await asyncio.wait_for(self._ready.wait(), STALL_SECONDS)
                except TimeoutError:
                    raise AudioError(
                        f"{self.device.name} stopped delivering audio (unplugged, or taken by another program)"
                    ) from None
                taken = self._take()
                if not taken:
                    continue
                samples = np.frombuffer(b"".join(taken), dtype="<i2")
                for chunk in rechunker.feed(converter.convert(samples)):
                    if self.paused:
                        chunk = bytes(len(chunk))
                    if limit is not None:
                        chunk = chunk[: limit - sent]
                        if len(chunk) < rechunker.chunk_bytes:
                            chunk += bytes(rechunker.chunk_bytes - len(chunk))  # no chunk under 50 ms
                    sent += len(chunk)
                    yield chunk
                    if limit is not None and sent >= limit:
                        break
        finally:
            self._close()

    def _close(self) -> None:
        self._loop = None
        if self._stream is not None:
            with quiet_native_stderr():
                with contextlib.suppress(OSError):
                    self._stream.stop_stream()
                self._stream.close()
            self._stream = None
        self._portaudio.close()
