"""Bounded YAML and JSON parsing: the one home for every document Skerry reads from outside.

Outside input is anything another party controls: the fleet file, kustomization files and plain
YAML in a repository, manifests given to ``skerry seal``, bundle bytes and TUF metadata from a hub,
evidence and signed reports from agents, webhook bodies, state files on disk. Every reader of such
input parses it here, so that each bound is stated once:

* **size** (``max_bytes``, each reader passes its own named limit) is checked before parsing;
* **aliases**: at most ``max(ALIAS_NODES_FLOOR, nodes spelled out)`` nodes added to a document (Go's
  yaml.v3 budget; a recursive alias is refused);
* **depth** (``MAX_DEPTH``) before the recursive composer or any later walk hits Python's
  recursion limit;
* **values**: NaN and infinities have no JSON form; lone surrogates cannot be encoded as UTF-8;
  both are refused here rather than crashing a later encoder;
* **messages**: ``clip`` and ``clip_repr`` bound what a value contributes to an error message
  (``MAX_MESSAGE_CHARS``).

Failures raise ``BadDocument`` (an ``InvalidInput``) whose ``reason`` names the check
(``TooLarge``, ``AliasBudget``, ``TooDeep``, ``NotJson``, ``BadEncoding``, ``InvalidYAML``,
``InvalidJSON``) and whose message is one line. Readers prefix it with what they read (file,
field, peer) and re-raise in their own vocabulary.

Split by verb, behind the names this package always exported:

``limits``       the bounds (named constants with their reasons), ``BadDocument``, ``clip``; no YAML library
``json_values``  ``load_json``, and ``to_json_value``: the JSON form of any loaded tree
``reading``      ``load_yaml``, ``load_yaml_all``, ``load_yaml_or_json``: the strict loaders and their budgets
``writing``      ``dump_yaml``, ``dump_yaml_all``: YAML without anchors, libyaml's emitter where present

Only ``reading`` and ``writing`` import PyYAML (an import contract in pyproject.toml).
"""

from __future__ import annotations

from skerry.core.documents.json_values import load_json, to_json_value
from skerry.core.documents.limits import (
    ALIAS_NODES_FLOOR,
    ALIAS_NODES_PER_NODE,
    CLIP_CHARS,
    DEFAULT_MAX_BYTES,
    MAX_DEPTH,
    MAX_MESSAGE_CHARS,
    MAX_STATE_FILE_BYTES,
    BadDocument,
    NotJson,
    clip,
    clip_repr,
)
from skerry.core.documents.reading import (
    DuplicateKeyError,
    StrictSafeLoader,
    YAMLError,
    describe_error,
    load_yaml,
    load_yaml_all,
    load_yaml_or_json,
    yaml11_scalar,
)
from skerry.core.documents.writing import NoAliasDumper, dump_yaml, dump_yaml_all

__all__ = [
    "ALIAS_NODES_FLOOR",
    "ALIAS_NODES_PER_NODE",
    "CLIP_CHARS",
    "DEFAULT_MAX_BYTES",
    "MAX_DEPTH",
    "MAX_MESSAGE_CHARS",
    "MAX_STATE_FILE_BYTES",
    "BadDocument",
    "DuplicateKeyError",
    "NoAliasDumper",
    "NotJson",
    "StrictSafeLoader",
    "YAMLError",
    "clip",
    "clip_repr",
    "describe_error",
    "dump_yaml",
    "dump_yaml_all",
    "load_json",
    "load_yaml",
    "load_yaml_all",
    "load_yaml_or_json",
    "to_json_value",
    "yaml11_scalar",
]
