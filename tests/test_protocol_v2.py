"""The legacy v2 protocol: its codec, the fake server and captioner serve speaking it, the
legacy SDK talking to them, and captioner's client giving the same finals as with v3."""

from __future__ import annotations

import base64
import json
import subprocess
import textwrap

import pytest

from captioner.errors import ProtocolError
from captioner.protocol import v2
from captioner.protocol.messages import Audio, Begin, ForceEndpoint, SessionParams, Terminate, Termination, TurnUpdate, UpdateConfiguration, WireWord
from captioner import Settings
from captioner.testing import TranscriptScript
from conftest import ROOT, fixture

SCRIPT = TranscriptScript.load(fixture("meeting.json"))


def test_client_frames_are_the_tutorials():
    assert json.loads(v2.encode_client(Audio(b"\x01\x02"))) == {"audio_data": base64.b64encode(b"\x01\x02").decode()}
    assert json.loads(v2.encode_client(Terminate())) == {"terminate_session": True}
    assert json.loads(v2.encode_client(ForceEndpoint())) == {"force_end_utterance": True}
    assert json.loads(v2.encode_client(UpdateConfiguration({"max_turn_silence": 700}))) == {
        "end_utterance_silence_threshold": 700}
    url = v2.connect_url("wss://api.assemblyai.com", SessionParams(sample_rate=16000, keyterms_prompt=("Moonshine",)))
    assert url == "wss://api.assemblyai.com/v2/realtime/ws?sample_rate=16000&encoding=pcm_s16le&word_boost=%5B%22Moonshine%22%5D"


def test_server_messages_decode_onto_the_same_types():
    begin = v2.decode_server('{"message_type": "SessionBegins", "session_id": "abc", "expires_at": "2026-11-24T01:00:00"}')
    assert isinstance(begin, Begin) and begin.session_id == "abc"
    partial = v2.decode_server(json.dumps({"message_type": "PartialTranscript", "audio_start": 400, "audio_end": 900,
                                           "confidence": 0.5, "text": "hello wor", "words": [], "created": "x"}))
    assert (partial.turn_order, partial.end_of_turn, partial.transcript) == (400, False, "hello wor")
    final = v2.decode_server(json.dumps({"message_type": "FinalTranscript", "audio_start": 400, "audio_end": 1200,
                                         "confidence": 0.9, "text": "Hello world.", "punctuated": True,
                                         "text_formatted": True, "created": "x",
                                         "words": [{"start": 400, "end": 700, "confidence": 0.9, "text": "Hello"}]}))
    assert final.end_of_turn and final.is_formatted and final.words[0] == WireWord("Hello", 400, 700, 0.9)
    assert v2.decode_server('{"message_type": "SessionTerminated"}') == Termination()
    assert v2.decode_server('{"error": "bad"}').message == "bad"
    with pytest.raises(ProtocolError):
        v2.decode_server('{"message_type": "FinalTranscript", "text": 5}')


def test_the_server_side_round_trips():
    assert v2.decode_client('{"audio_data": "AQI="}') == Audio(b"\x01\x02")
    assert v2.decode_client(b"\x01\x02") == Audio(b"\x01\x02")  # SDKs from 0.22 send binary frames
    assert isinstance(v2.decode_client('{"terminate_session": true}'), Terminate)
    with pytest.raises(v2.InvalidClientMessage) as invalid:
        v2.decode_client('{"audio_data": "not base64!"}')
    assert invalid.value.code == 4101
    update = TurnUpdate(3, "hello", (WireWord("hello", 100, 400),), end_of_turn=True, is_formatted=False)
    assert v2.encode_server(update) == []  # v2 sends only the punctuated final
    (frame,) = v2.encode_server(TurnUpdate(3, "Hello.", (WireWord("Hello.", 100, 400),), end_of_turn=True, is_formatted=True))
    assert v2.decode_server(frame).transcript == "Hello."
    info, terminated = v2.encode_server(Termination(5, 6))
    assert json.loads(info) == {"message_type": "SessionInformation", "audio_duration_seconds": 5.0}
    assert v2.parse_query("sample_rate=8000&token=t").sample_rate == 8000


def test_v2_through_the_fake_server_gives_the_same_finals_as_v3(replay):
    v3_result = replay(fixture("meeting.wav"), settings=Settings(session=SessionParams(format_turns=True)))
    v2_result = replay(fixture("meeting.wav"), settings=Settings(protocol="v2"))
    assert v2_result.error is None and v3_result.error is None
    assert v2_result.final_texts == v3_result.final_texts == [turn.text for turn in SCRIPT.turns]
    record = v2_result.server.connections[0]
    assert record.path == "/v2/realtime/ws"
    first_audio = json.loads(record.received(str)[0])
    assert set(first_audio) == {"audio_data"}  # base64 JSON, as the tutorial sent it
    assert record.received(str)[-1] == '{"terminate_session": true}'
    assert [m["message_type"] for m in record.sent_messages()][-2:] == ["SessionInformation", "SessionTerminated"]


def test_v2_through_captioner_serve_gives_the_same_finals_as_v3(replay):
    from captioner.server.embedded import EmbeddedServer
    from captioner.default_plugins.moonshine import MoonshineRecognizer
    from captioner.testing import ServerThread

    with ServerThread(EmbeddedServer(MoonshineRecognizer())) as server:
        v3_result = replay(fixture("meeting.wav"), server=server, settings=Settings(session=SessionParams(format_turns=True)))
        v2_result = replay(fixture("meeting.wav"), server=server, settings=Settings(protocol="v2"))
    assert v2_result.error is None
    assert v2_result.final_texts == v3_result.final_texts and len(v2_result.final_texts) >= 10


LEGACY_PYTHON = ROOT / ".venv-legacy-sdk" / "bin" / "python"
LEGACY_CLIENT = textwrap.dedent('''
    import json, sys, time, wave
    import assemblyai as aai

    aai.settings.api_key = "legacy-key"
    aai.settings.base_url = sys.argv[1]  # ws://127.0.0.1:PORT: the SDK adds /v2/realtime/ws
    seen = []
    transcriber = aai.RealtimeTranscriber(
        sample_rate=16000,
        on_data=lambda t: seen.append([type(t).__name__, t.text]),
        on_error=lambda e: seen.append(["error", str(e)]),
    )
    transcriber.connect()
    with wave.open(sys.argv[2]) as wav:
        while chunk := wav.readframes(1600):
            transcriber.stream(chunk)
    time.sleep(1)
    transcriber.close()  # the legacy client sends terminate_session itself
    print(json.dumps(seen))
''')


@pytest.mark.skipif(not LEGACY_PYTHON.exists(), reason="make setup installs assemblyai==0.64.2 in .venv-legacy-sdk")
def test_the_legacy_sdk_talks_to_the_fake_server(fake_server):
    server = fake_server(fixture("hello.json"), api_key="legacy-key")
    result = subprocess.run([str(LEGACY_PYTHON), "-c", LEGACY_CLIENT, server.base_url, str(fixture("hello.wav"))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    kinds = [kind for kind, _ in seen]
    assert "error" not in kinds, seen
    assert "RealtimePartialTranscript" in kinds
    finals = [text for kind, text in seen if kind == "RealtimeFinalTranscript"]
    assert finals == [TranscriptScript.load(fixture("hello.json")).turns[0].text]
    record = server.connections[0]
    assert record.path == "/v2/realtime/ws" and record.headers["Authorization"] == "legacy-key"
