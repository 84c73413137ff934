"""Reading a YAML file within bounds: what a file can cost is capped before it is built.

PyYAML builds an alias (``*name``) as a second reference to its anchor's object, so a few
hundred bytes of nested aliases (the "billion laughs") stand for billions of nodes as soon as
anything walks the result (validation, ``json.dumps``). The file is therefore composed into
YAML's node graph first, that graph is measured without expanding it (each anchored subtree's
expanded size is computed once), and only then are Python objects built. The limits, each
answered with ``YAMLFileError``, one line naming the file (and ``line:column`` where there is
one):

- ``MAX_BYTES`` (32 MiB) of regular file, read no further; a 10 MB file of 80,000 targets takes
  about half a gigabyte to load;
- UTF-8 text;
- ``MAX_DEPTH`` (100) levels of nested mappings and sequences, aliases expanded: nothing later
  recurses deeper than that;
- ``MAX_ALIAS_NODES`` (10,000) nodes reached through aliases (an alias of a scalar is one),
  ``MAX_ALIAS_CHARS`` (8,000,000) characters of scalars reached through them, and no alias
  inside its own anchor. Characters count because one alias of a 100 KB string is one node,
  which anything writing the document out (the gateway's ``json.dumps`` of
  ``litellm_params``) copies in full. A merge key (``<<: *defaults``) costs its anchor's size,
  so hundreds of merges of a few keys fit, and so does a long prompt anchored once and reused
  a few dozen times.

libyaml's parser (``yaml.CSafeLoader``) is used when PyYAML has it, PyYAML's own otherwise, with
the same limits. The cyclic garbage collector is paused while loading: a large file is a
million objects without a cycle, and the collector would rescan them over and over (it was
most of the time of a 10 MB load).
"""

from __future__ import annotations

import contextlib
import gc
import os
import stat
from collections.abc import Container, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

MAX_BYTES = 32 * 1024 * 1024
MAX_DEPTH = 100
MAX_ALIAS_NODES = 10_000
MAX_ALIAS_CHARS = 8_000_000


class YAMLFileError(ValueError):
    """A file that cannot be read as YAML within the limits; the message is one line."""


def read_yaml(path: str | Path, loader: type[Any] | None = None) -> Any:
    """The document in the file at ``path``, within the limits above.

    ``loader`` is ``FAST_LOADER`` when libyaml is present, else ``PURE_LOADER``.
    """
    text = _read_text(Path(path))
    loader_class = loader or FAST_LOADER or PURE_LOADER
    with gc_paused():
        try:
            return _load(loader_class(text))
        except _LimitError as exc:
            raise YAMLFileError(f"{_position(path, exc.mark)}: {exc.message}") from None
        except yaml.MarkedYAMLError as exc:
            raise YAMLFileError(_marked_error(path, exc)) from None
        except yaml.reader.ReaderError as exc:
            # libyaml counts bytes of the UTF-8 it was handed, PyYAML characters.
            offset = exc.position
            if loader_class is not PURE_LOADER:
                offset = len(text.encode()[:offset].decode(errors="ignore"))
            reason = _one_line(exc.reason)
            message = f"invalid YAML: unacceptable character #x{exc.character:04x}: {reason}"
            raise YAMLFileError(f"{_text_position(path, text, offset)}: {message}") from None


def _load(parser: Any) -> Any:
    try:
        node = parser.get_single_node()
        if node is None:  # an empty file
            return None
        _measure(node)
        return parser.construct_document(node)
    finally:
        parser.dispose()


def _read_text(path: Path) -> str:
    too_large = YAMLFileError(f"{path}: larger than {MAX_BYTES // 2**20} MiB, the limit of a file")
    chunks: list[bytes] = []
    size = 0
    try:
        status = os.stat(path)
        # A FIFO or a device could block or never end: only regular files are read.
        if not stat.S_ISREG(status.st_mode):
            raise YAMLFileError(f"{path}: not a regular file")
        if status.st_size > MAX_BYTES:
            raise too_large
        with path.open("rb") as file:
            # In chunks, not read(MAX_BYTES): that would allocate the whole limit every time.
            while chunk := file.read(1 << 20):
                size += len(chunk)
                if size > MAX_BYTES:  # it grew since
                    raise too_large
                chunks.append(chunk)
    except OSError as exc:
        raise YAMLFileError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    data = b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[line_start : exc.start].decode(errors="replace")) + 1
        raise YAMLFileError(
            f"{path}:{line}:{column}: not UTF-8 text "
            f"(byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


class _LimitError(Exception):
    def __init__(self, message: str, mark: yaml.Mark | None) -> None:
        super().__init__(message)
        self.message, self.mark = message, mark


_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep"
_TOO_MANY = (
    f"YAML aliases expand to more than {MAX_ALIAS_NODES:,} nodes, the limit "
    "(the last one expanded refers to the anchor here)"
)
_TOO_LONG = (
    f"YAML aliases expand to more than {MAX_ALIAS_CHARS:,} characters, the limit "
    "(the last one expanded refers to the anchor here)"
)
_RECURSIVE = "a YAML alias refers to the anchor that contains it"


def _measure(root: yaml.Node) -> None:
    """Walk the node graph once, without recursion, checking depth and alias expansion.

    An alias is a node met again, scalar or collection. What it expands to is measured the
    first time it is met again and remembered (``_Expansion``), so a bomb is refused after a
    few steps instead of being expanded; a file without aliases pays only for noticing that no
    node comes twice.
    """
    if isinstance(root, yaml.ScalarNode):
        return
    met = {root}  # every node met so far
    on_path = {root}  # collections being walked
    expansion = _Expansion()
    # Frames: [collection, its children that are collections, which of those are aliases,
    # the next one's index].
    stack: list[list[Any]] = [[root, *_collections(root, met, expansion), 0]]
    while stack:
        frame = stack[-1]
        children, i = frame[1], frame[3]
        if i == len(children):
            on_path.discard(frame[0])
            stack.pop()
            continue
        child = children[i]
        frame[3] = i + 1
        if i in frame[2]:
            if child in on_path:
                raise _LimitError(_RECURSIVE, child.start_mark)
            if len(stack) + expansion.add(child) > MAX_DEPTH:
                raise _LimitError(_TOO_DEEP, child.start_mark)
            continue
        if len(stack) >= MAX_DEPTH:
            raise _LimitError(_TOO_DEEP, child.start_mark)
        on_path.add(child)
        stack.append([child, *_collections(child, met, expansion), 0])


_NONE: frozenset[int] = frozenset()


def _collections(
    node: yaml.Node, met: set[yaml.Node], expansion: _Expansion
) -> tuple[list[yaml.Node], Container[int]]:
    """The collections among the children of ``node`` and the indices of those that are
    aliases; its children that are aliases of scalars are counted here."""
    children = _children(node)
    # Whole lists at a time: most collections hold no node met before, and a large file is
    # mostly scalars, which this spares a step of Python each.
    if met.isdisjoint(children):
        before = len(met)
        met.update(children)
        if len(met) - before == len(children):
            return [child for child in children if child.__class__ is not yaml.ScalarNode], _NONE
        met.difference_update(children)  # one of them twice ([&a x, *a]): each in turn
    collections: list[yaml.Node] = []
    aliases: set[int] = set()
    for child in children:
        if child.__class__ is not yaml.ScalarNode:
            if child in met:  # counted when reached: it may be walked only by then
                aliases.add(len(collections))
            collections.append(child)
        elif child in met:
            expansion.add(child)
        met.add(child)
    return collections, aliases


class _Expansion:
    """What the aliases met so far expand to, in nodes and in characters of scalars."""

    def __init__(self) -> None:
        self.nodes = self.chars = 0
        self._sizes: dict[yaml.Node, tuple[int, int, int]] = {}

    def add(self, node: yaml.Node) -> int:
        """Count one alias of ``node``, walked before, within the limits; its height."""
        nodes, chars, height = self.size(node)
        self.nodes += nodes
        self.chars += chars
        if self.nodes > MAX_ALIAS_NODES:
            raise _LimitError(_TOO_MANY, node.start_mark)
        if self.chars > MAX_ALIAS_CHARS:
            raise _LimitError(_TOO_LONG, node.start_mark)
        return height

    def size(self, node: yaml.Node) -> tuple[int, int, int]:
        """Nodes, characters and height of ``node`` with its aliases expanded.

        Each collection is measured once. The recursion is no deeper than ``node``'s height,
        which ``_measure`` has kept within ``MAX_DEPTH`` while walking it.
        """
        if node.__class__ is yaml.ScalarNode:
            return 1, len(node.value), 0
        known = self._sizes.get(node)
        if known is None:
            nodes, chars, height = 1, 0, 0
            for child in _children(node):
                n, c, h = self.size(child)
                nodes, chars, height = nodes + n, chars + c, max(height, h)
            known = self._sizes[node] = (nodes, chars, height + 1)
        return known


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    children: list[yaml.Node] = node.value
    return children


def _marked(method: Any) -> Any:
    """A constructor whose ValueError (a 5,000-digit integer, month 13) names its node."""

    def construct(loader: Any, node: yaml.Node) -> Any:
        try:
            return method(loader, node)
        except (ValueError, OverflowError) as exc:
            raise ConstructorError(None, None, str(exc), node.start_mark) from None

    return construct


def _marked_constructors(cls: type[Any]) -> type[Any]:
    for tag, method in (
        ("tag:yaml.org,2002:int", SafeConstructor.construct_yaml_int),
        ("tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_timestamp),
    ):
        cls.add_constructor(tag, _marked(method))
    return cls


_STR_TAG = "tag:yaml.org,2002:str"


if TYPE_CHECKING:
    _Loader = yaml.SafeLoader  # what _Shortcuts is mixed into (or CSafeLoader, alike)
else:
    _Loader = object


class _Shortcuts(_Loader):
    """Shortcuts through PyYAML's Python code for each scalar and mapping, results unchanged:
    most of a large config is plain strings, many of them the same keys over and over."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._tags: dict[str, str] = {}

    # Resolver.resolve and Parser.peek_event are unannotated in types-PyYAML.
    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is not yaml.ScalarNode or not implicit[0]:
            resolved: str = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
            return resolved
        # A plain scalar's tag depends on its text alone (there are no path resolvers here).
        tag = self._tags.get(value)
        if tag is None:
            tag = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
            if len(self._tags) < 4096:
                self._tags[value] = tag
        return tag

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if node.tag == _STR_TAG and isinstance(node, yaml.ScalarNode):
            return node.value  # what construct_yaml_str returns, minus the bookkeeping
        return super().construct_object(node, deep)

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        pairs = node.value
        if isinstance(node, yaml.MappingNode) and all(
            key.tag == _STR_TAG and key.__class__ is yaml.ScalarNode for key, _ in pairs
        ):
            # Keys that are all strings: no merge key to flatten, none unhashable.
            construct = self.construct_object
            return {
                key.value: value.value
                if value.tag == _STR_TAG and value.__class__ is yaml.ScalarNode
                else construct(value, deep)
                for key, value in pairs
            }
        # PyYAML rejects a node of another kind itself (its stubs take MappingNode only).
        return super().construct_mapping(node, deep)  # type: ignore[arg-type]


@_marked_constructors
class _PureLoader(_Shortcuts, yaml.SafeLoader):
    """PyYAML's SafeLoader, whose composer recurses once per level: it stops at MAX_DEPTH.

    (libyaml stops at 1,000 levels itself, which is no deep recursion; ``_measure`` applies
    the tighter limit to both.)
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # unannotated in the stubs
        nested = isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent)
        if nested:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _LimitError(_TOO_DEEP, event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            if nested:
                self._depth -= 1


PURE_LOADER: type[Any] = _PureLoader
FAST_LOADER: type[Any] | None = None
if yaml.__with_libyaml__:

    @_marked_constructors
    class _FastLoader(_Shortcuts, yaml.CSafeLoader):
        """libyaml's parser and composer, PyYAML's safe constructor."""

    FAST_LOADER = _FastLoader


def _marked_error(path: str | Path, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    message = _one_line(exc.problem or exc.context or "unreadable")
    if exc.problem and exc.context:
        at = f" at line {exc.context_mark.line + 1}" if exc.context_mark else ""
        message += f" ({_one_line(exc.context)}{at})"
    return f"{_position(path, mark)}: invalid YAML: {message}"


def _position(path: str | Path, mark: yaml.Mark | None) -> str:
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)


def _text_position(path: str | Path, text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"{path}:{line}:{column}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many objects without cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
