#!/bin/sh
# Install the Debian packages a make target needs, when they are missing.
# Usage: scripts/system-deps.sh GROUP...   (groups: base, fixtures)
# Never asks: installs with apt-get as root (or through sudo -n), or stops with one line
# saying what to run.
set -eu

packages_for() {
    case "$1" in
        # python3-venv: Debian's python3 cannot create a virtual environment without it.
        base)
            if "${PYTHON:-python3}" -c 'import ensurepip, venv' 2>/dev/null; then :; else echo python3-venv; fi
            # PortAudio's headers, a C compiler and Python's headers, to build PyAudio
            # (microphone capture), which PyPI ships as source for Linux.
            echo portaudio19-dev
            command -v gcc >/dev/null 2>&1 || echo gcc libc6-dev
            include=$("${PYTHON:-python3}" -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null)
            [ -f "$include/Python.h" ] || echo python3-dev
            # A virtual microphone for the tests: a private PulseAudio with a null sink,
            # reached through ALSA's pulse plugin, so capture runs through real PortAudio.
            echo pulseaudio pulseaudio-utils libasound2-plugins
            # Meeting audio through PipeWire in the tests: a private PipeWire, WirePlumber
            # and pipewire-pulse on a private session bus (libpulse0 comes with pulseaudio).
            echo pipewire pipewire-pulse wireplumber dbus-daemon
            # The offline translator of the translate plugin, English to Spanish.
            echo apertium apertium-eng-spa
            # A browser for the overlay plugin's page tests (Playwright drives it; its own
            # browser download is not reachable from here).
            echo chromium
            # A real load balancer in front of two `captioner serve` instances (the drain
            # test); any nginx will do, so an installed one is kept.
            command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || echo nginx
            ;;
        # The voices and tools fixtures/generate.py uses.
        fixtures) echo festival festvox-us-slt-hts ;;
        *) echo "system-deps.sh: unknown group $1" >&2; exit 2 ;;
    esac
}

missing=""
for group in "$@"; do
    for package in $(packages_for "$group"); do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing="$missing $package"
    done
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root="sudo -n"
else
    echo "captioner setup: missing Debian packages:$missing; run: sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "captioner setup: installing Debian packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$as_root apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1 || {
    $as_root apt-get update -q >/dev/null 2>&1 || true
    $as_root apt-get install -y -q --no-install-recommends $missing >/dev/null
}
