"""Bounded YAML and JSON parsing: the one home for every document Skerry reads from outside.

Modules: ``bounds`` (the limits, ``BadDocument``, clipped messages), ``yamldoc`` (YAML in and out; the
only PyYAML importer), ``jsondoc`` (JSON in, the JSON form of a loaded tree). Readers import from
here.

Outside input is anything another party controls: the fleet file, kustomization files and plain
YAML in a repository, manifests given to ``skerry seal``, bundle bytes and TUF metadata from a hub,
evidence and signed reports from agents, webhook bodies, state files on disk. Every reader of such
input parses it here, so that each bound is stated once:

* **size** (``max_bytes``, each reader passes its own named limit) is checked before parsing;
* **aliases**: PyYAML shares an aliased node instead of copying it, so a few hundred bytes of
  nested aliases ("billion laughs") load quickly but turn into gigabytes as soon as anything walks,
  copies or prints the tree. Like Go's yaml.v3 alias budget, aliases may add at most
  ``max(ALIAS_NODES_FLOOR, nodes spelled out)`` nodes to a document: a document with aliases
  costs at most about twice what the same bytes without aliases cost. A recursive alias (an alias
  inside its own anchor) is refused: the tree it makes has no JSON form;
* **depth** (``MAX_DEPTH``) before the recursive composer or any later walk hits Python's
  recursion limit;
* **values**: NaN and infinities have no JSON form; lone surrogates (``"\\ud800"`` in JSON) cannot
  be encoded as UTF-8; both are refused here rather than crashing a later encoder;
* **messages**: ``clip`` and ``clip_repr`` bound what a value contributes to an error message, so
  an error never echoes megabytes of input (``MAX_MESSAGE_CHARS``).

Failures raise ``BadDocument`` (an ``InvalidInput``) whose ``reason`` names the check
(``TooLarge``, ``AliasBudget``, ``TooDeep``, ``NotJson``, ``BadEncoding``, ``InvalidYAML``,
``InvalidJSON``) and whose message is one line. Readers prefix it with what they read (file,
field, peer) and re-raise in their own vocabulary.

YAML is PyYAML's safe loader with three changes so that what Skerry reads means what Kubernetes
tooling reads: a duplicate mapping key is an error (kubectl rejects it; PyYAML keeps the last),
timestamps stay strings (a date in a ConfigMap is text, and a ``datetime`` is not JSON), and a bare
``=`` is the string ``"="`` (widely used CRDs list it in an enum; PyYAML resolves it to the YAML 1.1
``value`` tag, which its safe constructor cannot build).

Where PyYAML was built with libyaml (``yaml.__with_libyaml__``, the wheels on PyPI are) the scanner,
parser, composer and emitter are libyaml's C code: loading is ~4x and dumping ~5x faster, which is most
of a render of a large tree. The budgets do not depend on it: libyaml composes the node graph (aliases
stay shared nodes, so a bomb is a small graph; libyaml itself refuses nesting past 1000 levels), and
``yamldoc._check_graph`` walks that graph once, iteratively, with the same alias budget, recursion and depth
rules before anything is constructed. Both paths read the same documents (libyaml also takes a tab
as separation space where Go's YAML does and PyYAML does not) and write the same bytes (but for the
line breaks PyYAML's emitter loses, see ``yamldoc._LIBYAML_LINE_BREAKS``); tests/hostile/test_yaml_engines.py compares them. The pure-Python classes stay
for a PyYAML without libyaml.
"""

from skerry.core.documents.bounds import (
    ALIAS_NODES_FLOOR,
    ALIAS_NODES_PER_NODE,
    CLIP_CHARS,
    DEFAULT_MAX_BYTES,
    MAX_DEPTH,
    MAX_MESSAGE_CHARS,
    MAX_STATE_FILE_BYTES,
    BadDocument,
    clip,
    clip_repr,
)
from skerry.core.documents.jsondoc import NotJson, load_json, to_json_value
from skerry.core.documents.yamldoc import (
    DuplicateKeyError,
    NoAliasDumper,
    StrictSafeLoader,
    YAMLError,
    describe_error,
    dump_yaml,
    dump_yaml_all,
    load_yaml,
    load_yaml_all,
    load_yaml_or_json,
    yaml11_scalar,
)

__all__ = [
    "ALIAS_NODES_FLOOR", "ALIAS_NODES_PER_NODE", "CLIP_CHARS", "DEFAULT_MAX_BYTES", "MAX_DEPTH",
    "MAX_MESSAGE_CHARS", "MAX_STATE_FILE_BYTES", "BadDocument", "DuplicateKeyError", "NoAliasDumper",
    "NotJson", "StrictSafeLoader", "YAMLError", "clip", "clip_repr", "describe_error", "dump_yaml",
    "dump_yaml_all", "load_json", "load_yaml", "load_yaml_all", "load_yaml_or_json", "to_json_value",
    "yaml11_scalar",
]
