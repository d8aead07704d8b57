"""A per-render deadline for the in-process kustomize engine: a kustomization that makes kustomize block
(here a FIFO among its resources: the Go call waits for a writer for ever) is stopped at the deadline,
refused with reason RenderTimeout in one line, and the next render works."""

from __future__ import annotations

import os
import pathlib
import time

import pytest

from skerry.core.errors import RenderError
from skerry.hub.render import inprocess
from skerry.hub.render.detect import detect_engine

pytestmark = pytest.mark.skipif(not inprocess.available(), reason="pykustomize is not installed")

DEADLINE = 3.0
EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "fleet" / "overlays" / "prod"


@pytest.fixture(scope="module")
def engine():
    engine = inprocess.InProcessKustomizeEngine(timeout=DEADLINE)
    yield engine
    engine.close()


def hanging(tmp_path: pathlib.Path) -> pathlib.Path:
    directory = tmp_path / "hangs"
    directory.mkdir()
    os.mkfifo(directory / "cm.yaml")
    (directory / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    return directory


def test_a_hanging_render_is_stopped_at_its_deadline_and_the_next_one_works(engine, tmp_path):
    expected = inprocess.InProcessKustomizeEngine().render(EXAMPLE)  # in this process, no deadline
    assert engine.render(EXAMPLE) == expected
    started = time.monotonic()
    with pytest.raises(RenderError) as e:
        engine.render(hanging(tmp_path), root=tmp_path)
    took = time.monotonic() - started
    assert e.value.reason == "RenderTimeout"
    assert str(e.value) == f"hangs: kustomize did not finish within {DEADLINE:g}s; stopped"
    assert DEADLINE <= took < DEADLINE + 5
    assert engine.render(EXAMPLE) == expected  # a fresh worker


def test_the_worker_s_build_errors_read_as_the_library_s(engine, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(RenderError) as worker_error:
        engine.render(bad, root=tmp_path)
    with pytest.raises(RenderError) as local_error:
        inprocess.InProcessKustomizeEngine().render(bad, root=tmp_path)
    assert str(worker_error.value) == str(local_error.value)
    assert str(worker_error.value).startswith("bad: kustomize build failed: ")


def test_the_hub_s_engine_has_the_deadline_and_a_command_s_does_not(tmp_path):
    hub = detect_engine("inprocess", timeout=DEADLINE)
    try:
        with pytest.raises(RenderError) as e:
            hub.render(hanging(tmp_path), root=tmp_path)
        assert e.value.reason == "RenderTimeout"
    finally:
        hub.close()
