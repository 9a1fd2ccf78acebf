"""Multi-document YAML into numbered documents, with syntax errors as `Problem`s (line, column).

PyYAML is imported on first use: it costs 11-15 ms. The C loader is used when libyaml is there.

Before anything is built, one pass over the parser's events (flat: no recursion, no objects)
bounds what the text may ask of the machine: nesting deeper than MAX_DEPTH (PyYAML's C composer
recurses, and 25,000 levels overflowed its stack: SIGSEGV), and aliases that expand a document
far beyond what is written (a 724-byte "billion laughs" file took 58 s and 940 MB once its
template was hashed). The pass costs about half of the parse it guards.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from podnet.errors import Problem

if TYPE_CHECKING:
    from yaml.nodes import Node

__all__ = ["ALIAS_ALLOWANCE", "MAX_DEPTH", "Document", "parse_documents"]

MAX_DEPTH = 64  # collections inside collections; a Deployment's env values are 9 deep
# Nodes that aliases may add to a document beyond those written (or as many as are written,
# if more): anchors save typing, they do not multiply a file.
ALIAS_ALLOWANCE = 100_000

@dataclass
class Document:
    number: int
    data: object
    duplicates: list[tuple[str, int, int]]  # (key, first line, repeated line)


class _Parser(Protocol):
    duplicates: list[tuple[str, int, int]]

    def check_node(self) -> bool: ...
    def get_node(self) -> Node | None: ...
    def construct_document(self, node: Node) -> Any: ...
    def dispose(self) -> None: ...


@functools.cache
def _parser_class() -> Callable[[str], _Parser]:
    """PyYAML's safe loader (libyaml's C parser when built with it) that also notes keys
    written twice in one mapping, which YAML would silently collapse to the last."""
    import yaml  # 11-15 ms: paid by callers that load a topology, only

    class NoDuplicateKeys(yaml.constructor.SafeConstructor):
        duplicates: list[tuple[str, int, int]]

        def construct_mapping(
            self, node: yaml.MappingNode, deep: bool = False
        ) -> dict[Hashable, Any]:
            seen: dict[tuple[str, str], int] = {}
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if (key.tag, key.value) in seen:
                        self.duplicates.append((key.value, seen[key.tag, key.value], line))
                    else:
                        seen[key.tag, key.value] = line
            return super().construct_mapping(node, deep)

    if getattr(yaml, "__with_libyaml__", False):

        class Fast(NoDuplicateKeys, yaml.CSafeLoader):
            pass

        return Fast

    class Plain(NoDuplicateKeys, yaml.SafeLoader):
        pass

    return Plain


def _within_bounds(text: str, problems: list[Problem]) -> bool:
    """False (with the problem added) when `text` nests too deep or its aliases expand too
    far; a syntax error is left for the real parse to report."""
    import yaml

    base = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader
    number = 0
    try:
        for event in yaml.parse(text, Loader=base):
            if isinstance(event, yaml.DocumentStartEvent):
                number += 1
                bounds = _Bounds()
            elif isinstance(event, yaml.NodeEvent | yaml.CollectionEndEvent):
                why = bounds.add(event)
                if why:
                    mark = event.start_mark
                    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
                    problems.append(Problem(f"document {number}", where, *why))
                    return False
    except yaml.YAMLError:
        return True
    return True


class _Bounds:
    """Depth and alias-expanded size of one document, event by event."""

    def __init__(self) -> None:
        self.open: list[tuple[int, str | None]] = []  # (expanded size at start, anchor)
        self.anchors: dict[str, int] = {}  # expanded size of each anchored node
        self.written = 0
        self.expanded = 0

    def add(self, event: Any) -> tuple[str, str] | None:
        """Count one event; (message, hint) when the document goes out of bounds."""
        import yaml

        if isinstance(event, yaml.CollectionEndEvent):
            start, anchor = self.open.pop()
            if anchor:
                self.anchors[anchor] = self.expanded - start
            return None
        self.written += 1
        if isinstance(event, yaml.AliasEvent):
            self.expanded += self.anchors.get(event.anchor or "", 1)
            if self.expanded > self.written + max(ALIAS_ALLOWANCE, self.written):
                return (f"its aliases expand it to more than {self.expanded:,} nodes, "
                        f"from {self.written:,} written",
                        "each *alias repeats its &anchor's content: write the content out, "
                        "or use fewer aliases of aliases")
            return None
        self.expanded += 1
        if isinstance(event, yaml.CollectionStartEvent):
            if len(self.open) >= MAX_DEPTH:
                return (f"nests deeper than {MAX_DEPTH} levels",
                        "a topology is a few levels deep: this looks generated or damaged")
            self.open.append((self.expanded - 1, event.anchor))
        elif event.anchor:  # a scalar
            self.anchors[event.anchor] = 1
        return None


def parse_documents(text: str, problems: list[Problem]) -> list[Document]:
    import yaml  # see _parser_class

    if not _within_bounds(text, problems):
        return []
    parser = _parser_class()(text)
    parser.duplicates = []
    documents: list[Document] = []
    try:
        while parser.check_node():
            node = parser.get_node()
            if node is None:
                break
            data = parser.construct_document(node)
            documents.append(Document(len(documents) + 1, data, parser.duplicates))
            parser.duplicates = []
    except yaml.MarkedYAMLError as exc:
        problems.append(_syntax_problem(text, len(documents) + 1, exc))
    except yaml.YAMLError as exc:  # ReaderError: a character YAML does not allow
        position = int(getattr(exc, "position", 0))
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        problems.append(
            Problem(
                f"document {len(documents) + 1}",
                f"line {line}, column {column}",
                f"character {text[position : position + 1]!r} is not allowed in YAML",
                "remove it, or write it as an escape inside double quotes",
            )
        )
    finally:
        parser.dispose()
    return documents


def _syntax_problem(text: str, number: int, exc: Any) -> Problem:
    mark, context, context_mark = exc.problem_mark, exc.context, exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    message = str(exc.problem or "not valid YAML")
    # "while parsing a flow sequence" says where the unfinished thing began; "while scanning
    # for the next token" says nothing.
    what = str(context or "").removeprefix("while ").partition(" ")[2]
    if what.startswith(("a ", "an ")) and context_mark is not None:
        message += f" (in {what} that starts on line {context_mark.line + 1})"
    lines = text.splitlines()
    here = lines[line - 1] if 0 < line <= len(lines) else ""
    if "\t" in here[: max(column, 1)]:
        hint = "YAML indents with spaces only: replace the tab"
    elif "mapping values are not allowed" in message:
        hint = "a value that contains ': ' needs quotes, or the indentation is off"
    elif "flow" in message and context_mark is not None:
        hint = f"close the bracket opened on line {context_mark.line + 1}; separate items with ','"
    elif "undefined alias" in message:
        hint = "define the &anchor before its *alias, in the same document"
    elif "constructor for the tag" in message:
        hint = "remove the '!' tag: podnet reads plain YAML"
    else:
        hint = "check the indentation (spaces only) and the quotes on or just before this line"
    return Problem(f"document {number}", f"line {line}, column {column}", message, hint)


