"""YAML documents from outside (PyYAML's safe loader with budgets; libyaml where built with it) and
YAML written by Skerry: the one module that imports PyYAML (see the package docstring)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from skerry.core.documents.bounds import (
    ALIAS_NODES_FLOOR,
    ALIAS_NODES_PER_NODE,
    CLIP_CHARS,
    DEFAULT_MAX_BYTES,
    MAX_DEPTH,
    BadDocument,
    check_size,
    clip,
    clip_repr,
    one_line,
)
from skerry.core.documents.jsondoc import load_json, to_json_value

_YAML_TAGS_AS_TEXT = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")



class DuplicateKeyError(yaml.constructor.ConstructorError):
    pass


class _BudgetExceeded(yaml.YAMLError):
    def __init__(self, reason: str, message: str, mark: Any = None):
        super().__init__(message)
        self.reason, self.problem, self.problem_mark = reason, message, mark


class _StrictConstructor:
    """The constructing half both loaders share: duplicate keys refused (see the module docstring)."""

    def construct_mapping(self, node, deep=False):
        # Checked before merge keys ("<<") are flattened in: a key given explicitly may override a
        # merged one (that is what merging is for), but not another explicit key.
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # unhashable key; the base class reports it
                    continue
                if duplicate:
                    raise DuplicateKeyError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {clip_repr(key)}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _alias_budget(spelled: int) -> int:
    return max(ALIAS_NODES_FLOOR, ALIAS_NODES_PER_NODE * spelled)


class StrictSafeLoader(_StrictConstructor, yaml.SafeLoader):
    """The pure-Python SafeLoader with the budgets checked while composing (PyYAML without libyaml)."""

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._depth = 0
        self._spelled = 0
        self._aliased = 0
        self._sizes: dict[int, int] = {}

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # Checked in the scanner too: PyYAML scans up to 1024 characters ahead for a possible simple key
        # and re-checks every open flow level for each token, so 50,000 "[" cost seconds before the
        # composer's depth check would see the 201st level.
        if self.flow_level >= MAX_DEPTH:
            raise _BudgetExceeded("TooDeep", f"nested deeper than {MAX_DEPTH} levels", self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_document(self) -> Any:
        self._spelled = self._aliased = 0
        self._sizes = {}
        try:
            return super().compose_document()
        finally:
            self._sizes = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if node is not None:
                size = self._sizes.get(id(node))
                if size is None:
                    raise _BudgetExceeded("AliasBudget", f"alias *{clip(event.anchor, 40)} is inside its own anchor",
                                          event.start_mark)
                self._aliased += size
                if self._aliased > _alias_budget(self._spelled):
                    raise _BudgetExceeded(
                        "AliasBudget",
                        f"aliases expand to over {self._aliased} nodes from {self._spelled} written "
                        f"(budget {_alias_budget(self._spelled)})",
                        event.start_mark,
                    )
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _BudgetExceeded("TooDeep", f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._spelled += 1
        if isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes.get(id(child), 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value)
        else:
            size = 1
        self._sizes[id(node)] = size
        return node


def _check_graph(root: Any) -> None:
    """The budgets of ``StrictSafeLoader.compose_node`` on a node graph libyaml composed.

    One depth-first walk in document order, without recursion: a node met again is an alias and adds
    its expanded size (counted once, when it was first completed) to the aliased total; a node met
    again while it is still open is a recursive alias; depth counts nodes from the root, as there.
    """
    if root is None or isinstance(root, yaml.ScalarNode):
        return
    sizes: dict[int, int] = {}
    open_ids = {id(root)}
    # per open collection: its node, its children, the next child's index, its size so far
    stack: list[list[Any]] = [[root, _children(root), 0, 1]]
    spelled = aliased = 0
    while stack:
        frame = stack[-1]
        node, children, i = frame[0], frame[1], frame[2]
        if i == len(children):
            stack.pop()
            open_ids.discard(id(node))
            sizes[id(node)] = frame[3]
            spelled += 1
            if stack:
                stack[-1][3] += frame[3]
            continue
        frame[2] = i + 1
        child = children[i]
        size = sizes.get(id(child))
        if size is not None or id(child) in open_ids:
            if size is None:
                raise _BudgetExceeded("AliasBudget", "an alias is inside its own anchor", child.start_mark)
            aliased += size
            if aliased > _alias_budget(spelled):
                raise _BudgetExceeded(
                    "AliasBudget",
                    f"aliases expand to over {aliased} nodes from {spelled} written (budget {_alias_budget(spelled)})",
                    child.start_mark,
                )
            frame[3] += size
        elif len(stack) >= MAX_DEPTH:
            raise _BudgetExceeded("TooDeep", f"nested deeper than {MAX_DEPTH} levels", child.start_mark)
        elif isinstance(child, yaml.ScalarNode):
            sizes[id(child)] = 1
            spelled += 1
            frame[3] += 1
        else:
            open_ids.add(id(child))
            stack.append([child, _children(child), 0, 1])


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return node.value


# libyaml refuses, in its scanner, what the Python path refuses later under a named reason: nesting past
# its own limit (1000 levels, above MAX_DEPTH), and an escape that names a lone surrogate ("\\ud800"),
# which the Python scanner turns into a string that ``to_json_value`` refuses.
_LIBYAML_REASONS = {"maximum nesting depth": "TooDeep", "invalid Unicode character escape code": "BadEncoding"}

if yaml.__with_libyaml__:

    class StrictCSafeLoader(_StrictConstructor, yaml.CSafeLoader):
        """libyaml's loader; the composed graph is checked by ``_check_graph`` before construction."""

        def get_node(self) -> Any:
            node = super().get_node()
            _check_graph(node)
            return node

        def get_single_node(self) -> Any:
            node = super().get_single_node()
            _check_graph(node)
            return node

    _Loader: type = StrictCSafeLoader
else:  # pragma: no cover - PyPI's PyYAML wheels carry libyaml
    _Loader = StrictSafeLoader


# A copy per class, so yaml.SafeLoader itself is untouched.
_STRICT_RESOLVERS = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML_TAGS_AS_TEXT]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictSafeLoader.yaml_implicit_resolvers = _STRICT_RESOLVERS
_Loader.yaml_implicit_resolvers = _STRICT_RESOLVERS


def describe_error(exc: yaml.YAMLError) -> str:
    """One line: what is wrong and where (1-based line and column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [""])[0]
    if mark is not None:
        return one_line(f"line {mark.line + 1} column {mark.column + 1}: {problem}")
    return one_line(problem)


def _yaml_docs(data: str | bytes, max_bytes: int, *, to_json: bool) -> list[Any]:
    check_size(data, max_bytes)
    try:
        docs = list(yaml.load_all(data, Loader=_Loader))  # noqa: S506 - a SafeLoader
    except _BudgetExceeded as e:
        raise BadDocument(describe_error(e), reason=e.reason) from None
    except yaml.reader.ReaderError as e:
        raise BadDocument(f"not UTF-8 text or a non-printable character (position {e.position})",
                          reason="BadEncoding") from None
    except yaml.YAMLError as e:
        problem = str(getattr(e, "problem", ""))
        for text, reason in _LIBYAML_REASONS.items():
            if text in problem:
                raise BadDocument(describe_error(e), reason=reason) from None
        raise BadDocument(f"invalid YAML: {describe_error(e)}", reason="InvalidYAML") from None
    except UnicodeDecodeError as e:
        raise BadDocument(f"not UTF-8 (byte {e.start})", reason="BadEncoding") from None
    except UnicodeEncodeError as e:  # a str holding a lone surrogate, which libyaml's reader cannot take
        raise BadDocument(f"not UTF-8 text (character {e.start})", reason="BadEncoding") from None
    except RecursionError:
        raise BadDocument(f"nested deeper than {MAX_DEPTH} levels", reason="TooDeep") from None
    except ValueError as e:  # an integer over Python's 4300-digit conversion limit
        raise BadDocument(f"unreadable value: {clip(str(e), 80)}", reason="NotJson") from None
    if to_json:
        return [to_json_value(doc) for doc in docs]
    return docs


def load_yaml(data: str | bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, to_json: bool = True) -> Any:
    """Exactly one YAML document (None when empty). ``to_json``: also check it is JSON (``to_json_value``)."""
    docs = _yaml_docs(data, max_bytes, to_json=to_json)
    if len(docs) > 1:
        raise BadDocument(f"{len(docs)} YAML documents where one was expected", reason="InvalidYAML")
    return docs[0] if docs else None


def load_yaml_all(data: str | bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, to_json: bool = True) -> list[Any]:
    """Every document of a YAML stream (empty documents included as None)."""
    return _yaml_docs(data, max_bytes, to_json=to_json)


def load_yaml_or_json(data: str | bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Any]:
    """The documents of a manifest given as JSON (one value) or as a YAML stream.

    Input that starts like JSON is tried as JSON first (YAML refuses some valid JSON, tabs as
    indentation); if it is not JSON after all, the YAML parser reports it.
    """
    check_size(data, max_bytes)
    if data.lstrip()[:1] in (b"{", "{"):
        try:
            return [load_json(data, max_bytes=max_bytes)]
        except BadDocument as e:
            if e.reason != "InvalidJSON":
                raise
    return load_yaml_all(data, max_bytes=max_bytes)


_TAG = "tag:yaml.org,2002:"
_STR, _INT, _BOOL, _NULL, _FLOAT, _MAP, _SEQ = (_TAG + t for t in ("str", "int", "bool", "null", "float", "map", "seq"))


class _NotPlainJson(Exception):
    """A value of a type JSON does not have: its document is written the stock way."""


class _JsonDumping:
    """What both dumpers below share: no anchors (a value shared twice is written in full both times),
    and a fast path for plain JSON documents.

    PyYAML writes a value in three steps: its representer makes a node per value, its serializer walks
    the nodes and asks the resolver (regular expressions, twice per scalar) whether each scalar's tag may
    go unwritten, and the emitter writes the events the serializer hands it. For a JSON document the fast
    path hands the emitter those same events directly: a scalar's event (its text, tag and the
    resolver's two answers) is made once per distinct scalar of the dump and reused, and a rendered tree
    repeats its keys and many values. The emitter gets what it got before, so the bytes are the same;
    writing the benchmark's tree of CRDs (skerry.testing.trees) takes a quarter of the CPU time it took
    (~27 ms instead of ~100). A document holding
    another type, or settings the path does not cover (a default style, flow style, sorted keys, a
    version or tag directives), goes through the representer and serializer as before.
    """

    def __init__(self, stream: Any, *, explicit_start: bool | None = None, explicit_end: bool | None = None,
                 version: Any = None, tags: Any = None, **kwargs: Any):
        super().__init__(stream, explicit_start=explicit_start, explicit_end=explicit_end, version=version,
                         tags=tags, **kwargs)
        self._explicit_start, self._explicit_end = explicit_start, explicit_end
        self._fast = (self.default_style is None and self.default_flow_style is False and not self.sort_keys
                      and version is None and tags is None)
        self._scalars: dict[tuple[type, Any], Any] = {}  # this dump's scalars only: bounded by its input
        self._mapping_start = yaml.MappingStartEvent(None, _MAP, self.resolve(yaml.MappingNode, [], True) == _MAP,
                                                     flow_style=False)
        self._sequence_start = yaml.SequenceStartEvent(None, _SEQ, self.resolve(yaml.SequenceNode, [], True) == _SEQ,
                                                       flow_style=False)

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def represent(self, data: Any) -> None:
        if self._fast:
            events: list[Any] = []
            try:
                self._events(data, events)
            except _NotPlainJson:
                pass
            else:
                self.emit(yaml.DocumentStartEvent(explicit=self._explicit_start))
                for event in events:
                    self.emit(event)
                self.emit(yaml.DocumentEndEvent(explicit=self._explicit_end))
                return
        super().represent(data)

    def _events(self, data: Any, out: list[Any]) -> None:
        kind = type(data)
        if kind is dict:
            out.append(self._mapping_start)
            for key, value in data.items():
                self._events(key, out)
                self._events(value, out)
            out.append(_MAPPING_END)
        elif kind is list:
            out.append(self._sequence_start)
            for value in data:
                self._events(value, out)
            out.append(_SEQUENCE_END)
        else:
            event = self._scalars.get((kind, data))
            if event is None:
                event = self._scalars[(kind, data)] = self._scalar(kind, data)
            out.append(event)

    def _scalar(self, kind: type, data: Any) -> Any:
        """The event the serializer made of the node ``SafeRepresenter`` makes of ``data``."""
        if kind is str:
            tag, text = _STR, data
        elif kind is bool:
            tag, text = _BOOL, "true" if data else "false"
        elif kind is int:
            tag, text = _INT, str(data)
        elif data is None:
            tag, text = _NULL, "null"
        elif kind is float:
            tag, text = _FLOAT, self.represent_float(data).value
        else:
            raise _NotPlainJson
        implicit = (self.resolve(yaml.ScalarNode, text, (True, False)) == tag,
                    self.resolve(yaml.ScalarNode, text, (False, True)) == tag)
        return yaml.ScalarEvent(None, tag, implicit, text)


_MAPPING_END, _SEQUENCE_END = yaml.MappingEndEvent(), yaml.SequenceEndEvent()


class NoAliasDumper(_JsonDumping, yaml.SafeDumper):
    """PyYAML's pure-Python dumper, no anchors (``_JsonDumping``)."""


# With ``allow_unicode`` libyaml escapes characters beyond U+FFFF ("\\U0001FAD0") that PyYAML (and Go's
# YAML) write as they are: output that may hold such an escape is written again by PyYAML's emitter, so
# both give the same bytes (a false alarm, a backslash-U the user wrote, only costs time). The one other
# difference is kept on purpose: libyaml writes the line breaks NEL, LS and PS as "\\N", "\\L", "\\P",
# where PyYAML writes them raw into a single-quoted scalar that reads back as a space (so output holding
# them is never written again by PyYAML).
_LIBYAML_LINE_BREAKS = re.compile(r"\\[NLP]")

if yaml.__with_libyaml__:

    class NoAliasCDumper(_JsonDumping, yaml.CSafeDumper):
        """``NoAliasDumper`` with libyaml's emitter: the same bytes, several times faster."""

    _Dumper: type = NoAliasCDumper
else:  # pragma: no cover
    _Dumper = NoAliasDumper


def dump_yaml(value: Any, **kwargs: Any) -> str:
    """YAML text of a JSON value (block style, keys in the order given, no line folding, no anchors)."""
    return dump_yaml_all([value], explicit_start=False, **kwargs)


def dump_yaml_all(values: list[Any], **kwargs: Any) -> str:
    kwargs.setdefault("sort_keys", False)
    kwargs.setdefault("allow_unicode", True)
    kwargs.setdefault("width", 1 << 30)
    kwargs.setdefault("default_flow_style", False)
    out = yaml.dump_all(values, Dumper=_Dumper, **kwargs)
    if (_Dumper is not NoAliasDumper and kwargs["allow_unicode"] and "\\U" in out
            and not _LIBYAML_LINE_BREAKS.search(out)):
        out = yaml.dump_all(values, Dumper=NoAliasDumper, **kwargs)
    return out


def yaml11_scalar(text: str) -> Any:
    """What stock YAML 1.1 (kustomize's reader, timestamps included) makes of one short scalar."""
    if len(text) > CLIP_CHARS * 5:
        raise BadDocument("scalar too long", reason="TooLarge")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise BadDocument(f"invalid YAML: {describe_error(e)}", reason="InvalidYAML") from None


YAMLError = yaml.YAMLError


