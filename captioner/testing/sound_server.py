"""A private sound server for tests: PulseAudio, or PipeWire with pipewire-pulse.

Machines without a sound card still run a real sound server with null sinks, and real
audio flows through it (../shared/MEETING_AUDIO.md, ../shared/VIRTUAL_MIC.md):

- "speakers", the default output: what the computer plays, the meeting audio;
- "micsink", whose monitor is the default input: what `play_to_microphone` plays comes
  out of the microphone, which PortAudio reaches through ALSA's pulse plugin.

Sinks run at 16 kHz mono, so on PulseAudio the captures are bit-exact. Each server lives
in the directory it is given (its own XDG_RUNTIME_DIR and HOME), listens on unix sockets
only, and `stop()` ends it. Run a command against it with `env=server.env`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

SINK = "rate=16000 channels=1"


class SoundServerUnavailable(RuntimeError):
    pass


class PrivateSoundServer:
    def __init__(self, directory: Path, kind: str = "pulseaudio"):
        if kind not in ("pulseaudio", "pipewire"):
            raise ValueError(f"kind is pulseaudio or pipewire, not {kind!r}")
        needed = ["pactl", "paplay"] + (["pulseaudio"] if kind == "pulseaudio" else
                                        ["pipewire", "wireplumber", "pipewire-pulse", "dbus-daemon"])
        missing = [program for program in needed if shutil.which(program) is None]
        if missing:
            raise SoundServerUnavailable(f"{', '.join(missing)} missing: 'make setup' installs them")
        self.kind = kind
        self.directory = directory
        runtime = directory / "runtime"
        for folder in (runtime, directory / "home", directory / "config", directory / "state"):
            folder.mkdir(parents=True, exist_ok=True)
        runtime.chmod(0o700)
        self.env = {
            **os.environ,
            "XDG_RUNTIME_DIR": str(runtime),
            "HOME": str(directory / "home"),
            "XDG_CONFIG_HOME": str(directory / "config"),
            "XDG_STATE_HOME": str(directory / "state"),
            "PULSE_SERVER": f"unix:{runtime}/pulse/native",
            "LC_ALL": "C",  # pactl's output is localised
        }
        for name in ("PULSE_SINK", "PULSE_SOURCE", "DISPLAY"):
            self.env.pop(name, None)
        self._processes: list[subprocess.Popen] = []
        try:
            self._start_pulseaudio() if kind == "pulseaudio" else self._start_pipewire()
            self._wait_until_it_answers()
            for sink in ("speakers", "micsink"):
                self.add_sink(sink)
            self.pactl("set-default-sink", "speakers")
            self.pactl("set-default-source", "micsink.monitor")
        except BaseException:
            self.stop()
            raise

    # ------------------------------------------------------------ starting

    def _start_pulseaudio(self) -> None:
        subprocess.run(
            ["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "-n", "--use-pid-file=yes",
             "--load=module-native-protocol-unix", f"--log-target=file:{self.directory / 'pulse.log'}"],
            env=self.env, check=True, timeout=30,
        )

    def _start_pipewire(self) -> None:
        runtime = Path(self.env["XDG_RUNTIME_DIR"])
        self.env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={runtime}/bus"
        # WirePlumber restores a stream's last output and volume: off, or tests flake.
        settings = Path(self.env["XDG_CONFIG_HOME"]) / "wireplumber" / "main.lua.d"
        settings.mkdir(parents=True, exist_ok=True)
        (settings / "51-no-restore.lua").write_text(
            'stream_defaults.properties["restore-props"] = false\n'
            'stream_defaults.properties["restore-target"] = false\n'
        )
        self._spawn("dbus-daemon", "--session", "--nofork", f"--address={self.env['DBUS_SESSION_BUS_ADDRESS']}")
        self._wait_for(runtime / "bus")
        self._spawn("pipewire")
        self._wait_for(runtime / "pipewire-0")
        self._spawn("wireplumber")
        self._spawn("pipewire-pulse")

    def _spawn(self, *command: str) -> None:
        log = open(self.directory / f"{command[0]}.log", "wb")
        self._processes.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=log))

    def _wait_for(self, path: Path) -> None:
        for _ in range(100):
            if path.exists():
                return
            time.sleep(0.05)
        raise SoundServerUnavailable(f"{self.kind} did not start ({path} never appeared; logs in {self.directory})")

    def _wait_until_it_answers(self) -> None:
        for _ in range(100):
            if subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise SoundServerUnavailable(f"{self.kind} did not answer; logs in {self.directory}")

    # ------------------------------------------------------------ using it

    def pactl(self, *arguments: str) -> str:
        return subprocess.run(["pactl", *arguments], env=self.env, capture_output=True, text=True,
                              check=True, timeout=30).stdout

    def add_sink(self, name: str, description: str | None = None) -> int:
        """A null sink (an output nobody hears); returns its module number, for `remove_sink`."""
        properties = f"sink_properties=device.description={description or name.capitalize()}"
        module = int(self.pactl("load-module", "module-null-sink", f"sink_name={name}", *SINK.split(), properties))
        for _ in range(50):  # PipeWire makes the sink a moment later
            if f"\t{name}\t" in self.pactl("list", "short", "sinks"):
                return module
            time.sleep(0.05)
        raise SoundServerUnavailable(f"sink {name} did not appear")

    def remove_sink(self, module: int) -> None:
        self.pactl("unload-module", str(module))

    def set_default_output(self, sink: str) -> None:
        self.pactl("set-default-sink", sink)

    def play_into(self, sink: str, wav: Path) -> subprocess.Popen:
        """Play a file into a sink, in real time; returns at once."""
        return subprocess.Popen(["paplay", "-d", sink, str(wav)], env=self.env)

    def play_to_speakers(self, wav: Path) -> subprocess.Popen:
        return self.play_into("speakers", wav)

    def play_to_microphone(self, wav: Path) -> subprocess.Popen:
        return self.play_into("micsink", wav)

    def stop(self) -> None:
        if self.kind == "pulseaudio":
            subprocess.run(["pulseaudio", "--kill"], env=self.env, capture_output=True, timeout=30)
        for process in reversed(self._processes):
            process.send_signal(signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self._processes.clear()
