"""Plugin authors get the fixtures through the pytest11 entry point, in their own projects."""

from __future__ import annotations

import shutil

import pytest

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


def _an_authors_project(pytester, ini: str = "") -> None:
    """hello.wav and its script, and the author's pytest configuration."""
    shutil.copy(fixture("hello.wav"), pytester.path / "hello.wav")
    shutil.copy(fixture("hello.json"), pytester.path / "hello.json")
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\n" + ini)


def test_async_fixtures_reach_a_plugin_authors_async_tests(pytester):
    pytest.importorskip("pytest_asyncio")
    _an_authors_project(pytester, "asyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
        import asyncio
        import threading

        import pytest

        from captioner import hookimpl
        from captioner.testing import close_at


        class AsyncUpper:
            def __init__(self):
                self.lines = []

            @hookimpl
            async def on_final(self, turn):
                await asyncio.sleep(0)
                self.lines.append(turn.text.upper())


        @pytest.mark.asyncio
        async def test_my_plugin(fake_server_async, replay_async):
            threads = threading.active_count()
            server = await fake_server_async("hello.json")
            assert threading.active_count() == threads  # served on the test's own loop, not in a thread
            plugin = AsyncUpper()
            result = await replay_async("hello.wav", server.base_url, plugins=[plugin])
            assert result.error is None
            assert plugin.lines == ["HELLO THIS IS A SHORT TEST OF LIVE CAPTIONS FOR MEETINGS"]
            assert server.connections[0].close_code == 1000


        @pytest.mark.asyncio
        async def test_with_a_fault(fake_server_async, replay_async):
            server = await fake_server_async("hello.json", faults=[close_at(1000, 4002)])
            result = await replay_async("hello.wav", server.base_url)
            assert result.error.code == 4002
            assert server.connections[0].close_code == 4002


        @pytest.mark.asyncio
        async def test_two_servers_in_one_test(fake_server_async):
            first = await fake_server_async("hello.json")
            second = await fake_server_async("hello.json", api_key="k")
            assert first.port != second.port and second.api_key == "k"


        @pytest.mark.asyncio(loop_scope="module")
        async def test_a_test_on_another_loop_is_told_why(fake_server_async):
            with pytest.raises(RuntimeError, match="another event loop"):
                await fake_server_async("hello.json")


        def test_the_sync_fixtures_still_work_beside_them(fake_server, replay):
            server = fake_server("hello.json")
            assert replay("hello.wav", server=server).error is None
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=5, warnings=0)


def test_async_servers_stop_when_the_test_ends(pytester):
    """A second test finds the first one's port closed: the fixture stopped its server."""
    pytest.importorskip("pytest_asyncio")
    _an_authors_project(pytester, "asyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
        import asyncio

        import pytest

        ports = []


        @pytest.mark.asyncio
        async def test_start(fake_server_async):
            server = await fake_server_async("hello.json")
            ports.append(server.port)


        @pytest.mark.asyncio
        async def test_then_it_is_gone():
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", ports[0])
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2, warnings=0)


def test_the_plugin_loads_without_pytest_asyncio(pytester):
    _an_authors_project(pytester)
    # Not installed, as far as this project can tell: the module is shadowed, the plugin off.
    pytester.makepyfile(pytest_asyncio="raise ModuleNotFoundError(\"No module named 'pytest_asyncio'\")")
    pytester.makepyfile(
        test_sync="""
        import asyncio


        def test_sync_fixtures(fake_server, replay):
            server = fake_server("hello.json")
            result = replay("hello.wav", server=server)
            assert result.final_texts == ["hello this is a short test of live captions for meetings"]


        def test_replay_async_needs_no_plugin_to_be_awaited(fake_server, replay_async):
            server = fake_server("hello.json")
            result = asyncio.run(replay_async("hello.wav", server.base_url))
            assert result.error is None and len(result.finals) == 1


        def test_the_async_server_says_what_is_missing(fake_server_async):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:asyncio")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*fake_server_async fixture needs pytest-asyncio (pip install pytest-asyncio)*"])


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
