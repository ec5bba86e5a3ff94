"""Turn detection and word-time estimation: pure logic, on synthetic voice-activity flags."""

from __future__ import annotations

from captioner.server.endpointing import (
    EndpointSettings,
    MayEnd,
    MustEnd,
    Paused,
    Resumed,
    TurnDetector,
    TurnStarted,
    speech_spans,
)
from captioner.server.wordtimes import estimate_word_times


def run(detector, pattern, paused=False):
    """Feed '#' (speech) and '.' (silence) frames; return (frame, decision) pairs (the
    speculative Paused ones only when asked)."""
    out = []
    for char in pattern:
        for decision in detector.feed(char == "#"):
            if paused or not isinstance(decision, Paused):
                out.append((detector.frame - 1, decision))
    return out


def settings(**kwargs):
    return EndpointSettings(**{"min_turn_silence_ms": 300, "max_turn_silence_ms": 600, "preroll_ms": 60, "postroll_ms": 60, **kwargs})


def test_a_turn_starts_on_sustained_speech_and_may_then_must_end():
    detector = TurnDetector(settings())
    decisions = run(detector, "....#." + "....." + "######" + "." * 25)
    # A lone blip is not speech; three of five frames are.
    assert decisions[0] == (13, TurnStarted(9))  # speech from frame 11, 2 frames of preroll
    assert isinstance(decisions[1][1], MayEnd) and decisions[1][0] == 16 + 10  # 300 ms after the last speech
    assert decisions[1][1].end_frame == 17 + 2  # after the last speech frame, plus postroll
    assert decisions[2] == (16 + 20, MustEnd(19))  # 600 ms
    assert not detector.in_turn


def test_speech_after_a_pause_resumes_the_same_turn():
    detector = TurnDetector(settings())
    decisions = [d for _, d in run(detector, "#####" + "." * 12 + "####" + "." * 25)]
    assert [type(d) for d in decisions] == [TurnStarted, MayEnd, Resumed, MayEnd, MustEnd]


def test_isolated_blips_do_not_reset_the_silence():
    detector = TurnDetector(settings())
    decisions = [d for _, d in run(detector, "#####" + ".#.#." * 4 + "." * 5)]
    assert [type(d) for d in decisions] == [TurnStarted, MayEnd, MustEnd]


def test_long_turns_are_cut_at_a_pause_and_at_the_hard_limit():
    detector = TurnDetector(settings(max_turn_ms=600, hard_max_turn_ms=1200))
    decisions = run(detector, "#" * 25 + "....." + "#" * 60)
    kinds = [type(d).__name__ for _, d in decisions]
    assert kinds[:3] == ["TurnStarted", "MustEnd", "TurnStarted"]  # cut at the first 150 ms pause
    assert decisions[1][0] == 24 + 5
    assert kinds[3] == "MustEnd" and decisions[3][0] - decisions[2][1].start_frame + 1 == 40  # 1200 ms


def test_a_new_turn_never_reaches_back_into_the_previous_one():
    detector = TurnDetector(settings(preroll_ms=300))
    decisions = [d for _, d in run(detector, "#####" + "." * 21 + "#####")]
    end = next(d for d in decisions if isinstance(d, MustEnd)).end_frame
    second = [d for d in decisions if isinstance(d, TurnStarted)][1]
    assert second.start_frame >= end


def test_force_end_and_close_turn():
    detector = TurnDetector(settings())
    run(detector, "######")
    assert detector.force_end() == [MustEnd(6)]
    assert detector.force_end() == []
    run(detector, "......######")
    detector.close_turn(18)
    assert not detector.in_turn and run(detector, "..") == []


def test_speech_spans():
    assert speech_spans([False, True, True, False, True]) == [(1, 3), (4, 5)]
    assert speech_spans([]) == []


def test_estimated_word_times_follow_the_speech():
    flags = [False] * 10 + [True] * 20 + [False] * 10 + [True] * 20 + [False] * 5
    words = estimate_word_times("one two three four", flags)
    assert [w.text for w in words] == ["one", "two", "three", "four"]
    assert words[0].start == 0.3  # where speech starts, not where the audio starts
    assert all(a.start < a.end <= b.start for a, b in zip(words, words[1:]))
    assert words[-1].end <= 60 * 0.03
    assert not any(0.9 < w.start < 1.2 for w in words)  # no word starts in the pause
    assert estimate_word_times("", flags) == ()
    assert len(estimate_word_times("a b", [False] * 4)) == 2  # no speech flagged: spread evenly


def test_a_pause_is_said_before_the_turn_may_end_with_where_its_audio_would_end():
    detector = TurnDetector(settings(min_turn_silence_ms=300, postroll_ms=240, paused_ms=90))
    decisions = run(detector, "######" + "....." + "##" + "." * 12, paused=True)
    kinds = [type(d).__name__ for _, d in decisions]
    # A pause 90 ms after the speech; speech comes back: resumed, and the final decoded
    # meanwhile is thrown away; then a pause again, and MayEnd.
    assert kinds == ["TurnStarted", "Paused", "Resumed", "Paused", "MayEnd"]
    (_, first), (_, second) = [(f, d) for f, d in decisions if isinstance(d, Paused)]
    assert (first.heard_frame, first.end_frame) == (6 + 3, 6 + 8)  # heard 90 ms of the 240 ms postroll
    assert (second.heard_frame, second.end_frame) == (13 + 3, 13 + 8)
    may_end = decisions[-1][1]
    assert may_end.end_frame == second.end_frame  # the same audio: the speculative decode is the candidate
