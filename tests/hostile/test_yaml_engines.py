"""libyaml and pure-Python PyYAML behind ``skerry.core.documents`` read the same documents, write the same
bytes and keep the same budgets (depth, aliases, recursion), so the faster C path changes nothing but time."""

from __future__ import annotations

import datetime
import random
import re

import pytest
import yaml

from skerry.core import documents
from skerry.testing.trees import crd_tree_files
from tests.fuzz.mutate import mutate
from tests.fuzz.targets import KUSTOMIZATION, SEALED, SECRET, _examples

pytestmark = pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML built without libyaml")

SEEDS = (KUSTOMIZATION, SECRET, SEALED, *_examples("*.yaml"))
TRICKY_VALUES = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "tricky", "namespace": "n", "annotations": {"a/b": "x: y", "empty": ""}},
    "data": {
        "eq": "=", "yes": "yes", "on": "on", "null": "null", "tilde": "~", "int": "0123", "oct": "0o17",
        "float": "1e3", "date": "2024-01-01", "time": "2001-12-14t21:59:43.10-05:00", "colon": "a: b",
        "hash": "a #b", "lead": " lead", "trail": "trail ", "multi": "line1\nline2\n", "multi2": "x\n\n  y",
        "tab": "a\tb", "unicode": "blåbær 🫐", "ctrl": "\x07bell", "quote": "'\"", "long": "w " * 400,
        "dash": "- x", "brace": "{x}", "star": "*x", "amp": "&x", "bang": "!x", "pct": "%x", "at": "@x",
        "bom": "\ufeffx", "crlf": "a\r\nb", "spaces": "   ", "dots": "...", "doc": "---",
    },
    "numbers": [0, -1, 1.5, 1e300, -0.0, 10**30, True, False, None],
    "nested": [[], {}, [[{"k": [1, {"z": None}]}]]],
}


def _pure(data: bytes) -> list:
    return [documents.to_json_value(d) for d in yaml.load_all(data, Loader=documents.StrictSafeLoader)]  # noqa: S506


def _outcome(load, data: bytes):
    try:
        return ("ok", load(data))
    except (documents.BadDocument, yaml.YAMLError, ValueError):
        return ("refused", None)


def test_libyaml_is_what_load_uses():
    # the speed claim rests on this: the public reader goes through libyaml's C loader
    assert issubclass(documents.yamldoc._Loader, yaml.CSafeLoader)  # noqa: SLF001


def test_same_documents_from_both_engines_on_seeds_and_mutations():
    rng = random.Random(7)
    inputs = list(SEEDS) + [bytes(mutate(rng.choice(SEEDS), rng, max_len=1 << 14)) for _ in range(400)]
    both_ok = 0
    for data in inputs:
        c, py = _outcome(documents.load_yaml_all, data), _outcome(_pure, data)
        if py[0] == "ok":
            # libyaml accepts a superset (tabs as separation space, as Go's YAML does), never less
            assert c == py, data[:200]
            both_ok += 1
    assert both_ok >= len(SEEDS)


def test_same_bytes_from_both_emitters():
    objs = [TRICKY_VALUES, *[d for s in SEEDS for d in documents.load_yaml_all(s) if d]]
    kwargs = {"sort_keys": False, "allow_unicode": True, "width": 1 << 30, "default_flow_style": False}
    fast = documents.dump_yaml_all(objs)
    assert fast == yaml.dump_all(objs, Dumper=documents.NoAliasDumper, **kwargs)
    assert documents.load_yaml_all(fast) == objs
    shared = {"x": 1}
    assert "&" not in documents.dump_yaml({"a": shared, "b": shared})  # no anchors from the C emitter either


class _StockPure(yaml.SafeDumper):
    """PyYAML's own representer and resolver (anchors off): what ``documents`` wrote before its fast path."""

    def ignore_aliases(self, data):
        return True


class _StockC(yaml.CSafeDumper):
    def ignore_aliases(self, data):
        return True


@pytest.mark.parametrize("settings", [{}, {"allow_unicode": False}, {"sort_keys": True}, {"width": 60}, {"explicit_start": True},
                                      {"explicit_end": True}, {"canonical": True}, {"indent": 4}])
def test_the_fast_representer_writes_what_the_stock_one_writes(settings):
    rng = random.Random(5)
    strings = ["".join(rng.choice(_CHARS) for _ in range(rng.randint(0, 12))) for _ in range(500)]
    objs = [TRICKY_VALUES, *[d for s in SEEDS for d in documents.load_yaml_all(s) if d],
            *crd_tree_files(crds=2, small=6, fields=5).values(), {"random": strings, "floats": [0.5, 1e17, -2.5e-8]},
            {"not JSON": datetime.date(2024, 1, 1), "then": ["x", 1]}]  # the stock path
    kwargs = {"sort_keys": False, "allow_unicode": True, "width": 1 << 30, "default_flow_style": False, **settings}
    expected = yaml.dump_all(objs, Dumper=_StockC, **kwargs)
    if kwargs["allow_unicode"] and "\\U" in expected and not re.search(r"\\[NLP]", expected):
        expected = yaml.dump_all(objs, Dumper=_StockPure, **kwargs)  # documents.dump_yaml_all's rule
    assert documents.dump_yaml_all(objs, **settings) == expected
    assert yaml.dump_all(objs, Dumper=documents.NoAliasDumper, **kwargs) == yaml.dump_all(objs, Dumper=_StockPure, **kwargs)


# printable ASCII, YAML's indicators, and the characters where the two emitters' escaping differs
_CHARS = [*map(chr, range(0x20, 0x7F)), "\n", "\t", "\x07", "\x85", "\xa0", "\xe5", "\u2028", "\u2029", "\ufeff",
          "\ufffd", "\ue000", "\U00010000", "\U0001fad0", "\U0010fffe"]


@pytest.mark.parametrize("allow_unicode", [True, False])
def test_same_bytes_for_random_strings(allow_unicode):
    rng = random.Random(11)
    kwargs = {"sort_keys": False, "allow_unicode": allow_unicode, "width": 1 << 20, "default_flow_style": False}
    for _ in range(2000):
        s = "".join(rng.choice(_CHARS) for _ in range(rng.randint(0, 12)))
        value = {"k": s, "l": [s, {"m": s}]}
        out = documents.dump_yaml(value, allow_unicode=allow_unicode, width=1 << 20)
        assert documents.load_yaml(out) == value, repr(s)
        if not _LINE_BREAKS.intersection(s):  # PyYAML's emitter loses these (see the test below)
            assert out == yaml.dump(value, Dumper=documents.NoAliasDumper, **kwargs), repr(s)


_LINE_BREAKS = {"\x85", "\u2028", "\u2029"}


@pytest.mark.parametrize("brk", sorted(_LINE_BREAKS))
def test_unicode_line_breaks_survive_where_pyyaml_lost_them(brk):
    value = {"k": f"a{brk}b"}
    assert documents.load_yaml(documents.dump_yaml(value)) == value
    if brk == "\x85":  # why libyaml's escape is kept (this fails once PyYAML fixes it)
        lossy = yaml.dump(value, Dumper=documents.NoAliasDumper, allow_unicode=True, default_flow_style=False)
        assert documents.load_yaml(lossy) != value


@pytest.mark.parametrize("depth", [documents.MAX_DEPTH, documents.MAX_DEPTH + 1])
@pytest.mark.parametrize("style", ["flow", "block", "mapping"])
def test_depth_budget_is_the_same_on_both_engines(depth, style):
    # ``depth`` nodes from the root to the innermost one
    if style == "flow":
        data = "[" * depth + "]" * depth
    elif style == "block":
        data = "- " * (depth - 1) + "x"
    else:
        data = "".join("  " * i + "k:\n" for i in range(depth - 1)) + "  " * (depth - 1) + "v\n"
    for load in (documents.load_yaml_all, _pure):
        outcome = _outcome(load, data.encode())
        assert outcome[0] == ("ok" if depth <= documents.MAX_DEPTH else "refused"), (load, style)
    if depth > documents.MAX_DEPTH:
        with pytest.raises(documents.BadDocument) as e:
            documents.load_yaml_all(data)
        assert e.value.reason == "TooDeep"


def _aliases(n: int) -> str:
    """An anchor of 10 nodes, then ``n`` aliases to it: about 10*n aliased nodes."""
    return "base: &b {" + ", ".join(f"k{i}: {i}" for i in range(4)) + "}\nuse:\n" + "".join("- *b\n" for _ in range(n))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (_aliases(2000), "AliasBudget"),  # ~18,000 aliased nodes from ~2,000 written
        ("a: &a [*a]", "AliasBudget"),  # recursive
        ("a: &a {b: *a}", "AliasBudget"),
        ("a: &a\n  b: &b [*a]", "AliasBudget"),
    ],
)
def test_alias_budget_is_the_same_on_both_engines(text, reason):
    with pytest.raises(documents.BadDocument) as e:
        documents.load_yaml_all(text)
    assert e.value.reason == reason
    assert _outcome(_pure, text.encode())[0] == "refused"


def test_aliases_within_budget_load_the_same():
    text = _aliases(500).encode()  # ~4,500 aliased nodes: under the 10,000 floor
    assert documents.load_yaml(text) == _pure(text)[0]
    assert len(documents.load_yaml(text)["use"]) == 500
