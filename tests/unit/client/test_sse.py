"""The server-sent events parser: fields, multi-line data, comments, dispatch rules."""

from __future__ import annotations

from bastion.client.sse import SSEEvent, iter_events


def test_events_are_dispatched_on_blank_lines() -> None:
    lines = ["event: line", 'data: {"pos": 0}', "", "event: end", ""]
    assert list(iter_events(lines)) == [
        SSEEvent("line", '{"pos": 0}'),
        SSEEvent("end", ""),
    ]


def test_multi_line_data_is_joined_with_newlines() -> None:
    lines = ["data: first", "data:second", "data:  third", ""]
    assert list(iter_events(lines)) == [SSEEvent("message", "first\nsecond\n third")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    lines = [": ping", "retry: 1000", "whatever: x", "event: line", "data: x", ""]
    assert list(iter_events(lines)) == [SSEEvent("line", "x")]


def test_id_is_remembered_across_events() -> None:
    lines = ["id: 7", "data: a", "", "data: b", ""]
    assert [e.id for e in iter_events(lines)] == ["7", "7"]


def test_line_endings_and_field_without_colon() -> None:
    lines = ["event: line\r", "data\r", "\r"]
    assert list(iter_events(lines)) == [SSEEvent("line", "")]


def test_blank_lines_alone_dispatch_nothing() -> None:
    assert list(iter_events(["", "", ": ping", ""])) == []


def test_an_event_cut_off_by_the_end_of_the_stream_is_dropped() -> None:
    assert list(iter_events(["event: line", 'data: {"pos": 0, "ou'])) == []
