"""The hub's Git writes: a commit made in the bare mirror without a working tree, pushed without force."""

from __future__ import annotations

import pytest

from skerry.core.errors import SourceError
from skerry.hub.source.git import GitSource
from skerry.hub.source.writes import PushRejected, commit_files, commit_message, push_commit

from .helpers import git


@pytest.fixture
def source(harness):
    s = GitSource(str(harness.remote), cache_dir=harness.tmp / "writer")
    s.fetch()
    return s


def test_a_commit_changes_only_the_given_file_and_keeps_every_other_tree(harness, source):
    head = source.fetch()
    path = "overlays/prod/kustomization.yaml"
    new = source.read_file(head, path).replace(b"count: 3", b"count: 7")
    commit = commit_files(source, head, {path: new}, "scale prod\n\nPromoted-by: test\n", author_name="Hub")
    push_commit(source, commit)
    assert harness.remote_head() == commit
    assert git(harness.remote, "diff", "--name-only", head, commit) == path
    assert git(harness.remote, "rev-parse", f"{head}:base") == git(harness.remote, "rev-parse", f"{commit}:base")
    assert git(harness.remote, "log", "-1", "--format=%an", commit) == "Hub"
    assert "Promoted-by: test" in commit_message(source, commit)


def test_a_missing_file_is_refused_naming_it(source):
    with pytest.raises(SourceError, match="overlays/qa/kustomization.yaml does not exist"):
        commit_files(source, source.fetch(), {"overlays/qa/kustomization.yaml": b"x"}, "m")


def test_a_push_that_is_not_a_fast_forward_is_rejected_and_nothing_is_lost(harness, source):
    head = source.fetch()
    other = harness.edit("overlays/prod/kustomization.yaml", "count: 3", "count: 4", "someone else")
    stale = commit_files(source, head, {"overlays/dev/namespace.yaml": b"kind: Namespace\n"}, "late")
    with pytest.raises(PushRejected, match="rejected"):
        push_commit(source, stale)
    assert harness.remote_head() == other
