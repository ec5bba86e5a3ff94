"""A virtual microphone through real PortAudio: a private PulseAudio with a null sink.

Audio played into the sink (`play`) comes out of its monitor in real time, and PortAudio
reaches it through ALSA's pulse plugin as the device "pulse". Each VirtualMicrophone is
its own PulseAudio daemon in the directory it is given; `stop()` ends it. Used by the
tests and by `make bench`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

class VirtualMicrophoneUnavailable(RuntimeError):
    pass


class VirtualMicrophone:
    def __init__(self, directory: Path):
        if shutil.which("pulseaudio") is None or shutil.which("paplay") is None:
            raise VirtualMicrophoneUnavailable("pulseaudio and paplay are missing: 'make setup' installs them")
        self.directory = directory
        runtime = directory / "runtime"
        runtime.mkdir(parents=True, exist_ok=True)
        runtime.chmod(0o700)
        self.env = {
            **os.environ,
            "XDG_RUNTIME_DIR": str(runtime),
            "HOME": str(directory),
            "PULSE_SOURCE": "fixture.monitor",
            "PULSE_SINK": "fixture",
        }
        self.env.pop("PULSE_SERVER", None)
        subprocess.run(
            ["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "-n", "--use-pid-file=yes",
             "--load=module-native-protocol-unix", "--load=module-null-sink sink_name=fixture",
             f"--log-target=file:{directory / 'pulse.log'}"],
            env=self.env, check=True, timeout=30,
        )
        for _ in range(100):
            if subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise VirtualMicrophoneUnavailable(f"PulseAudio did not start; see {directory / 'pulse.log'}")

    def play(self, wav: Path) -> subprocess.Popen:
        """Play a file into the microphone, in real time; returns at once."""
        return subprocess.Popen(["paplay", "-d", "fixture", str(wav)], env=self.env)

    def stop(self) -> None:
        subprocess.run(["pulseaudio", "--kill"], env=self.env, capture_output=True, timeout=30)
