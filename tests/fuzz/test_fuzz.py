"""A short fixed-seed fuzz pass per target (CI): hypothesis derandomized, mutating seeds from examples/ and
the tests. Every input must end in the target's documented errors. bench/fuzz.py runs the long pass."""

from __future__ import annotations

import pathlib
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .mutate import mutate
from .targets import targets

TARGETS = {t.name: t for t in targets()}
EXAMPLES = 150


@pytest.mark.parametrize("name", list(TARGETS))
def test_target_survives_mutated_and_random_input(name):
    target = TARGETS[name]

    @settings(derandomize=True, max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(
        st.tuples(st.sampled_from(target.seeds), st.integers(0, 2**32)).map(lambda s: mutate(s[0], random.Random(s[1]))),
        st.binary(max_size=512),
        st.text(max_size=256).map(lambda t: t.encode("utf-8", "surrogatepass")),
    ))
    def check(data: bytes):
        try:
            target.run(data)
        except target.allowed as e:
            assert len(str(e)) < 1024, str(e)[:300]

    check()


@pytest.mark.parametrize("name", list(TARGETS))
def test_seeds_are_accepted_or_refused_in_the_documented_way(name):
    target = TARGETS[name]
    for seed in target.seeds:
        try:
            target.run(seed)
        except target.allowed:
            pass


REGRESSIONS = pathlib.Path(__file__).with_name("regressions")


@pytest.mark.parametrize("path", sorted(REGRESSIONS.glob("*.bin")), ids=lambda p: p.stem)
def test_every_crash_the_fuzzer_found_is_now_a_documented_refusal(path):
    """Inputs bench/fuzz.py once crashed a target with (file name: target-hash): integers over Python's
    4300-digit limit in YAML, a SealedSecret whose metadata or spec is a string, CSRs with an unknown
    curve, key type or version, a kustomization naming a missing base by a path of kilobytes (echoed whole)."""
    target = {t.name.replace(" ", "-"): t for t in TARGETS.values()}[path.stem.rsplit("-", 1)[0]]
    try:
        target.run(path.read_bytes())
    except target.allowed as e:
        assert len(str(e)) < 1024
