"""Session settings: options and config file, live changes, temporary tokens."""

from __future__ import annotations

import json
import os
import time
from urllib.parse import parse_qs

import pytest

from captioner import hookimpl
from captioner import SessionParams, Settings
from captioner.testing import FakeServerThread, FakeStreamingServer, TranscriptScript, drop_at
from conftest import OnTerminal, fixture

SCRIPT = TranscriptScript.load(fixture("meeting.json"))


def fake(**options):
    return FakeServerThread(FakeStreamingServer(SCRIPT, reference=SCRIPT.reference_audio(), **options))


def test_settings_reach_the_query_with_the_documented_types(cli):
    with fake() as server:
        result = cli("replay", str(fixture("hello.wav")), "--url", server.url, "--fast", "-q", "--format-turns",
                     "--speaker-labels", "--min-turn-silence", "300", "--max-turn-silence", "900",
                     "--keyterms", "Moonshine, captioner", "--language", "es", "--speech-model",
                     "universal-streaming-multilingual")
        assert result.returncode == 0, result.stderr
        query = parse_qs(server.connections[0].query)
    assert query["format_turns"] == ["True"] and query["speaker_labels"] == ["True"]
    assert (query["min_turn_silence"], query["max_turn_silence"]) == (["300"], ["900"])
    assert json.loads(query["keyterms_prompt"][0]) == ["Moonshine", "captioner"]
    assert json.loads(query["language_codes"][0]) == ["es"]
    assert query["speech_model"] == ["universal-streaming-multilingual"]


class ChangesSettingsAfterTheSecondFinal:
    def __init__(self):
        self.finals = 0

    @hookimpl
    def configure(self, config):
        self.events = config.meeting

    @hookimpl
    def on_final(self, turn):
        self.finals += 1
        if self.finals == 2:
            self.events.update_configuration(min_turn_silence=100, max_turn_silence=300)
            self.events.force_endpoint()


def test_a_live_change_sends_update_configuration_with_json_types(replay):
    result = replay(fixture("meeting.wav"), plugins=[ChangesSettingsAfterTheSecondFinal()], options={})
    assert result.error is None
    controls = [json.loads(frame) for frame in result.server.connections[0].received(str)]
    assert {"type": "UpdateConfiguration", "min_turn_silence": 100, "max_turn_silence": 300} in controls
    assert {"type": "ForceEndpoint"} in controls
    update = next(c for c in controls if c["type"] == "UpdateConfiguration")
    assert all(type(update[key]) is int for key in ("min_turn_silence", "max_turn_silence"))


class ChangesEverythingAfterTheSecondFinal(ChangesSettingsAfterTheSecondFinal):
    @hookimpl
    def on_final(self, turn):
        self.finals += 1
        if self.finals == 2:
            self.events.update_configuration(max_turn_silence=900, keyterms_prompt=["Moonshine"],
                                             language_codes=["es"], prompt="a stand-up", format_turns=True)


def test_live_changes_hold_for_the_session_a_reconnect_starts(replay):
    # Paced at 4x, the second final (about 10 s of audio) comes seconds before the drop.
    result = replay(fixture("meeting.wav"), plugins=[ChangesEverythingAfterTheSecondFinal()], options={},
                    speed=4, faults=[drop_at(20_000)])
    assert result.error is None
    first, second = result.server.connections[:2]
    assert any(json.loads(frame)["type"] == "UpdateConfiguration" for frame in first.received(str))
    before, after = parse_qs(first.query), parse_qs(second.query)
    assert "keyterms_prompt" not in before and "language_codes" not in before and "prompt" not in before
    assert json.loads(after["keyterms_prompt"][0]) == ["Moonshine"]
    assert json.loads(after["language_codes"][0]) == ["es"]
    assert after["prompt"] == ["a stand-up"] and after["max_turn_silence"] == ["900"]
    assert after["format_turns"] == ["True"]
    # Formatting switched on mid-meeting: later finals are the formatted ones, each once.
    texts = result.final_texts
    assert texts[-1] == " ".join(word.formatted for word in SCRIPT.turns[-1].words)
    assert texts[0] == SCRIPT.finals[0]
    assert len(texts) == len(set(texts)) == len(SCRIPT.turns)


def test_a_live_change_changes_the_local_servers_turns(replay):
    from captioner.server.embedded import EmbeddedServer
    from captioner.default_plugins.moonshine import MoonshineRecognizer
    from captioner.testing import ServerThread

    class Shortens:
        @hookimpl
        def configure(self, config):
            self.events = config.meeting

        @hookimpl
        def on_final(self, turn):
            if turn.turn_order == 0:
                self.events.update_configuration(min_turn_silence=400, max_turn_silence=800)

    # Long silences first: the 0.9 s pauses between speakers do not end turns, so the
    # first final holds several sentences; after the change, each speaker is a turn.
    settings = Settings(session=SessionParams(min_turn_silence=2500, max_turn_silence=3000))
    with ServerThread(EmbeddedServer(MoonshineRecognizer())) as server:
        result = replay(fixture("meeting.wav"), server=server, plugins=[Shortens()], options={}, settings=settings, speed=4)
    first, *rest = result.final_texts
    scripted = [len(t.words) for t in SCRIPT.turns]
    assert len(first.split()) >= scripted[0] + scripted[1]  # two speakers or more in one turn
    assert len(rest) >= 8  # then turn by turn
    assert max(len(text.split()) for text in rest[1:]) <= max(scripted) + 2


def test_unknown_protocol_is_one_line(cli):
    result = cli("replay", str(fixture("hello.wav")), "--protocol", "v9")
    assert result.returncode == 2 and "invalid choice: 'v9'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_keys_end_the_turn_and_change_the_silence_live():
    with fake() as server:
        terminal = OnTerminal("replay", str(fixture("meeting.wav")), "--url", server.url, "--speed", "2", "-q",
                              env={**os.environ, "TERM": "xterm"})
        terminal.read_for(3)
        terminal.press(b"e")
        terminal.read_for(0.5)
        terminal.press(b"]")
        terminal.read_for(0.5)
        terminal.press(b"q")
        terminal.read_for(3)
        assert terminal.process.wait(timeout=60) == 0
        controls = [json.loads(frame) for frame in server.connections[0].received(str)]
    terminal.close()
    assert {"type": "ForceEndpoint"} in controls
    assert {"type": "UpdateConfiguration", "max_turn_silence": 1480} in controls
    # On a terminal the live view shows the message above the captions.
    assert b"turns now end after 1480 ms of silence at most" in terminal.output


def test_the_silence_keys_start_from_the_offline_recognizers_own_default():
    """Offline, the embedded server's turns end after 800 ms of silence, not the service's
    1280: the ] key lengthens what is in force."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSEMBLYAI_")}
    terminal = OnTerminal("replay", str(fixture("meeting.wav")), "--offline", "--recognizer", "pocketsphinx",
                          "-q", env={**env, "TERM": "xterm"})
    terminal.read_for(4)
    terminal.press(b"]")
    terminal.read_for(0.5)
    terminal.press(b"q")
    terminal.read_for(3)
    assert terminal.process.wait(timeout=60) == 0
    terminal.close()
    assert b"turns now end after 1000 ms of silence at most" in terminal.output


# ------------------------------------------------------------------ temporary tokens


def test_token_made_with_the_key_then_used_instead_of_it(cli):
    with fake(api_key="the-real-key") as server:
        made = cli("token", "--url", server.url, "--expires", "120", env={"ASSEMBLYAI_API_KEY": "the-real-key"})
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        assert token and "the-real-key" not in token
        used = cli("replay", str(fixture("hello.wav")), "--url", server.url, "--fast", "-q", "--token", token)
        assert used.returncode == 0, used.stderr
        assert server.connections[-1].headers["Authorization"] == token
        v2 = cli("replay", str(fixture("hello.wav")), "--url", server.base_url, "--fast", "--protocol", "v2",
                 env={"ASSEMBLYAI_TOKEN": token})
        assert v2.returncode == 0, v2.stderr
        record = server.connections[-1]
        assert parse_qs(record.query)["token"] == [token] and "Authorization" not in record.headers
        assert token not in v2.stderr and "token=***" in v2.stderr  # the status line masks it
        refused = cli("replay", str(fixture("hello.wav")), "--url", server.url, "--fast", "--token", "made-up")
        assert refused.returncode == 3 and "4001 (not authorized)" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1


def test_a_token_that_begins_with_a_dash_is_taken_as_the_value(cli):
    # Tokens are random URL-safe text, so about one in 64 begins with "-".
    with fake(api_key="the-real-key") as server:
        server.tokens["-Zx_token"] = time.time() + 60
        used = cli("replay", str(fixture("hello.wav")), "--url", server.url, "--fast", "-q", "--token", "-Zx_token")
        assert used.returncode == 0, used.stderr
        assert server.connections[-1].headers["Authorization"] == "-Zx_token"
    forgotten = cli("replay", str(fixture("hello.wav")), "--token", "--fast")
    assert forgotten.returncode == 2 and "argument --token: expected one argument" in forgotten.stderr


@pytest.mark.parametrize("env, code, message", [
    ({"ASSEMBLYAI_API_KEY": "wrong"}, 3, "refused the API key (HTTP 401)"),
    ({}, 2, "a token is made with the API key"),
])
def test_token_errors_are_one_line(cli, env, code, message):
    with fake(api_key="the-real-key") as server:
        result = cli("token", "--url", server.url, env=env)
    assert result.returncode == code and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "wrong" not in result.stderr


# ------------------------------------------------------------------ config file


def test_flags_beat_the_environment_which_beats_the_file(cli, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('url = "ws://127.0.0.1:1/from-file"\nformat_turns = true\n\n[replay]\nchunk_ms = 100\n')
    shown = json.loads(cli("--config", str(config), "config", "show", "--command", "replay").stdout)
    assert shown["config_file"] == str(config)
    assert (shown["replay"]["url"], shown["replay"]["format_turns"], shown["replay"]["chunk_ms"]) == (
        "ws://127.0.0.1:1/from-file", True, 100)
    from_env = json.loads(cli("--config", str(config), "config", "show", "--command", "replay",
                              env={"CAPTIONER_URL": "ws://127.0.0.1:2/from-env"}).stdout)
    assert from_env["replay"]["url"] == "ws://127.0.0.1:2/from-env"
    with fake() as server:
        flags = cli("--config", str(config), "replay", str(fixture("hello.wav")), "--url", server.url, "--fast", "-q",
                    "--chunk-ms", "200", env={"CAPTIONER_URL": "ws://127.0.0.1:2/from-env"})
        assert flags.returncode == 0, flags.stderr
        query = parse_qs(server.connections[0].query)
        assert query["format_turns"] == ["True"]  # from the file, not overridden
        assert len(server.connections[0].received(bytes)[0]) == 6400  # 200 ms chunks: the flag won


def test_the_default_config_file_is_found_and_secrets_are_masked(cli, tmp_path):
    home = tmp_path / "xdg"  # not tmp_path/captioner: `python -m captioner` would import it
    (home / "captioner").mkdir(parents=True)
    (home / "captioner" / "config.toml").write_text('[run]\nrecognizer = "pocketsphinx"\n')
    result = cli("config", "show", env={"XDG_CONFIG_HOME": str(home), "ASSEMBLYAI_API_KEY": "sk-secret-1",
                                        "ASSEMBLYAI_TOKEN": "tok-secret-2"})
    shown = json.loads(result.stdout)
    assert shown["run"]["recognizer"] == "pocketsphinx" and shown["replay"]["recognizer"] == "moonshine"
    assert shown["run"]["token"] == "***" and shown["environment"]["ASSEMBLYAI_API_KEY"] == "***"
    assert "sk-secret-1" not in result.stdout and "tok-secret-2" not in result.stdout


@pytest.mark.parametrize("text, message", [
    ('format_turns = "yes"\n', "config.toml:1: format_turns must be true or false, not 'yes'"),
    ('\n\nfomat_turns = true\n', "config.toml:3: unknown option 'fomat_turns'"),
    ('[run]\nchunk_ms = 20\n', "config.toml:2: chunk_ms: the service takes chunks of 50 to 1000 ms"),
    ('[run]\ndevice = "a"\n[replay]\ndevice = "b"\n', "config.toml:4: unknown option 'device' for captioner replay"),
    ('[dance]\nx = 1\n', "config.toml:1: [dance]: no such command"),
    ('token = "abc"\n', "config.toml:1: token: secrets belong in the environment"),
    ('x = [1,\n', "config.toml: not valid TOML"),
])
def test_a_bad_config_file_is_one_line_naming_file_line_and_key(cli, tmp_path, text, message):
    config = tmp_path / "config.toml"
    config.write_text(text)
    result = cli("--config", str(config), "config", "show")
    assert result.returncode == 2, result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert message in line and str(config) in line


def test_a_v2_session_keeps_only_the_silence_it_can_change_live():
    v2 = Settings(protocol="v2").with_update({"max_turn_silence": 700, "keyterms_prompt": ["x"], "prompt": "p"})
    assert (v2.session.max_turn_silence, v2.session.keyterms_prompt, v2.session.extra) == (700, (), {})
    v3 = Settings().with_update({"min_end_of_turn_silence_when_confident": 200, "vad_threshold": 0.3})
    assert v3.session.min_turn_silence == 200 and v3.session.extra == {"vad_threshold": 0.3}
