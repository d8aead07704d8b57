"""The Git source: a bare mirror, reads by commit, tree export without a checkout, errors naming the repo."""

from __future__ import annotations

import os
import subprocess

import pytest

from skerry.core.errors import SourceError
from skerry.hub.source.auth import redact_url
from skerry.hub.source.git import GitSource

from .helpers import GitRepo


@pytest.fixture
def repo(tmp_path) -> GitRepo:
    r = GitRepo(tmp_path / "origin")
    r.commit("one", {"skerry.yaml": "v: 1\n", "apps/a/cm.yaml": "a: 1\n"})
    return r


@pytest.fixture
def source(repo, tmp_path) -> GitSource:
    return GitSource(str(repo.path), branch="main", cache_dir=tmp_path / "state")


def test_fetch_returns_the_branch_head_into_a_bare_mirror(repo, source):
    assert source.fetch() == repo.head()
    assert source.mirror.is_dir() and str(source.mirror).startswith(str(source.cache_dir))
    bare = subprocess.run(
        ["git", "-C", str(source.mirror), "rev-parse", "--is-bare-repository"], capture_output=True, text=True
    )
    assert bare.stdout.strip() == "true"
    assert not (source.mirror / "skerry.yaml").exists()  # nothing is checked out


def test_fetch_sees_new_commits(repo, source):
    first = source.fetch()
    second = repo.commit("two", {"skerry.yaml": "v: 2\n"})
    assert second != first
    assert source.fetch() == second


def test_read_file_reads_a_given_commit(repo, source):
    first = source.fetch()
    repo.commit("two", {"skerry.yaml": "v: 2\n"})
    second = source.fetch()
    assert source.read_file(first, "skerry.yaml") == b"v: 1\n"
    assert source.read_file(second, "skerry.yaml") == b"v: 2\n"
    assert source.read_file(second, "missing.yaml") is None
    assert source.read_file(second, "apps") is None  # a directory is not a file


def test_read_file_refuses_oversized_files(repo, source):
    commit = source.fetch()
    with pytest.raises(SourceError, match="over the 4 byte limit"):
        source.read_file(commit, "skerry.yaml", max_bytes=4)


def test_exported_tree_is_that_commit_and_is_removed_afterwards(repo, source):
    first = source.fetch()
    repo.commit("two", {"apps/a/cm.yaml": None, "apps/b/cm.yaml": "b: 1\n"})
    second = source.fetch()
    with source.exported(first) as root:
        assert (root / "apps/a/cm.yaml").read_text() == "a: 1\n"
        assert not (root / "apps/b").exists()
        assert not (root / ".git").exists()
        kept = root
    assert not kept.exists()
    with source.exported(second) as root:
        assert (root / "apps/b/cm.yaml").exists() and not (root / "apps/a").exists()


def test_symlink_inside_the_repository_is_exported(repo, source):
    os.symlink("a", repo.path / "apps/alias")
    commit = repo.commit("link")
    source.fetch()
    with source.exported(commit) as root:
        assert (root / "apps/alias/cm.yaml").read_text() == "a: 1\n"


def test_symlink_out_of_the_repository_is_refused(repo, source):
    os.symlink("/etc/passwd", repo.path / "apps/a/passwd")
    commit = repo.commit("escape")
    source.fetch()
    with pytest.raises(SourceError, match=r"apps/a/passwd: refused") as info:
        with source.exported(commit):
            pass
    assert str(repo.path) in str(info.value)


def test_missing_repository_is_a_source_error_naming_it(tmp_path):
    src = GitSource(str(tmp_path / "nope"), cache_dir=tmp_path / "state")
    with pytest.raises(SourceError) as info:
        src.fetch()
    assert str(tmp_path / "nope") in str(info.value) and "fetch failed" in str(info.value)


def test_missing_branch_is_a_source_error_naming_it(repo, tmp_path):
    src = GitSource(str(repo.path), branch="release", cache_dir=tmp_path / "state")
    with pytest.raises(SourceError, match=r"branch release\): fetch failed"):
        src.fetch()


def test_credentials_never_appear_in_urls_or_errors(tmp_path):
    assert redact_url("https://user:s3cret@git.example/x.git") == "https://git.example/x.git"
    src = GitSource("https://user:s3cret@127.0.0.1:9/x.git", cache_dir=tmp_path / "state", timeout=20)
    assert src.url == "https://127.0.0.1:9/x.git"
    with pytest.raises(SourceError) as info:
        src.fetch()
    assert "s3cret" not in str(info.value) and "127.0.0.1:9" in str(info.value)


def test_corrupt_mirror_is_rebuilt(repo, source):
    source.fetch()
    for child in source.mirror.iterdir():
        if child.is_dir():
            subprocess.run(["rm", "-rf", str(child)], check=True)
        else:
            child.unlink()
    (source.mirror / "junk").write_text("not a repository")
    assert source.fetch() == repo.head()


def test_fetch_revision_resolves_tags_and_commits(repo, source):
    first = repo.head()
    repo.git("tag", "v1")
    second = repo.commit("two", {"skerry.yaml": "v: 2\n"})
    assert source.fetch_revision("v1") == first
    assert source.fetch_revision(first[:10]) == first
    assert source.fetch_revision("main") == second
    with pytest.raises(SourceError, match="unknown revision 'v9'"):
        source.fetch_revision("v9")


def test_option_like_input_is_refused(tmp_path):
    from skerry.core.errors import ConfigError

    with pytest.raises(ConfigError):
        GitSource("--upload-pack=touch /tmp/x", cache_dir=tmp_path)
    with pytest.raises(ConfigError):
        GitSource("/srv/fleet", branch="-x", cache_dir=tmp_path)
    src = GitSource("/srv/fleet", cache_dir=tmp_path)
    with pytest.raises(SourceError, match="not a revision"):
        src.fetch_revision("--all")


@pytest.mark.parametrize(
    "url",
    [
        "https://git.example/fleet.git",
        "ssh://git@git.example/fleet.git",
        "git@git.example:org/fleet.git",
        "git.example:org/fleet.git",
        "file:///srv/fleet",
        "/srv/fleet",
    ],
)
def test_urls_and_absolute_paths_are_kept_as_given(url):
    from skerry.hub.source.auth import normalise_url

    assert normalise_url(url) == url


def test_relative_paths_are_made_absolute(tmp_path, monkeypatch):
    from skerry.hub.source.auth import normalise_url

    monkeypatch.chdir(tmp_path)
    assert normalise_url("fleet") == str(tmp_path / "fleet")
    assert normalise_url("./a/../fleet") == str(tmp_path / "fleet")
