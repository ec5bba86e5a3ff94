"""Translation: in order, through on_translation, never holding up the captions."""

from __future__ import annotations

from pathlib import Path

import pytest

import captioner_translate
from captioner import UsageError, hookimpl
from captioner.testing import TranscriptScript
from captioner_translate.backends import apertium_pairs
from captioner_translate.testing import FakeLibreTranslate

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
SCRIPT = TranscriptScript.load(FIXTURES / "meeting.json")
SPANISH = {turn.plain_text: f"es {index}" for index, turn in enumerate(SCRIPT.turns)}


class Collect:
    def __init__(self):
        self.translations = []

    @hookimpl
    def on_translation(self, translation):
        self.translations.append(translation)


def run(replay, server, wav="meeting.wav", **options):
    collect = Collect()
    result = replay(FIXTURES / wav, plugins=[captioner_translate, collect],
                    options={"translate": "es", "translate_url": server.url, "translate_from": "en",
                             "translate_timeout": 5.0, **options})
    return result, collect.translations


def test_each_final_is_translated_in_order(replay, monkeypatch):
    monkeypatch.setenv("LIBRETRANSLATE_API_KEY", "lt-key-123")
    with FakeLibreTranslate({"es": SPANISH}, api_key="lt-key-123") as server:
        result, translations = run(replay, server)
        requests = server.requests
    assert result.final_texts == SCRIPT.finals  # the captions themselves are untouched
    assert [t.text for t in translations] == [f"es {i}" for i in range(len(SCRIPT.turns))]
    assert [t.turn.turn_order for t in translations] == list(range(len(SCRIPT.turns)))
    assert all(t.language == "es" and t.backend == "libretranslate" for t in translations)
    assert requests[0] == {"q": SCRIPT.finals[0], "source": "en", "target": "es", "format": "text", "api_key": "lt-key-123"}
    assert not result.errors


def test_several_languages_at_once(replay):
    with FakeLibreTranslate({"es": {}, "fr": {}}) as server:
        _, translations = run(replay, server, wav="hello.wav", translate="es,fr")
    assert sorted(t.text.split()[0] for t in translations) == ["[es]", "[fr]"]


@pytest.mark.parametrize("mode, reason", [
    ("error", "HTTP 500: Internal server error"),
    ("garbage", "not its JSON"),
    ("missing", "not its JSON"),
    ("hang", "no answer within 0.5 s"),
])
def test_a_failing_backend_is_a_warning_and_the_captions_are_complete(replay, mode, reason):
    with FakeLibreTranslate({"es": SPANISH}, mode=mode) as server:
        result, translations = run(replay, server, wav="hello.wav", translate_timeout=0.5)
    assert result.error is None and translations == []
    assert result.final_texts == TranscriptScript.load(FIXTURES / "hello.json").finals
    (error,) = [e for e in result.errors if e.plugin == "translate"]
    assert not error.fatal and reason in error.message and "the original captions go on" in error.message


def test_a_dead_backend_rests_instead_of_piling_up(replay):
    with FakeLibreTranslate({"es": SPANISH}, mode="error") as server:
        result, _ = run(replay, server)
        asked = len(server.requests)
    assert asked == 3 < len(SCRIPT.turns)  # three failures, then a rest longer than the meeting
    messages = [e.message for e in result.errors if e.plugin == "translate"]
    assert len(messages) == 3 and "rests for 30 s after 3 failures" in messages[-1]
    assert result.final_texts == SCRIPT.finals


def test_unknown_targets_and_backends_fail_at_start(replay):
    with FakeLibreTranslate({"es": {}}) as server:
        with pytest.raises(UsageError, match="cannot translate en into that; it can into: es"):
            run(replay, server, wav="hello.wav", translate="xx")
        with pytest.raises(UsageError, match="--translate-backend nope: unknown; installed: apertium, argos, libretranslate"):
            run(replay, server, wav="hello.wav", translate_backend="nope")


def test_apertium_translates_offline(replay):
    assert ("en", "es") in apertium_pairs()
    collect = Collect()
    result = replay(FIXTURES / "hello.wav", plugins=[captioner_translate, collect],
                    options={"translate": "es", "translate_backend": "apertium", "translate_from": "en",
                             "translate_timeout": 10.0})
    assert result.error is None
    (translation,) = collect.translations
    assert translation.backend == "apertium"
    assert translation.text.lower().startswith("hola") and "prueba" in translation.text
