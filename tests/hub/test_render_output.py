"""`skerry render DIR` writes, byte for byte, what it wrote before its start-up was cut: the engine's
objects, each written by PyYAML's stock safe representer (no anchors, block style, keys in order, no
folding) and joined with ``---``. Checked on the example fleet and on the benchmark's tree of CRDs
(tests/hostile/test_yaml_engines.py checks the dumper itself against the stock one)."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest
import yaml

from skerry.core import documents
from skerry.hub.render import inprocess
from skerry.hub.render.detect import detect_engine
from skerry.hub.render.validate import check_objects
from skerry.testing.trees import crd_tree

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = [ROOT / "examples" / "fleet" / d for d in ("base", "overlays/dev", "overlays/prod")]
STOCK_KWARGS = {"sort_keys": False, "allow_unicode": True, "width": 1 << 30, "default_flow_style": False}


class _StockPure(yaml.SafeDumper):
    """PyYAML's own safe dumper, anchors off: what every object was written with before (pure Python)."""

    def ignore_aliases(self, data):
        return True


class _StockC(yaml.CSafeDumper if yaml.__with_libyaml__ else yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True


def stock_yaml(value, dumper=None) -> str:
    """One object as it was written before: libyaml, or PyYAML's emitter where libyaml escapes beyond U+FFFF."""
    out = yaml.dump_all([value], Dumper=dumper or _StockC, explicit_start=False, **STOCK_KWARGS)
    if dumper is None and "\\U" in out and not re.search(r"\\[NLP]", out):
        out = stock_yaml(value, _StockPure)
    return out


def as_before(directory: pathlib.Path) -> bytes:
    """The output as the command made it before: objects made plain JSON, checked, written one by one."""
    objects = [documents.to_json_value(o) for o in detect_engine(isolate=False).render(directory)]
    check_objects(objects, str(directory))
    return "---\n".join(stock_yaml(o) for o in objects).encode()


@pytest.fixture(scope="module")
def crds(tmp_path_factory) -> pathlib.Path:
    return crd_tree(tmp_path_factory.mktemp("crds") / "tree")


@pytest.mark.skipif(not inprocess.available(), reason="pykustomize is not installed")
@pytest.mark.parametrize("which", [*(str(p.relative_to(ROOT)) for p in EXAMPLES), "crd-tree"])
def test_render_dir_writes_the_same_bytes_as_before(which, crds):
    directory = crds if which == "crd-tree" else ROOT / which
    done = subprocess.run([sys.executable, "-m", "skerry", "render", str(directory)],
                          capture_output=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    expected = as_before(directory)
    assert expected.count(b"\n---\n") >= (100 if which == "crd-tree" else 1)
    assert done.stdout == expected
