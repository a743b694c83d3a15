"""Safe YAML loading with source positions, for hostile input.

``.drone.yml`` files come from repositories, including forks: they are untrusted input. This
loader turns YAML text into plain Python values (dict, list, str, int, float, bool, None) and
a map from each value's YAML path to its line and column, while refusing:

- files larger than ``MAX_BYTES``;
- nesting deeper than ``MAX_DEPTH`` (PyYAML's composer is recursive: a few thousand ``[``
  would otherwise end in a RecursionError), checked on the token stream before composing,
  and on the node graph with aliases expanded (the conversion recurses too);
- alias bombs ("billion laughs"): the size a document would have once every alias is
  expanded is computed on the node graph, with memoisation, *before* anything is expanded;
  recursive aliases are refused too;
- more than ``MAX_DOCUMENTS`` documents.

Anchors, aliases and ``<<`` merge keys work as in Drone's YAML (explicit keys win over merged
ones). Duplicate keys are errors: YAML parsers disagree on which one wins. Scalars resolve with
YAML 1.1 rules like Drone's Go parser (``on``/``yes`` are booleans); timestamps stay text. A
line that is exactly ``...`` ends the file, as in Drone.

Two paths, one result: libyaml (``yaml.CSafeLoader``, about ten times faster) composes
when it is available, and PyYAML's pure-Python loader is the reference. Both feed
the same limits and the same conversion. Whatever the C path cannot load cleanly (a syntax
error, a limit, any surprise) and the few constructs on which the two are known to disagree
go through the pure-Python path, so a diagnostic is always PyYAML's, and a valid file gives
the same values and positions either way (``tests/unit/spec/test_loader_paths.py`` checks it
on every YAML text of the repository). ``BASTION_YAML_PURE=1`` turns the C path off.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bastion.spec.diagnostics import Diagnostic, Kind, format_path

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 100_000
MAX_DOCUMENTS = 64

YamlPath = tuple[str | int, ...]

_END_OF_STREAM = re.compile(r"^\.\.\.[ \t]*\r?$", re.MULTILINE)
_OPENERS = (
    yaml.BlockMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.FlowSequenceStartToken,
)
_CLOSERS = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
_HEADER_COMMENT = re.compile(r"[|>][-+0-9]*#")
_FLOW_OPENERS = (yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken)
_FLOW_CLOSERS = (yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
_SUSPECTS = (yaml.TagToken, yaml.ScalarToken)  # see _refuse_known_differences
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_LEAF = (1, 0)  # a scalar's (size, height) for _Converter.measure
_WITH_LIBYAML: bool = getattr(yaml, "__with_libyaml__", False)


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class LoadedDocument:
    index: int
    value: Any
    start: Position
    positions: dict[YamlPath, Position] = field(default_factory=dict)

    def locate(self, path: YamlPath) -> Position:
        """The position of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            pos = self.positions.get(path[:end])
            if pos is not None:
                return pos
        return self.start


class _LoadError(Exception):
    def __init__(self, message: str, node: Node | None, kind: Kind, path: YamlPath = ()) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.kind = kind
        self.path = path


def _position(node: Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def load_documents(
    source: str | bytes, filename: str = ".drone.yml"
) -> tuple[list[LoadedDocument], list[Diagnostic]]:
    """Parse every YAML document of ``source``. On any error, no documents are returned."""

    def problem(
        message: str, line: int = 1, column: int = 1, kind: Kind = Kind.LIMIT
    ) -> Diagnostic:
        return Diagnostic(message, file=filename, line=line, column=column, kind=kind)

    if isinstance(source, bytes):
        if len(source) > MAX_BYTES:
            return [], [_too_large(filename, len(source))]
        try:
            text = source.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = source[: exc.start].count(b"\n") + 1
            return [], [
                problem(f"the file is not valid UTF-8 ({exc.reason})", line, 1, Kind.SYNTAX)
            ]
    else:
        text = source
        # surrogatepass: a lone surrogate is then refused by the YAML reader, with a message.
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_BYTES:
            return [], [_too_large(filename, size)]

    end = _END_OF_STREAM.search(text)
    if end is not None:
        text = text[: end.start()]

    if _fast_path_allowed(text):
        # Any problem, or any surprise, on the C path sends the file through the pure-Python
        # path: that one is the reference, and its diagnostic (message, position, kind) is the
        # one users have always seen, where libyaml words errors differently and stops deep
        # nesting at its own limit (1000) with a syntax error, before ours (64) is reached.
        with contextlib.suppress(Exception):
            documents, problems = _load(text, filename, fast=True)
            if not problems:
                return documents, []
    return _load(text, filename, fast=False)


def _fast_path_allowed(text: str) -> bool:
    """Whether libyaml may load ``text``: it is there, not disabled, and reads it like PyYAML.

    ``BASTION_YAML_PURE=1`` forces the pure-Python path (tests run both). Some text is left to
    PyYAML because libyaml accepts it where PyYAML reports an error, so the two would not agree
    on what is valid: tab characters, byte order marks inside the text (libyaml skips them),
    and a comment right after a block scalar's header (``run: |#``).
    """
    if not _WITH_LIBYAML or os.environ.get("BASTION_YAML_PURE", "") not in ("", "0"):
        return False
    return "\t" not in text and "\ufeff" not in text and _HEADER_COMMENT.search(text) is None


class _LibyamlDiffersError(Exception):
    """The C path met a construct on which libyaml and PyYAML are known to differ."""


def _load(text: str, filename: str, *, fast: bool) -> tuple[list[LoadedDocument], list[Diagnostic]]:
    """Scan, compose and convert ``text`` (with libyaml if ``fast``), checking every limit.

    The pure-Python path checks the depth on the token stream before composing, since
    PyYAML's composer recurses. libyaml composes first (it stops at 1000 levels by itself):
    a document whose node graph is less than ``MAX_DEPTH`` levels high cannot hold more than
    ``MAX_DEPTH`` nested tokens (every ``[``, ``{`` and block collection token opens a node),
    so the token scan, a third of libyaml's time, runs only for a higher document or when
    the text has a ``!`` or a ``?``, the characters of the constructs that
    ``_refuse_known_differences`` looks for on the tokens.
    On the fast path, those constructs raise ``_LibyamlDiffersError``, and so does an empty
    document when the text does not end with a line break: libyaml places it on the line
    after the end, PyYAML where the text ends.
    """
    loader = yaml.CSafeLoader if fast else yaml.SafeLoader

    def problem(
        message: str, line: int = 1, column: int = 1, kind: Kind = Kind.LIMIT
    ) -> Diagnostic:
        return Diagnostic(message, file=filename, line=line, column=column, kind=kind)

    scanned = not fast or "!" in text or "?" in text
    try:
        if scanned:
            too_deep = _scan(text, filename, fast=fast)
            if too_deep is not None:
                return [], [too_deep]
        nodes = list(yaml.compose_all(text, Loader=loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        ctx = exc.context_mark
        if ctx is not None and (mark is None or ctx.line != mark.line):
            # An unclosed bracket or quote is found at the end of the file; say where it began.
            what += f" (the construct began at line {ctx.line + 1}, column {ctx.column + 1})"
        return [], [problem(f"invalid YAML: {what}", line, column, Kind.SYNTAX)]
    except yaml.YAMLError as exc:
        return [], [problem(f"invalid YAML: {exc}", kind=Kind.SYNTAX)]
    except RecursionError:
        return [], [problem(f"the YAML is nested deeper than {MAX_DEPTH} levels")]

    nodes = [n for n in nodes if n is not None]
    if fast and not text.endswith(("\n", "\r")) and any(_empty(n) for n in nodes):
        raise _LibyamlDiffersError("empty document at the end of a text without a line break")
    if len(nodes) > MAX_DOCUMENTS:
        start = _position(nodes[MAX_DOCUMENTS])
        return [], [
            problem(
                f"the file has {len(nodes)} YAML documents; at most {MAX_DOCUMENTS} are allowed",
                start.line,
                start.column,
            )
        ]

    documents: list[LoadedDocument] = []
    for index, node in enumerate(nodes):
        converter = _Converter()
        try:
            height = converter.measure(node)
            if not scanned and height >= MAX_DEPTH:
                # Nodes this deep may or may not come from as many nested tokens: count them.
                scanned = True
                too_deep = _scan(text, filename, fast=fast)
                if too_deep is not None:
                    return [], [too_deep]
            value = converter.convert(node, ())
        except _LoadError as err:
            pos = _position(err.node) if err.node is not None else _position(node)
            return [], [
                Diagnostic(
                    err.message,
                    file=filename,
                    line=pos.line,
                    column=pos.column,
                    path=format_path(err.path),
                    document=index,
                    kind=err.kind,
                )
            ]
        documents.append(LoadedDocument(index, value, _position(node), converter.positions))
    return documents, []


def _scan(text: str, filename: str, *, fast: bool) -> Diagnostic | None:
    """The depth limit on the token stream; on the fast path, the known differences too."""
    depth = flow = 0
    for token in yaml.scan(text, Loader=yaml.CSafeLoader if fast else yaml.SafeLoader):
        if isinstance(token, _OPENERS):
            depth += 1
            flow += isinstance(token, _FLOW_OPENERS)
            if depth > MAX_DEPTH:
                mark = token.start_mark
                return Diagnostic(
                    f"the YAML is nested deeper than {MAX_DEPTH} levels; a pipeline "
                    "never needs that much - flatten the structure",
                    file=filename,
                    line=mark.line + 1,
                    column=mark.column + 1,
                    kind=Kind.LIMIT,
                )
        elif isinstance(token, _CLOSERS):
            depth -= 1
            flow -= isinstance(token, _FLOW_CLOSERS)
        elif fast and isinstance(token, _SUSPECTS if flow else yaml.TagToken):
            _refuse_known_differences(token, flow > 0)
    return None


def _empty(node: Node) -> bool:
    return isinstance(node, ScalarNode) and not node.value and not node.style


def _refuse_known_differences(token: yaml.Token, in_flow: bool) -> None:
    """Raise ``_LibyamlDiffersError`` for a token libyaml and PyYAML read differently.

    - A tag other than ``!!...``: PyYAML resolves a bare ``!`` as if untagged (``a: !`` is
      null), libyaml makes it a string.
    - A plain scalar with a ``?`` inside ``[...]`` or ``{...}``: PyYAML ends the scalar there
      (``{a? : b}`` is an error), libyaml keeps it in the scalar.
    """
    if isinstance(token, yaml.TagToken):
        if token.value[0] != "!!":
            raise _LibyamlDiffersError(token)
    elif in_flow and isinstance(token, yaml.ScalarToken) and token.plain and "?" in token.value:
        raise _LibyamlDiffersError(token)


def _too_large(filename: str, size: int) -> Diagnostic:
    return Diagnostic(
        f"the file is {size} bytes; the limit is {MAX_BYTES} bytes - split it or remove "
        "generated content",
        file=filename,
        kind=Kind.LIMIT,
    )


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, SequenceNode):
        yield from node.value
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            yield key
            yield value


class _Converter:
    """Turns one composed document into plain values, recording positions by path."""

    def __init__(self) -> None:
        self.positions: dict[YamlPath, Position] = {}
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (size, height)
        self._constructor = SafeConstructor()

    def measure(self, root: Node) -> int:
        """Refuse alias bombs, recursive aliases and deep nesting before expanding anything.

        Returns the height of ``root``: the most levels of nodes below it, aliases expanded.

        A node reached through several aliases is measured once (memoised), with its size
        and its height (how deep its content goes): the height is what keeps a chain of
        aliases, each adding a few levels, from nesting the expanded value deeper than the
        limit (and the conversion, which recurses, from running out of stack).
        """
        in_progress: set[int] = set()

        def too_deep(node: Node) -> _LoadError:
            return _LoadError(
                f"aliases nest the YAML deeper than {MAX_DEPTH} levels", node, Kind.LIMIT
            )

        def size(node: Node, depth: int) -> tuple[int, int]:
            if isinstance(node, ScalarNode):  # most nodes: a leaf of size 1 and height 0
                if depth > MAX_DEPTH:
                    raise too_deep(node)
                return _LEAF
            key = id(node)
            known = self._sizes.get(key)
            if known is not None:
                if depth + known[1] > MAX_DEPTH:
                    raise too_deep(node)
                return known
            if depth > MAX_DEPTH:
                raise too_deep(node)
            if key in in_progress:
                raise _LoadError("an alias refers to itself (recursive anchor)", node, Kind.LIMIT)
            in_progress.add(key)
            total, height = 1, 0
            for child in _children(node):
                child_size, child_height = size(child, depth + 1)
                total += child_size
                if child_height >= height:
                    height = child_height + 1
            in_progress.discard(key)
            if total > MAX_NODES:
                raise _LoadError(
                    f"expanding the aliases of this document would create more than {MAX_NODES}"
                    " values (an alias bomb?); use fewer nested aliases",
                    node,
                    Kind.LIMIT,
                )
            self._sizes[key] = (total, height)
            return total, height

        return size(root, 0)[1]

    def convert(self, node: Node, path: YamlPath) -> Any:
        if path not in self.positions:  # a mapping's values have their key's position
            self.positions[path] = _position(node)
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        if isinstance(node, SequenceNode):
            return [self.convert(child, (*path, i)) for i, child in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        raise _LoadError("unsupported YAML node", node, Kind.SYNTAX, path)  # pragma: no cover

    def _scalar(self, node: ScalarNode) -> Any:
        if node.tag == _STR_TAG:  # most scalars: what SafeConstructor returns for them
            return node.value
        if node.tag.endswith((":timestamp", ":binary")):
            return node.value
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise _LoadError(f"invalid value: {exc.problem}", node, Kind.SYNTAX) from exc

    def _key(self, node: Node, path: YamlPath) -> str:
        if not isinstance(node, ScalarNode):
            raise _LoadError("a mapping key must be a plain string", node, Kind.SCHEMA, path)
        value = self._scalar(node)
        if value is None:
            return "null" if node.value else ""
        if isinstance(value, bool):
            # `on:` / `yes:` keys are read as booleans by YAML 1.1; use them as written.
            return str(node.value)
        return str(value)

    def _merge_sources(self, node: Node, path: YamlPath) -> list[MappingNode]:
        if isinstance(node, MappingNode):
            return [node]
        if isinstance(node, SequenceNode) and all(isinstance(n, MappingNode) for n in node.value):
            return list(node.value)
        raise _LoadError(
            "a merge key (<<) must refer to a mapping or a list of mappings",
            node,
            Kind.SCHEMA,
            path,
        )

    def _mapping(self, node: MappingNode, path: YamlPath) -> dict[str, Any]:
        explicit: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or (
                isinstance(key_node, ScalarNode)
                and key_node.value == "<<"
                and not key_node.style  # plain: None from PyYAML, "" from libyaml
            ):
                sources = self._merge_sources(value_node, path)
                # With a list of mappings, earlier ones win (YAML merge key spec).
                for source in reversed(sources):
                    merged.update(self._mapping(source, path))
                continue
            key = self._key(key_node, path)
            child = (*path, key)
            if key in explicit:
                raise _LoadError(
                    f"duplicate key {key!r}: YAML parsers disagree on which value wins - keep one",
                    key_node,
                    Kind.SCHEMA,
                    child,
                )
            self.positions[child] = _position(key_node)
            explicit[key] = self.convert(value_node, child)
        return {**merged, **explicit}
