"""The loader's two YAML paths, libyaml and pure-Python PyYAML, give the same result.

The pure-Python path is the reference. These tests check, for every YAML text the repository
holds (the string literals of the test suite, the YAML blocks of the docs, every ``.yml``
file, the benchmark's files), that the C path gives the same values and node positions, and
that ``parse`` gives the same diagnostics at the same positions; that every hostile-input
limit holds on both paths and on the C path by itself; that the constructs on which libyaml
and PyYAML differ end up on the pure-Python path; and that ``BASTION_YAML_PURE`` works.
"""

from __future__ import annotations

import ast
import os
import random
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.spec_parse import drone_yml, scheduler_yml

from bastion.spec import loader
from bastion.spec.diagnostics import Diagnostic, Kind
from bastion.spec.loader import MAX_BYTES, MAX_DEPTH, MAX_DOCUMENTS, load_documents
from bastion.spec.parse import parse

pytestmark = pytest.mark.skipif(not loader._WITH_LIBYAML, reason="PyYAML without libyaml")

ROOT = Path(__file__).resolve().parents[3]
_SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}
_YAML_BLOCK = re.compile(r"```ya?ml\n(.*?)```", re.DOTALL)

# -- the corpus: every YAML text of the repository ---------------------------------------------


def _files(suffixes: tuple[str, ...]) -> Iterator[Path]:
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)  # not the venv's packages
        for name in sorted(names):
            if name.endswith(suffixes):
                yield Path(folder, name)


def _literals(path: Path) -> list[str]:
    """The string literals of a Python file that could be YAML, as written and dedented."""
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if ":" in text or "\n" in text:
                out.append(text)
                if textwrap.dedent(text) != text:
                    out.append(textwrap.dedent(text))
    return out


def _corpus() -> dict[str, list[str]]:
    corpus: dict[str, list[str]] = {}
    for path in _files((".py",)):
        if path.relative_to(ROOT).parts[0] == "tests":
            corpus[str(path.relative_to(ROOT))] = _literals(path)
    for path in _files((".md",)):
        blocks = _YAML_BLOCK.findall(path.read_text(encoding="utf-8"))
        if blocks:
            corpus[str(path.relative_to(ROOT))] = blocks
    for path in _files((".yml", ".yaml")):
        corpus[str(path.relative_to(ROOT))] = [path.read_text(encoding="utf-8")]
    corpus["bench/spec_parse.py"] = [drone_yml(10), drone_yml(1), scheduler_yml(10)]
    return {name: texts for name, texts in corpus.items() if texts}


CORPUS = _corpus()


def _use(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    if path == "pure":
        monkeypatch.setenv("BASTION_YAML_PURE", "1")
    else:
        monkeypatch.delenv("BASTION_YAML_PURE", raising=False)


def _loaded(text: str | bytes) -> tuple[list[tuple[Any, ...]], list[Diagnostic]]:
    docs, problems = load_documents(text)
    return [(d.index, d.value, d.start, d.positions) for d in docs], problems


def _outcome(monkeypatch: pytest.MonkeyPatch, path: str, text: str | bytes) -> Any:
    """Everything ``load_documents`` and ``parse`` say about ``text`` on one path."""
    _use(monkeypatch, path)
    result = parse(text)
    return _loaded(text), result.diagnostics, result.manifest.pipelines


def _raw_c(text: str) -> tuple[list[tuple[Any, ...]], list[Diagnostic]] | None:
    """The C path's own result, without the fallback; None when it refuses the text."""
    end = loader._END_OF_STREAM.search(text)  # as load_documents does first
    text = text if end is None else text[: end.start()]
    if not loader._fast_path_allowed(text):
        return None
    try:
        docs, problems = loader._load(text, ".drone.yml", fast=True)
    except Exception:  # load_documents would hand the text to the pure path
        return None
    return [(d.index, d.value, d.start, d.positions) for d in docs], problems


@pytest.fixture(autouse=True)
def _c_path_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test picks its path; a BASTION_YAML_PURE=1 of the whole run must not decide."""
    monkeypatch.delenv("BASTION_YAML_PURE", raising=False)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, for each YAML load, whether it ran on the C path (True) or not."""
    seen: list[bool] = []
    real = loader._load

    def spy(text: str, filename: str, *, fast: bool) -> Any:
        seen.append(fast)
        return real(text, filename, fast=fast)

    monkeypatch.setattr(loader, "_load", spy)
    return seen


# -- same values, positions and diagnostics on both paths --------------------------------------


def test_the_corpus_is_the_repository() -> None:
    assert "examples/greeter/.drone.yml" in CORPUS
    assert "tests/unit/spec/test_parse.py" in CORPUS
    assert sum(len(texts) for texts in CORPUS.values()) > 500


@pytest.mark.parametrize("source", sorted(CORPUS))
def test_both_paths_agree_on_every_yaml_text(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_YAML_PURE", raising=False)
    differ = []
    for text in CORPUS[source]:
        pure = _outcome(monkeypatch, "pure", text)
        both = _outcome(monkeypatch, "c", text)
        if both != pure:
            differ.append(text)
            continue
        (reference, problems), _, _ = pure
        raw = _raw_c(text)
        if not problems and raw is not None and raw != (reference, []):
            differ.append(text)  # the C path on its own: every node's line and column
    assert differ == []


def test_libyaml_loads_the_valid_files_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a vacuous agreement: the C path serves nearly every valid text without help."""
    monkeypatch.setenv("BASTION_YAML_PURE", "1")
    valid = [t for texts in CORPUS.values() for t in texts if not load_documents(t)[1]]
    monkeypatch.delenv("BASTION_YAML_PURE")
    served = [t for t in valid if _raw_c(t) is not None]
    assert len(valid) > 300
    assert len(served) >= 0.95 * len(valid)
    for name in ("examples/greeter/.drone.yml", "bench/spec_parse.py"):
        assert all(_raw_c(t) is not None for t in CORPUS[name])


def test_a_file_with_positions_and_merge_keys_is_identical() -> None:
    text = drone_yml(3)
    reference = loader._load(text, "f", fast=False)
    fast = loader._load(text, "f", fast=True)
    assert fast[1] == reference[1] == []
    assert [(d.value, d.start, d.positions) for d in fast[0]] == [
        (d.value, d.start, d.positions) for d in reference[0]
    ]
    step = fast[0][2].value["steps"][1]  # `<<: *install` then its own keys
    assert step["image"] == "bastion/python:3.11" and step["name"] == "lint"
    assert fast[0][2].positions[("steps", 1, "name")].line > 1


# -- which path runs ---------------------------------------------------------------------------


def test_a_valid_file_is_loaded_by_libyaml_only(calls: list[bool]) -> None:
    docs, problems = load_documents("kind: pipeline\nsteps: [{name: a, image: b}]\n")
    assert problems == [] and len(docs) == 1
    assert calls == [True]


@pytest.mark.parametrize(("value", "expected"), [("1", [False]), ("0", [True]), ("", [True])])
def test_bastion_yaml_pure_forces_the_pure_path(
    value: str, expected: list[bool], calls: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_YAML_PURE", value)
    load_documents("kind: pipeline\n")
    assert calls == expected


def test_an_error_is_reported_by_the_pure_path(calls: list[bool]) -> None:
    _, (problem,) = load_documents("kind: pipeline\nsteps: [a, b\n")
    assert calls == [True, False]
    # PyYAML's wording; libyaml's would be "did not find expected ',' or ']'".
    assert "expected ',' or ']', but got '<stream end>'" in problem.message


# -- hostile input: every limit on both paths --------------------------------------------------


def _bomb() -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    return "\n".join(lines)


def _alias_chain(levels: int, count: int) -> str:
    """``count`` aliases that nest the value ``levels`` deeper each, shallow in the text."""
    inner = ["l0: &l0 x"]
    for i in range(1, count):
        inner.append(f"l{i}: &l{i} " + "[" * levels + f"*l{i - 1}" + "]" * levels)
    return "\n".join(inner)


def _indentless(levels: int) -> str:
    """Block sequences at their mapping's indentation: two nodes per level, one token."""
    lines = ["k0:\n"] + ["  " * (i - 1) + f"- k{i}:\n" for i in range(1, levels)]
    return "".join(lines) + "  " * (levels - 1) + "- x\n"


HOSTILE: dict[str, tuple[str | bytes, Kind, str]] = {
    "10,000 [": ("[" * 10_000, Kind.LIMIT, str(MAX_DEPTH)),
    "10,000 {a:": ("{a: " * 10_000, Kind.LIMIT, str(MAX_DEPTH)),
    "65 [ closed": ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), Kind.LIMIT, "nested deeper"),
    "65 { closed": ("{a: " * (MAX_DEPTH + 1) + "}" * (MAX_DEPTH + 1), Kind.LIMIT, "nested deeper"),
    "indentless, too deep": (_indentless(MAX_DEPTH // 2 + 1), Kind.LIMIT, "deeper than"),
    "deep block mapping": (
        "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 5)) + "  " * 70 + "v: 1\n",
        Kind.LIMIT,
        "nested deeper",
    ),
    "billion laughs": (_bomb(), Kind.LIMIT, "alias bomb"),
    # Before the height was memoised, these were accepted, and with 40 levels the conversion
    # died of a RecursionError: a traceback instead of a diagnostic.
    "aliases nest deep": (_alias_chain(1, MAX_DEPTH + 2), Kind.LIMIT, "aliases nest"),
    "aliases nest deep, 40 levels each": (_alias_chain(40, 40), Kind.LIMIT, "aliases nest"),
    "recursive alias": ("a: &a\n  b: *a\n", Kind.LIMIT, "refers to itself"),
    "recursive alias in a list": ("a: &a [x, *a]\n", Kind.LIMIT, "refers to itself"),
    "too many documents": ("a: 1\n---\n" * (MAX_DOCUMENTS + 1), Kind.LIMIT, "documents"),
    "oversized bytes": (b"a: b\n" * (MAX_BYTES // 5 + 10), Kind.LIMIT, str(MAX_BYTES)),
    "oversized text": ("a: b\n" * (MAX_BYTES // 5 + 10), Kind.LIMIT, str(MAX_BYTES)),
    "duplicate key": ("kind: pipeline\nname: a\nname: b\n", Kind.SCHEMA, "duplicate key"),
    "duplicate key in a flow mapping": ("{a: 1, a: 2}", Kind.SCHEMA, "duplicate key"),
    "non-string key": ("? [a, b]\n: c\n", Kind.SCHEMA, "plain string"),
    "merge of a scalar": ("a: &x 1\nb:\n  <<: *x\n", Kind.SCHEMA, "merge key"),
    "tagged merge of a scalar": ("a:\n  !!str <<: 1\n", Kind.SCHEMA, "merge key"),
    "undefined alias": ("a: *nope\n", Kind.SYNTAX, "undefined alias"),
    "python tag": ("a: !!python/object:os.system x\n", Kind.SYNTAX, "invalid value"),
    "invalid UTF-8": (b"kind: pipeline\nname: \xff\n", Kind.SYNTAX, "UTF-8"),
    "lone surrogate": ("kind: pipeline\nname: \ud800\n", Kind.SYNTAX, "invalid YAML"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_is_refused_the_same_on_both_paths(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, kind, words = HOSTILE[name]
    pure = _outcome(monkeypatch, "pure", text)
    both = _outcome(monkeypatch, "c", text)
    assert both == pure
    (docs, problems), _, _ = both
    assert docs == []
    assert [p.kind for p in problems] == [kind]
    assert words in problems[0].message


@pytest.mark.parametrize(
    "name",
    [
        "65 [ closed",
        "65 { closed",
        "indentless, too deep",
        "deep block mapping",
        "billion laughs",
        "aliases nest deep",
        "aliases nest deep, 40 levels each",
        "recursive alias",
        "recursive alias in a list",
        "too many documents",
        "duplicate key",
        "duplicate key in a flow mapping",
        "merge of a scalar",
        "tagged merge of a scalar",
        "python tag",
    ],
)
def test_the_c_path_enforces_the_limits_by_itself(name: str) -> None:
    """Not only through the fallback: libyaml's own result is refused by the same checks."""
    text, kind, _ = HOSTILE[name]
    assert isinstance(text, str) and loader._fast_path_allowed(text)
    docs, problems = loader._load(text, ".drone.yml", fast=True)
    assert docs == []
    assert [p.kind for p in problems] == [kind]


@pytest.mark.parametrize(
    "text",
    [
        "[" * MAX_DEPTH + "]" * MAX_DEPTH,
        "[" * MAX_DEPTH + "x" + "]" * MAX_DEPTH,  # a leaf at the limit: the C path scans
        "{a: " * MAX_DEPTH + "x" + "}" * MAX_DEPTH,
        _indentless(MAX_DEPTH // 2),
    ],
)
def test_nesting_at_the_limit_is_accepted_on_both_paths(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pure = _outcome(monkeypatch, "pure", text)
    assert _outcome(monkeypatch, "c", text) == pure
    assert pure[0][1] == []
    assert _raw_c(text) == pure[0]


@pytest.mark.parametrize(
    "text",
    [
        "kind: pipeline\nsteps: []\n...\nkind: {broken\n",
        "defaults: &d {image: a, pull: never}\nstep:\n  <<: *d\n  image: b\n",
        "a: &a {x: 1}\nb: &b {x: 2, y: 2}\nc:\n  <<: [*a, *b]\n  z: 3\n",
        "a: {x: 1}\nb:\n  !!merge <<: {y: 2}\n",
        "a:\n  '<<': 1\n",  # quoted: a plain key
        "a: yes\nb: 2001-12-14\non: x\nc: 0x1F\nd: 1_000\ne: .inf\nf: ~\ng: !!binary aGk=\n",
        "a: |\n  x\n\n  y\nb: >-\n  p\n   q\n  r\n",
        "é: ü\nß: [ä, {ö: 1}]\n😀: x\n",
        "a: x\r\nb: [1,\r\n  2]\r\n",
        "kind: pipeline\n---\n",
    ],
)
def test_yaml_features_agree(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pure = _outcome(monkeypatch, "pure", text)
    assert _outcome(monkeypatch, "c", text) == pure
    assert pure[0][1] == []
    assert _raw_c(text) == pure[0]


# -- where libyaml and PyYAML differ, the pure path decides ------------------------------------


KNOWN_DIFFERENCES = {
    # libyaml accepts these where PyYAML reports a syntax error
    "tab after a scalar": "a: b\t\n",
    "tab before a comment": "a: b\n\t# c\n",
    "byte order mark inside": "a: b\ufeff\nc: d\n",
    "comment right after a block header": "a: |#\n  x\n",
    "question mark in a flow scalar": "{name: a, volumes? : [x]}\n",
    # both accept these, with another value or position
    "bare ! tag": "a: !\nb: ! 5\n",
    "local tag": "a: !x y\n",
    "empty last document without a line break": "a: b\n--- ",
    "empty document at the end of the text": "\n---",
    "empty document and a comment": "a: b\n--- # c",
}


@pytest.mark.parametrize("name", sorted(KNOWN_DIFFERENCES))
def test_known_differences_go_to_the_pure_path(
    name: str, monkeypatch: pytest.MonkeyPatch, calls: list[bool]
) -> None:
    text = KNOWN_DIFFERENCES[name]
    pure = _outcome(monkeypatch, "pure", text)
    calls.clear()
    assert _outcome(monkeypatch, "c", text) == pure
    assert calls[-1] is False  # the pure path had the last word (for load_documents and parse)
    assert _raw_c(text) is None  # refused by the C path's guards, not merely tolerated


def test_random_edits_of_the_corpus_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeded mutations of valid texts, often invalid: both paths say the same thing."""
    pieces = ["\t", " ", "\n", "\n  ", ": ", "- ", "[", "]", "{", "}", ",", "#", "&a ", "*a"]
    pieces += ["!", "!!str ", "|", ">-", "'", '"', "\\", "? ", "%", "---\n", "\r\n", "é"]
    pieces += ["\u2028", "\ufeff", "<<: ", "~", "\\x41", "|#", "&", "*"]
    texts = [t for texts in CORPUS.values() for t in texts if len(t) < 2000]
    rnd = random.Random(20261126)
    differ = []
    for _ in range(400):
        text = rnd.choice(texts)
        for _ in range(rnd.randint(1, 3)):
            at = rnd.randint(0, len(text))
            if rnd.random() < 0.7:
                text = text[:at] + rnd.choice(pieces) + text[at:]
            else:
                text = text[:at] + text[at + 1 :]
        if _outcome(monkeypatch, "c", text) != _outcome(monkeypatch, "pure", text):
            differ.append(text)
    assert differ == []
