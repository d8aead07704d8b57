"""YAML loading for everything the hub reads from a repository or a render tool.

PyYAML's ``SafeLoader`` with two changes, so that what the hub reads means the
same as what Kubernetes tooling reads and always serialises to JSON:

* a mapping with the same key twice is an error (PyYAML silently keeps the
  last one; kubectl rejects it);
* timestamps stay strings (``2024-01-01`` in a ConfigMap is text, and a
  ``datetime`` is not JSON).

``to_json_value`` then checks the loaded tree is JSON: string keys (integer
and boolean keys are converted the way ``sigs.k8s.io/yaml`` does), no binary,
no NaN or infinity.
"""

from __future__ import annotations

import math
from typing import Any

import yaml


class DuplicateKeyError(yaml.constructor.ConstructorError):
    pass


class StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and leaves timestamps as strings."""

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
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


# Drop the implicit timestamp resolver (a copy per class, so yaml.SafeLoader is untouched).
StrictSafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def describe_error(exc: yaml.YAMLError) -> str:
    """One line: what is wrong and where (1-based line and column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"line {mark.line + 1} column {mark.column + 1}: {problem}"
    return str(problem)


def load(text: str | bytes) -> Any:
    """Load exactly one YAML document (``yaml.YAMLError`` on failure)."""
    return yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 - StrictSafeLoader is a SafeLoader


def load_all(text: str | bytes) -> list[Any]:
    """Load every document of a YAML stream (``yaml.YAMLError`` on failure)."""
    return list(yaml.load_all(text, Loader=StrictSafeLoader))  # noqa: S506 - a SafeLoader


class NotJson(ValueError):
    """The value cannot be represented in JSON; the message names where."""


def to_json_value(value: Any, where: str = "") -> Any:
    """Return ``value`` as plain JSON types, or raise ``NotJson`` naming the offending field."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJson(f"{where or 'value'}: {value} is not representable in JSON")
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, bool):
                skey = "true" if key else "false"
            elif isinstance(key, (int, str)):
                skey = str(key)
            elif isinstance(key, float) and math.isfinite(key):
                skey = repr(key)
            else:
                raise NotJson(f"{where or 'value'}: key {key!r} is not a string")
            if skey in out:
                raise NotJson(f"{where or 'value'}: key {skey!r} appears twice")
            out[skey] = to_json_value(item, f"{where}.{skey}" if where else skey)
        return out
    if isinstance(value, (list, tuple)):
        return [to_json_value(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise NotJson(f"{where or 'value'}: a {type(value).__name__} value is not representable in JSON")
