"""Plugin authors get the fixtures through the pytest11 entry point, in their own projects."""

from __future__ import annotations

import shutil

from conftest import fixture

pytest_plugins = ["pytester"]


def test_fixtures_reach_a_plugin_authors_test_suite(pytester):
    shutil.copy(fixture("hello.wav"), pytester.path / "hello.wav")
    shutil.copy(fixture("hello.json"), pytester.path / "hello.json")
    pytester.makepyfile(
        """
        from captioner import hookimpl
        from captioner.testing import close_at


        class Upper:
            def __init__(self):
                self.lines = []

            @hookimpl
            def on_final(self, turn):
                self.lines.append(turn.text.upper())


        def test_my_plugin(replay):
            plugin = Upper()
            result = replay("hello.wav", plugins=[plugin])
            assert plugin.lines == [text.upper() for text in result.final_texts]
            assert plugin.lines == ["HELLO THIS IS A SHORT TEST OF LIVE CAPTIONS FOR MEETINGS"]


        def test_with_a_fault(fake_server, replay):
            server = fake_server("hello.json", faults=[close_at(1000, 4002)])  # no retry can fix 4002
            result = replay("hello.wav", server=server)
            assert result.error.code == 4002
            assert server.connections[0].close_code == 4002
        """
    )
    # A subprocess, so the plugin is found the way it is in an author's project: by entry point.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_problems_names_each_broken_promise_and_nothing_in_a_clean_replay(replay):
    from dataclasses import replace

    from captioner.testing import EventRecorder

    clean = replay(fixture("meeting.wav"))
    assert clean.problems(59_400) == []

    first, second = clean.finals[:2]
    recorder = EventRecorder()
    backwards = replace(second, turn_order=2, words=tuple(reversed(second.words)))
    recorder.events = [("final", first), ("partial", first), ("final", backwards), ("final", replace(first, turn_order=3, words=()))]
    found = recorder.problems(audio_ms=1000)
    assert not any("not numbered" in p for p in found)  # 0, 2, 3: a reconnect may skip a number
    recorder.events.append(("final", replace(second, turn_order=3)))
    found = recorder.problems(audio_ms=1000)
    assert any("not numbered" in p for p in found)
    assert any("a partial of turn 0 after its final" in p for p in found)
    assert any("final 3 has no words" in p for p in found)
    assert any("go backwards" in p for p in found)
    assert any("outside the audio" in p for p in found)
