"""Hostile input: decoders raise only ProtocolError whatever they get, and every kind of
bad audio file gets one clear error (or is converted and captioned)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from hypothesis import given, settings
from hypothesis import strategies as st

from captioner.audio.replay import WavReplaySource
from captioner.errors import ProtocolError
from captioner.protocol import v3
from captioner.testing import TranscriptScript
from conftest import fixture

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=6),
    max_leaves=30,
)
message_types = st.sampled_from(["Turn", "Begin", "Termination", "Error", "Warning", "SpeechStarted", "Nope", 5, None])
turn_fields = st.fixed_dictionaries(
    {},
    optional={
        "turn_order": json_values, "turn_is_formatted": json_values, "end_of_turn": json_values,
        "transcript": json_values, "end_of_turn_confidence": json_values, "words": json_values,
        "speaker_label": json_values, "id": json_values, "expires_at": json_values, "error": json_values,
        "audio_duration_seconds": json_values,
    },
)
shaped_messages = st.builds(lambda kind, fields: json.dumps({"type": kind, **fields}), message_types, turn_fields)
frames = st.binary(max_size=200) | st.text(max_size=200) | json_values.map(json.dumps) | shaped_messages


@settings(max_examples=400, deadline=None)
@given(frames)
def test_decode_server_raises_only_protocol_error(frame):
    try:
        v3.decode_server(frame)
    except ProtocolError:
        pass


@settings(max_examples=400, deadline=None)
@given(frames | st.builds(lambda fields: json.dumps({"type": "UpdateConfiguration", **fields}),
                          st.dictionaries(st.sampled_from(list(v3.UPDATABLE) + ["x"]), json_values)))
def test_decode_client_raises_only_protocol_error(frame):
    try:
        v3.decode_client(frame)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["sample_rate", "encoding", "format_turns", "min_turn_silence",
                                        "max_turn_silence", "keyterms_prompt", "speaker_labels", "x"]),
                       st.text(max_size=30)))
def test_parse_query_raises_only_protocol_error(query):
    from urllib.parse import urlencode

    try:
        v3.parse_query(urlencode(query))
    except ProtocolError:
        pass


def test_huge_strings_decode_or_fail_cleanly():
    big = "x" * 5_000_000
    turn = v3.decode_server(json.dumps({"type": "Turn", "turn_order": 1, "end_of_turn": False, "transcript": big,
                                        "words": []}))
    assert len(turn.transcript) == 5_000_000
    with pytest.raises(ProtocolError):
        v3.decode_server("[" * 200_000 + "]" * 200_000)


# ------------------------------------------------------------------ bad audio files


def write_catalogue(directory):
    speech, rate = soundfile.read(fixture("hello.wav"), dtype="float32")
    header_only = fixture("hello.wav").read_bytes()[:44]
    (directory / "truncated-header.wav").write_bytes(header_only[:30])
    soundfile.write(directory / "zero-frames.wav", np.zeros((0,), np.int16), 16000)
    (directory / "codec.wav").write_bytes(  # a RIFF header naming a codec libsndfile does not decode
        b"RIFF" + (40).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
        + (0x0055).to_bytes(2, "little") + (1).to_bytes(2, "little") + (16000).to_bytes(4, "little")
        + (2000).to_bytes(4, "little") + (1).to_bytes(2, "little") + (0).to_bytes(2, "little")
        + b"data" + (4).to_bytes(4, "little") + b"\x00\x01\x02\x03"
    )
    (directory / "folder.wav").mkdir()
    os.mkfifo(directory / "fifo.wav")
    soundfile.write(directory / "eight-bit.wav", speech, rate, subtype="PCM_U8")
    import soxr

    six = np.stack([speech * (0.5 + i / 12) for i in range(6)], axis=1)
    soundfile.write(directory / "six-channels-96k.wav", soxr.resample(six, rate, 96000), 96000, subtype="PCM_24")


@pytest.mark.parametrize("name, message", [
    ("truncated-header.wav", "not an audio file libsndfile can read"),
    ("zero-frames.wav", "contains no audio"),
    ("codec.wav", "not an audio file libsndfile can read"),
    ("folder.wav", "is a directory"),
    ("fifo.wav", "not a regular file"),
])
def test_bad_audio_files_are_refused_in_one_line(tmp_path, name, message):
    write_catalogue(tmp_path)
    result = subprocess.run([sys.executable, "-m", "captioner", "replay", str(tmp_path / name), "--url",
                             "ws://127.0.0.1:9/v3/ws"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 5
    (line,) = result.stderr.strip().splitlines()
    assert message in line and "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["eight-bit.wav", "six-channels-96k.wav"])
def test_unusual_but_valid_files_are_converted_and_captioned(tmp_path, replay, name):
    write_catalogue(tmp_path)
    source = WavReplaySource(tmp_path / name, speed=None)
    assert source.sample_rate == 16000
    result = replay(tmp_path / name, script=fixture("hello.json"))
    assert result.error is None
    assert result.final_texts == TranscriptScript.load(fixture("hello.json")).finals


# ------------------------------------------------------------------ text from the network


def _unsafe(data: bytes) -> list[int]:
    """Bytes below 0x20 other than newline: what must never reach a file or a terminal."""
    return sorted({byte for byte in data if byte < 0x20 and byte != 0x0A})


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()),
               min_size=1, max_size=60))
def test_no_control_byte_from_the_server_reaches_a_file_or_the_terminal(tmp_path_factory, text):
    """Any string a server sends, through the client's whole text path (the session's
    decoding, the turn assembler, the terminal view on a terminal and on a pipe, caption
    files, the meeting log and its Markdown), leaves no control byte anywhere."""
    import io

    from captioner.events import CaptionError
    from captioner.protocol.messages import SessionParams
    from captioner.client.session import StreamingSession
    from captioner.default_plugins.terminal import TerminalCaptions
    from captioner.client.turns import TurnAssembler
    from captioner_meeting_log import MeetingLog
    from captioner_subtitles import SubtitleWriter

    session = StreamingSession(v3, "ws://127.0.0.1:9", SessionParams(16000), credential="secret-key")
    words = [{"text": word, "start": 100 * i, "end": 100 * i + 90, "confidence": 0.5, "word_is_final": True,
              "speaker": text} for i, word in enumerate(text.split() or [text])]
    frames = [
        json.dumps({"type": "Begin", "id": text, "expires_at": 1}),
        json.dumps({"type": "Warning", "warning_code": 1, "warning": text}),
        *(json.dumps({"type": "Turn", "turn_order": 0, "turn_is_formatted": False, "end_of_turn": final,
                      "transcript": text, "end_of_turn_confidence": 0.5, "words": words, "speaker_label": text})
          for final in (False, True)),
    ]
    assembler = TurnAssembler()
    directory = tmp_path_factory.mktemp("out")
    views = [TerminalCaptions(out=io.StringIO(), err=io.StringIO(), force_terminal=live, timestamps=True)
             for live in (True, False)]
    views[0].console.record = True  # what the live view drew, without the cursor moves it adds itself
    writer = SubtitleWriter({"srt": directory / "c.srt", "vtt": directory / "c.vtt"}, speakers=True)
    log = MeetingLog(directory / "c.jsonl")
    for frame in frames:
        message = session.decode(frame)
        if type(message).__name__ == "Begin":
            assembler.begin(message.session_id)
        elif type(message).__name__ == "ServerWarning":
            for view in views:
                view.on_error(CaptionError(kind="server", message=f"the server warned: {message.message}", fatal=False))
        else:
            for turn in assembler.feed(message):
                for view in views:
                    (view.on_final if turn.is_final else view.on_partial)(turn)
                if turn.is_final:
                    writer.on_final(turn)
                    log.on_final(turn)
    for view in views:
        view.on_meeting_end(None)
    writer.on_meeting_end(None)
    log.on_meeting_end(None)
    printed = [views[0].console.export_text(styles=False) + views[0].err.getvalue(),
               views[1].out.getvalue() + views[1].err.getvalue()]
    for output in [text.encode("utf-8", "surrogatepass") for text in printed] + [
        path.read_bytes() for path in sorted(directory.iterdir())
    ]:
        assert not _unsafe(output), output
