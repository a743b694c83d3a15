"""The safe YAML loader: positions, merge keys, and hostile input refused cleanly."""

from __future__ import annotations

import pytest

from bastion.spec.diagnostics import Kind
from bastion.spec.loader import MAX_BYTES, MAX_DEPTH, load_documents


def test_positions_are_recorded_for_every_path() -> None:
    docs, problems = load_documents("kind: pipeline\nsteps:\n- name: a\n  image: x\n")
    assert problems == []
    (doc,) = docs
    assert doc.positions[("steps", 0, "image")].line == 4
    assert doc.positions[("steps", 0, "image")].column == 3
    assert doc.locate(("steps", 0, "missing")).line == 3  # falls back to the nearest parent


def test_merge_keys_and_anchors_work_and_explicit_keys_win() -> None:
    text = "defaults: &d {image: a, pull: never}\nstep:\n  <<: *d\n  image: b\n"
    (doc,), problems = load_documents(text)
    assert problems == []
    assert doc.value["step"] == {"image": "b", "pull": "never"}


def test_documents_end_at_three_dots() -> None:
    docs, problems = load_documents("kind: pipeline\n---\nkind: secret\n...\nkind: {broken\n")
    assert problems == []
    assert [d.value["kind"] for d in docs] == ["pipeline", "secret"]


def test_yaml_syntax_error_has_line_and_column() -> None:
    _, (problem,) = load_documents("kind: pipeline\nsteps: [a, b\n", "ci.yml")
    assert problem.kind is Kind.SYNTAX
    assert problem.file == "ci.yml"
    assert problem.line >= 2


def test_billion_laughs_is_refused_before_expansion() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    docs, (problem,) = load_documents("\n".join(lines))
    assert docs == []
    assert problem.kind is Kind.LIMIT
    assert "alias" in problem.message


def test_recursive_alias_is_refused() -> None:
    _, problems = load_documents("a: &a\n  b: *a\n")
    # PyYAML either refuses the recursive alias itself or composes a cycle we refuse.
    assert len(problems) == 1
    assert problems[0].kind in {Kind.LIMIT, Kind.SYNTAX}


@pytest.mark.parametrize("opener", ["[", "{a: "])
def test_deep_nesting_is_refused_without_recursion_error(opener: str) -> None:
    _, (problem,) = load_documents(opener * 10_000)
    assert problem.kind is Kind.LIMIT
    assert str(MAX_DEPTH) in problem.message


def test_deep_block_nesting_is_refused() -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 5)) + "  " * 70 + "v: 1\n"
    _, (problem,) = load_documents(text)
    assert problem.kind is Kind.LIMIT


def test_oversized_file_is_refused() -> None:
    _, (problem,) = load_documents(b"a: b\n" * (MAX_BYTES // 5 + 10))
    assert problem.kind is Kind.LIMIT
    assert str(MAX_BYTES) in problem.message


def test_invalid_utf8_names_the_line() -> None:
    _, (problem,) = load_documents(b"kind: pipeline\nname: \xff\xfe\n")
    assert problem.line == 2
    assert "UTF-8" in problem.message


def test_duplicate_keys_are_errors() -> None:
    _, (problem,) = load_documents("kind: pipeline\nname: a\nname: b\n")
    assert problem.line == 3
    assert "duplicate key 'name'" in problem.message


def test_non_string_keys_are_refused() -> None:
    _, (problem,) = load_documents("? [a, b]\n: c\n")
    assert "key" in problem.message


def test_yaml11_booleans_and_timestamps() -> None:
    (doc,), _ = load_documents("a: yes\nb: 2001-12-14\non: x\n")
    assert doc.value == {"a": True, "b": "2001-12-14", "on": "x"}
