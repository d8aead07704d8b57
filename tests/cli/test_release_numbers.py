"""How releases read on screen and are typed (display only: agents compare the counters)."""

from __future__ import annotations

import pytest

from skerry.core import release_number


def test_a_number_reads_as_r_and_nothing_as_a_dash():
    assert release_number.label(7, 1796415910017) == "r7"
    assert release_number.label(0, 0) == "-"


def test_without_a_number_a_small_counter_reads_as_itself():
    assert release_number.label(0, 12) == "r12"


def test_without_a_number_a_millisecond_counter_reads_as_its_utc_instant_never_twice_the_same():
    first = 1796415910010  # 2026-12-04T20:25:10.010Z
    assert release_number.label(0, first) == "r2026-12-04T20:25:10.010"
    assert release_number.label(0, first + 1) == "r2026-12-04T20:25:10.011"
    assert len({release_number.label(0, first + i) for i in range(2000)}) == 2000


def test_the_number_counts_from_the_states_floor():
    floor = 1796415910010
    assert [release_number.number_of(floor + i, floor) for i in (1, 2, 3)] == [1, 2, 3]
    assert release_number.number_of(floor - 5, floor) == 0  # a counter from before this state: unknown


@pytest.mark.parametrize("custom, counter, expected", [
    ({"release": 9, "number": 3}, 9, 3),
    ({"number": 10}, 9, 0),  # larger than the counter it stands for
    ({"number": True}, 9, 0),
    ({"number": "3"}, 9, 0),
    ({"number": -1}, 9, 0),
    ({}, 9, 0),
    (None, 9, 0),
])
def test_a_director_number_is_taken_only_when_plausible(custom, counter, expected):
    assert release_number.director_number(custom, counter) == expected


def test_freight_rows_name_the_release_each_cluster_runs_and_the_one_it_moves_to():
    from skerry.api.v1 import promotion_pb2 as pb
    from skerry.cli.promotion import freight_row

    freight = pb.Freight(env="prod", clusters=[
        pb.ClusterHealth(cluster="a", reported=True, desired_digest="sha256:3", applied_digest="sha256:2",
                         desired_release="r3", applied_release="r2"),
        pb.ClusterHealth(cluster="b", reported=True, desired_digest="sha256:3", applied_digest="sha256:3",
                         desired_release="r3", applied_release="r3", ready=True),
        pb.ClusterHealth(cluster="c", reported=True, desired_digest="sha256:3", applied_digest="sha256:3",
                         desired_release="r3", applied_release="r3", reason="ApplyFailed"),
        pb.ClusterHealth(cluster="d", desired_digest="sha256:3", desired_release="r3"),
        pb.ClusterHealth(cluster="e", reported=True, desired_digest="sha256:3", applied_digest="sha256:2"),  # older hub
    ])
    assert freight_row(freight)["clusters"] == [
        "a:applying(r2->r3)", "b:Ready@r3", "c:NotReady@r3(ApplyFailed)", "d:pending", "e:applying"]
