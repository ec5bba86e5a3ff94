"""A virtual microphone through real PortAudio: a private PulseAudio whose default input
is a null sink's monitor. Audio played into it (`play`) comes out of the microphone in
real time, and PortAudio reaches it through ALSA's pulse plugin as the device "pulse".
Used by the microphone tests and by `make bench`; see captioner.testing.sound_server.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .sound_server import PrivateSoundServer, SoundServerUnavailable

VirtualMicrophoneUnavailable = SoundServerUnavailable


class VirtualMicrophone(PrivateSoundServer):
    def __init__(self, directory: Path):
        super().__init__(directory, "pulseaudio")

    def play(self, wav: Path) -> subprocess.Popen:
        """Play a file into the microphone, in real time; returns at once."""
        return self.play_to_microphone(wav)
