"""TurnAssembler: the promise that each turn is final once, in order, on the meeting clock."""

from __future__ import annotations

from captioner.protocol.messages import TurnUpdate, WireWord
from captioner.client.turns import TurnAssembler


def update(order, text, final, formatted=False, start=100, speaker=None):
    words = tuple(WireWord(w, start + 100 * i, start + 100 * i + 80) for i, w in enumerate(text.split()))
    return TurnUpdate(order, text, words, end_of_turn=final, is_formatted=formatted, speaker=speaker)


def kinds(turns):
    return [("final" if t.is_final else "partial", t.turn_order, t.text) for t in turns]


def test_partials_then_one_final_per_turn():
    assembler = TurnAssembler()
    assembler.begin("s1")
    out = []
    out += assembler.feed(update(0, "hello", False))
    out += assembler.feed(update(0, "hello world", True))
    out += assembler.feed(update(0, "Hello world.", True, formatted=True))  # unasked-for repeat
    out += assembler.feed(update(0, "hello world", False))  # late partial
    out += assembler.feed(update(1, "next", True, start=1000))
    assert kinds(out) == [("partial", 0, "hello"), ("final", 0, "hello world"), ("final", 1, "next")]


def test_with_formatting_the_formatted_twin_is_the_final():
    assembler = TurnAssembler(wait_for_formatted=True)
    assembler.begin("s1")
    out = assembler.feed(update(0, "hello world", True))
    assert kinds(out) == [("partial", 0, "hello world")]
    out = assembler.feed(update(0, "Hello world.", True, formatted=True))
    assert kinds(out) == [("final", 0, "Hello world.")]
    assert out[0].is_formatted
    assert assembler.feed(update(0, "Hello world.", True, formatted=True)) == []


def test_held_unformatted_finals_are_delivered_in_order_when_formatting_never_comes():
    assembler = TurnAssembler(wait_for_formatted=True)
    assembler.begin("s1")
    assembler.feed(update(0, "first", True))
    out = assembler.feed(update(1, "Second.", True, formatted=True, start=1000))
    assert kinds(out) == [("final", 0, "first"), ("final", 1, "Second.")]
    assembler.feed(update(2, "third", True, start=2000))
    assert kinds(assembler.flush()) == [("final", 2, "third")]
    assert assembler.flush() == []


def test_times_are_on_the_meeting_clock_and_session_changes_reset_turn_order():
    assembler = TurnAssembler()
    assembler.begin("s1", offset_ms=0)
    first = assembler.feed(update(0, "one two", True, start=100))[0]
    assert (first.start_ms, first.end_ms, first.session_id) == (100, 280, "s1")
    assembler.begin("s2", offset_ms=60_000)
    again = assembler.feed(update(0, "three", True, start=100))[0]  # turn 0 of a new session
    assert (again.start_ms, again.end_ms, again.session_id) == (60_100, 60_180, "s2")
    assert again.words[0].start_ms == 60_100


def test_partial_display_text_includes_the_word_still_changing():
    assembler = TurnAssembler()
    assembler.begin("s1")
    words = (WireWord("hello", 0, 10), WireWord("wor", 20, 30, is_final=False))
    turn = assembler.feed(TurnUpdate(0, "hello", words, end_of_turn=False))[0]
    assert turn.text == "hello"
    assert turn.display_text == "hello wor"
    empty = assembler.feed(TurnUpdate(0, "", (), end_of_turn=False))[0]
    assert empty.start_ms is None and empty.display_text == ""


def test_a_server_that_never_formats_still_gets_finals_turn_by_turn():
    assembler = TurnAssembler(wait_for_formatted=True)
    assembler.begin("s1")
    assert kinds(assembler.feed(update(0, "first", True))) == [("partial", 0, "first")]
    out = assembler.feed(update(1, "second", True, start=1000))
    assert kinds(out) == [("final", 0, "first"), ("partial", 1, "second")]
    assert assembler.feed(update(0, "First.", True, formatted=True)) == []  # too late: already final
    assert kinds(assembler.flush()) == [("final", 1, "second")]


def test_after_a_reconnect_numbers_go_on_and_repeated_words_are_dropped():
    assembler = TurnAssembler()
    assembler.begin("s1", offset_ms=0)
    first = assembler.feed(update(0, "good morning everyone", True, start=100))[0]
    assert (first.turn_order, first.end_ms) == (0, 380)
    # The new session starts at 300 ms on the meeting clock and resends "everyone".
    assembler.begin("s2", offset_ms=300)
    partial = assembler.feed(update(0, "everyone", False, start=0))
    assert partial == []  # nothing new: "everyone" (300-380) is final already
    resumed = assembler.feed(update(0, "everyone thanks for", True, start=0))[0]
    assert (resumed.turn_order, resumed.text) == (1, "thanks for")
    assert [w.start_ms for w in resumed.words] == [400, 500]
    again = assembler.feed(update(1, "joining", True, start=400))[0]
    assert again.turn_order == 2 and again.session_id == "s2"


def test_an_empty_final_is_not_delivered():
    assembler = TurnAssembler()
    assembler.begin("s1")
    assert assembler.feed(TurnUpdate(0, "", (), end_of_turn=True)) == []
    assert kinds(assembler.feed(update(1, "next", True, start=1000))) == [("final", 0, "next")]


def test_a_long_session_keeps_no_state_per_turn():
    """An hour-long meeting must not grow the assembler: finished turns are forgotten."""
    assembler = TurnAssembler(wait_for_formatted=True)
    assembler.begin("s")
    delivered = []
    for order in range(500):
        assembler.feed(update(order, "a partial", final=False, start=order * 1000))
        assembler.feed(update(order, "the final", final=True, start=order * 1000))
        delivered += assembler.feed(update(order, "The final.", final=True, formatted=True, start=order * 1000))
    assert [t.turn_order for t in delivered] == list(range(500))
    assert len(assembler._numbered) <= 1 and not assembler._held


def test_a_turn_says_whose_it_is_and_speaker_labels_combine_with_the_channels():
    alone = TurnAssembler()
    alone.begin("s")
    (turn,) = alone.feed(update(0, "hello there", final=True, speaker="A"))
    assert (turn.channel, turn.label, turn.speaker) == ("mic", "A", "A")  # one channel: the speaker alone
    meeting = TurnAssembler(channel="meeting", channel_label="Meeting")
    meeting.begin("s")
    (turn,) = meeting.feed(update(0, "hello there", final=True, speaker="B"))
    assert (turn.channel, turn.label) == ("meeting", "Meeting B")
    mic = TurnAssembler(channel="mic", channel_label="You")
    mic.begin("s")
    (turn,) = mic.feed(update(0, "hi", final=True))
    assert (turn.channel, turn.label) == ("mic", "You")
