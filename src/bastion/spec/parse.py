"""``.drone.yml`` text → a validated ``Manifest`` plus every problem found, with positions.

The front end is load (``bastion.spec.loader``: safe YAML with positions) → validate (the
pydantic models of ``bastion.spec.model``) → check (names, graphs, references). Every stage
collects diagnostics instead of stopping at the first, and each diagnostic points at the file,
line, column and YAML path it is about, with a message that says how to fix it.

Nothing here substitutes variables into the YAML text: Drone does that before parsing, which
lets a commit message or branch name rewrite the pipeline. Bastion substitutes only into
parsed string values, later, in the compiler.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from bastion.spec import dag
from bastion.spec.diagnostics import Diagnostic, Kind, Severity, format_path, has_errors
from bastion.spec.loader import LoadedDocument, YamlPath, load_documents
from bastion.spec.model import (
    PIPELINE_TYPES,
    Pipeline,
    SecretDoc,
    SignatureDoc,
    SpecModel,
    Step,
)

_MODELS: dict[str, type[SpecModel]] = {
    "pipeline": Pipeline,
    "secret": SecretDoc,
    "signature": SignatureDoc,
}


@dataclass(frozen=True)
class Manifest:
    """The resources of one file, with the documents they came from for error positions."""

    filename: str
    pipelines: tuple[Pipeline, ...] = ()
    secrets: tuple[SecretDoc, ...] = ()
    signatures: tuple[SignatureDoc, ...] = ()
    pipeline_documents: tuple[LoadedDocument, ...] = field(default=(), repr=False)

    def pipeline(self, name: str) -> Pipeline | None:
        return next((p for p in self.pipelines if p.name == name), None)

    def diagnostic(
        self,
        pipeline_index: int,
        path: YamlPath,
        message: str,
        *,
        kind: Kind,
        severity: Severity = Severity.ERROR,
    ) -> Diagnostic:
        """A diagnostic about ``path`` inside the ``pipeline_index``-th pipeline."""
        doc = self.pipeline_documents[pipeline_index]
        pos = doc.locate(path)
        return Diagnostic(
            message,
            file=self.filename,
            line=pos.line,
            column=pos.column,
            path=format_path(path),
            document=doc.index,
            severity=severity,
            kind=kind,
        )


@dataclass(frozen=True)
class ParseResult:
    manifest: Manifest
    diagnostics: list[Diagnostic]

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)


def parse(source: str | bytes, filename: str = ".drone.yml") -> ParseResult:
    documents, diagnostics = load_documents(source, filename)
    if diagnostics:
        return ParseResult(Manifest(filename), diagnostics)
    if not documents:
        return ParseResult(
            Manifest(filename),
            [Diagnostic("the file holds no YAML document: add a kind: pipeline", file=filename)],
        )

    pipelines: list[Pipeline] = []
    pipeline_docs: list[LoadedDocument] = []
    secrets: list[SecretDoc] = []
    signatures: list[SignatureDoc] = []
    for doc in documents:
        checker = _DocumentChecker(filename, doc)
        resource = checker.validate()
        diagnostics.extend(checker.diagnostics)
        if isinstance(resource, Pipeline):
            pipelines.append(resource)
            pipeline_docs.append(doc)
        elif isinstance(resource, SecretDoc):
            secrets.append(resource)
        elif isinstance(resource, SignatureDoc):
            signatures.append(resource)

    manifest = Manifest(
        filename, tuple(pipelines), tuple(secrets), tuple(signatures), tuple(pipeline_docs)
    )
    diagnostics.extend(_check_pipeline_graph(manifest))
    diagnostics.extend(_check_secret_names(filename, secrets))
    if not pipelines and not has_errors(diagnostics):
        diagnostics.append(
            Diagnostic("the file defines no pipeline: add a document with kind: pipeline", filename)
        )
    diagnostics.sort(key=lambda d: (d.line, d.column, d.severity != Severity.ERROR))
    return ParseResult(manifest, diagnostics)


# -- one document ------------------------------------------------------------------------------


_TYPE_NAMES = {
    "dict": "a mapping",
    "list": "a list",
    "str": "a string",
    "int": "a number",
    "float": "a number",
    "bool": "true/false",
    "NoneType": "nothing (null)",
}

_FIELD_HINTS = {
    "image": "e.g. image: bastion/python:3.11",
    "name": "every step, service and volume needs a unique name",
    "steps": "a pipeline needs at least one step: "
    "steps: [{name: build, image: ..., commands: [...]}]",
}


class _DocumentChecker:
    def __init__(self, filename: str, doc: LoadedDocument) -> None:
        self.filename = filename
        self.doc = doc
        self.diagnostics: list[Diagnostic] = []

    def report(
        self,
        path: YamlPath,
        message: str,
        kind: Kind = Kind.SCHEMA,
        severity: Severity = Severity.ERROR,
    ) -> None:
        pos = self.doc.locate(path)
        self.diagnostics.append(
            Diagnostic(
                message,
                file=self.filename,
                line=pos.line,
                column=pos.column,
                path=format_path(path),
                document=self.doc.index,
                severity=severity,
                kind=kind,
            )
        )

    def validate(self) -> SpecModel | None:
        value = self.doc.value
        if not isinstance(value, dict):
            found = _TYPE_NAMES.get(type(value).__name__, type(value).__name__)
            self.report((), f"a document must be a mapping with a kind, found {found}")
            return None
        kind = value.get("kind")
        if kind is None:
            hint = (
                " (this looks like the Drone 0.8 format, which Bastion does not read; "
                "convert it to the 1.x format)"
                if "pipeline" in value
                else ""
            )
            self.report((), "the document has no kind: add kind: pipeline" + hint)
            return None
        model = _MODELS.get(str(kind))
        if model is None:
            self.report(
                ("kind",),
                f"unknown kind {kind!r}: Bastion reads kind: pipeline, secret and signature",
            )
            return None
        try:
            resource = model.model_validate(value)
        except ValidationError as exc:
            errors = exc.errors()
            for error in errors:
                loc = error["loc"]
                if error["type"] == "too_short" and any(
                    e is not error and e["loc"][: len(loc)] == loc for e in errors
                ):
                    continue  # the items' own errors explain it; pydantic adds a length error
                path = self._clean_path(loc)
                self.report(path, _message(error, path))
            return None
        self._unknown_fields(resource, ())
        if isinstance(resource, Pipeline):
            self._check_pipeline(resource)
        elif isinstance(resource, SecretDoc) and resource.data is not None:
            self.report(
                ("data",),
                "encrypted secrets (data:) are not supported: store the value with the secret "
                "store and reference it with from_secret",
                severity=Severity.WARNING,
                kind=Kind.RUNTIME,
            )
        return resource

    def _clean_path(self, loc: tuple[int | str, ...]) -> YamlPath:
        """Pydantic's error location, minus its internal parts (union branches, validators)."""
        path: list[str | int] = []
        current: Any = self.doc.value
        for part in loc:
            # Two branches, not one `or`: mypy narrows `part` to int only in the second.
            if isinstance(current, dict) and part in current:  # noqa: SIM114
                path.append(part)
                current = current[part]
            elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
                path.append(part)
                current = current[part]
            elif isinstance(current, dict) and isinstance(part, str) and not _internal(part):
                path.append(part)  # a missing field: point at its parent, name it
                current = None
        return tuple(path)

    def _unknown_fields(self, model: BaseModel, path: YamlPath) -> None:
        for key in model.model_extra or {}:
            if key == "kind":
                continue
            known = ", ".join(sorted(type(model).model_fields))
            self.report(
                (*path, key),
                f"unknown field {key!r} is ignored (known fields: {known})",
                kind=Kind.UNKNOWN,
                severity=Severity.WARNING,
            )
        for name in type(model).model_fields:
            if name == "settings":
                continue  # plugin settings are free-form by design
            value = getattr(model, name)
            for sub_path, sub in _models_in(value, (*path, name)):
                self._unknown_fields(sub, sub_path)

    def _check_pipeline(self, pipeline: Pipeline) -> None:
        if pipeline.type not in PIPELINE_TYPES:
            known = ", ".join(PIPELINE_TYPES)
            self.report(("type",), f"unknown pipeline type {pipeline.type!r}; known types: {known}")
            return
        needs_image = pipeline.type in {"docker", "kubernetes"}
        volume_names = {v.name for v in pipeline.volumes}
        for dup in dag.duplicates([v.name for v in pipeline.volumes]):
            index = [v.name for v in pipeline.volumes].index(dup)
            self.report(("volumes", index, "name"), f"two volumes are named {dup!r}", Kind.GRAPH)

        containers: list[tuple[str, int, Step]] = [
            ("services", i, s) for i, s in enumerate(pipeline.services)
        ] + [("steps", i, s) for i, s in enumerate(pipeline.steps)]
        seen: dict[str, YamlPath] = {}
        for section, index, step in containers:
            where: YamlPath = (section, index)
            if step.name in seen:
                self.report(
                    (*where, "name"),
                    f"the name {step.name!r} is used twice (also at "
                    f"{format_path(seen[step.name])}); step and service names must be unique",
                    Kind.GRAPH,
                )
            seen.setdefault(step.name, where)
            if needs_image and not step.image:
                self.report(where, f"{step.name!r} has no image: " + _FIELD_HINTS["image"])
            for m, mount in enumerate(step.volumes):
                if mount.name not in volume_names:
                    self.report(
                        (*where, "volumes", m, "name"),
                        f"volume {mount.name!r} is not declared; add it under the pipeline's "
                        f"volumes: [{{name: {mount.name}, temp: {{}}}}]",
                        Kind.GRAPH,
                    )
            if step.commands and step.entrypoint:
                self.report(
                    (*where, "entrypoint"),
                    "entrypoint is ignored when commands are set (commands run in the "
                    "image's shell)",
                    severity=Severity.WARNING,
                )
            if section == "services" and (step.depends_on or step.detach):
                self.report(
                    where,
                    "services always start first and run detached; depends_on and detach "
                    "are ignored here",
                    severity=Severity.WARNING,
                )

        names = [s.name for s in pipeline.steps]
        depends: dict[str, tuple[str, ...]] = {}
        for s in pipeline.steps:
            depends.setdefault(s.name, s.depends_on)  # a duplicate name is reported above
        service_names = {s.name for s in pipeline.services}
        for node, missing in dag.find_unknown(depends):
            if missing in service_names:
                continue  # services start before every step; depending on one is harmless
            index = names.index(node)
            self.report(
                ("steps", index, "depends_on"),
                f"step {node!r} depends on {missing!r}, which is not a step of this pipeline "
                f"(steps: {', '.join(names)})",
                Kind.GRAPH,
            )
        graph = {n: tuple(d for d in deps if d in depends) for n, deps in depends.items()}
        cycle = dag.find_cycle(graph)
        if cycle:
            index = names.index(cycle[0])
            self.report(
                ("steps", index, "depends_on"),
                "steps depend on each other in a cycle: " + " -> ".join(cycle),
                Kind.GRAPH,
            )


def _internal(part: str) -> bool:
    return "[" in part or part in {"str", "SecretRef", "int", "float", "bool"}


def _models_in(value: Any, path: YamlPath) -> Iterator[tuple[YamlPath, BaseModel]]:
    if isinstance(value, BaseModel):
        yield path, value
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            yield from _models_in(item, (*path, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, BaseModel):
                yield (*path, key), item


def _message(error: Any, path: YamlPath) -> str:
    kind = error["type"]
    given = error.get("input")
    found = _TYPE_NAMES.get(type(given).__name__, type(given).__name__)
    field_name = next((p for p in reversed(path) if isinstance(p, str)), "")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        hint = _FIELD_HINTS.get(field_name, "")
        return f"required field {field_name!r} is missing" + (f": {hint}" if hint else "")
    if kind in {"string_type", "string_sub_type"}:
        return f"expected a string, found {found}"
    if kind in {"bool_type", "bool_parsing"}:
        return f"expected true or false, found {given!r}"
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return f"expected a whole number, found {given!r}"
    if kind in {"float_type", "float_parsing"}:
        return f"expected a number, found {given!r}"
    if kind in {"dict_type", "model_type", "model_attributes_type"}:
        return f"expected a mapping (key: value), found {found}"
    if kind in {"tuple_type", "list_type"}:
        return f"expected a list, found {found}"
    if kind == "literal_error":
        return f"{given!r} is not allowed here; use one of {ctx.get('expected', '')}"
    if kind == "too_short":
        if field_name == "steps":
            return _FIELD_HINTS["steps"]
        return f"{field_name or 'this value'} must not be empty"
    if kind == "extra_forbidden":
        return f"unknown key {field_name!r} here"
    if kind in {"greater_than_equal", "greater_than"}:
        return f"must be at least {ctx.get('ge', ctx.get('gt'))}, found {given!r}"
    if kind in {"value_error", "assertion_error"}:
        message = str(ctx.get("error", error.get("msg", "")))
        return message.removeprefix("Value error, ")
    return str(error.get("msg", "invalid value"))


# -- across documents --------------------------------------------------------------------------


def _check_pipeline_graph(manifest: Manifest) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    names = [p.name for p in manifest.pipelines]
    for dup in dag.duplicates(names):
        index = len(names) - 1 - names[::-1].index(dup)
        out.append(
            manifest.diagnostic(
                index,
                ("name",),
                f"two pipelines are named {dup!r}; pipeline names must be unique "
                "(the default name is 'default')",
                kind=Kind.GRAPH,
            )
        )
    depends = {p.name: p.depends_on for p in manifest.pipelines}
    for node, missing in dag.find_unknown(depends):
        out.append(
            manifest.diagnostic(
                names.index(node),
                ("depends_on",),
                f"pipeline {node!r} depends on {missing!r}, which is not a pipeline in this file",
                kind=Kind.GRAPH,
            )
        )
    graph = {n: tuple(d for d in deps if d in depends) for n, deps in depends.items()}
    cycle = dag.find_cycle(graph)
    if cycle:
        out.append(
            manifest.diagnostic(
                names.index(cycle[0]),
                ("depends_on",),
                "pipelines depend on each other in a cycle: " + " -> ".join(cycle),
                kind=Kind.GRAPH,
            )
        )
    return out


def _check_secret_names(filename: str, secrets: list[SecretDoc]) -> list[Diagnostic]:
    return [
        Diagnostic(f"two kind: secret documents are named {dup!r}", filename, kind=Kind.GRAPH)
        for dup in dag.duplicates([s.name for s in secrets])
    ]
