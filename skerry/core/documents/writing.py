"""YAML that Skerry writes: block style, keys in the order given, no line folding, never an anchor.

Where PyYAML was built with libyaml its emitter is used: the same bytes, ~5x faster, which is most of a
render of a large tree (tests/hostile/test_yaml_engines.py compares the two).
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class NoAliasDumper(yaml.SafeDumper):
    """Writes a value shared twice in full both times: output never carries anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# With ``allow_unicode`` libyaml escapes characters beyond U+FFFF ("\\U0001FAD0") that PyYAML (and Go's
# YAML) write as they are: output that may hold such an escape is written again by PyYAML's emitter, so
# both give the same bytes (a false alarm, a backslash-U the user wrote, only costs time). The one other
# difference is kept on purpose: libyaml writes the line breaks NEL, LS and PS as "\\N", "\\L", "\\P",
# where PyYAML writes them raw into a single-quoted scalar that reads back as a space (so output holding
# them is never written again by PyYAML).
_LIBYAML_LINE_BREAKS = re.compile(r"\\[NLP]")

if yaml.__with_libyaml__:

    class NoAliasCDumper(yaml.CSafeDumper):
        """``NoAliasDumper`` with libyaml's emitter: the same bytes, several times faster."""

        def ignore_aliases(self, data: Any) -> bool:
            return True

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
