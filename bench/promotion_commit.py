"""Cost of one promotion commit + push, in a large monorepo, against the Kargo-style way.

    .venv/bin/python bench/promotion_commit.py [--files 10000] [--rounds 10]

Skerry edits the overlay's kustomization in its bare mirror (read the blob, ruamel in-place edit,
``mktree`` on the changed path, ``commit-tree``, push; no working tree). Kargo's promotion steps do
``git-clone`` (a checkout), ``kustomize-set-image``, ``git-commit``, ``git-push``; the peer figure
here is that shape done with the git CLI on the same machine (a fresh clone with a working tree per
promotion, the way a step runner without a persistent checkout does it), plus the same with a
persistent checkout (``git pull`` instead of clone) for fairness.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from skerry.core import logging as skerry_logging  # noqa: E402
from skerry.hub.promotion.freight import Image, read_images, set_images  # noqa: E402
from skerry.hub.source.git import GitSource  # noqa: E402
from skerry.hub.source.writes import commit_files, push_commit  # noqa: E402

ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
       "GIT_COMMITTER_EMAIL": "b@b", "GIT_CONFIG_NOSYSTEM": "1"}
KUST = 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n# keep me\nimages:\n  - name: web\n    newTag: "1.0.0"\n'


def git(cwd, *args):
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, env=ENV)


def seed(root: pathlib.Path, files: int) -> pathlib.Path:
    work = root / "seed"
    for i in range(files):
        d = work / "apps" / f"app{i // 10:04d}" / "overlays" / "prod"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i % 10}.yaml").write_text(f"kind: ConfigMap\nmetadata: {{name: c{i}}}\n")
    (work / "apps" / "app0000" / "overlays" / "prod" / "kustomization.yaml").write_text(KUST)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "seed")
    remote = root / "remote.git"
    git(root, "clone", "-q", "--bare", str(work), str(remote))
    return remote


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    skerry_logging.configure("warning")
    path = "apps/app0000/overlays/prod/kustomization.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        remote = seed(root, args.files)
        source = GitSource(str(remote), cache_dir=root / "hub")
        source.fetch()
        t = time.perf_counter()
        for r in range(args.rounds):
            head = source.fetch()
            data = source.read_file(head, path)
            new = set_images(data, [Image("web", "", f"1.0.{r + 1}")], path)
            push_commit(source, commit_files(source, head, {path: new}, f"promote {r}\n\nPromoted-by: bench\n"))
        skerry = (time.perf_counter() - t) / args.rounds
        assert read_images(source.read_file(source.fetch(), path), path)[0].new_tag == f"1.0.{args.rounds}"

        t = time.perf_counter()
        for r in range(args.rounds):
            work = root / f"clone{r}"
            git(root, "clone", "-q", str(remote), str(work))
            f = work / path
            f.write_text(f.read_text().replace(f'"1.0.{args.rounds + r}"', f'"1.0.{args.rounds + r + 1}"'))
            git(work, "commit", "-qam", f"promote {r}")
            git(work, "push", "-q", "origin", "main")
        clone = (time.perf_counter() - t) / args.rounds

        work = root / "persistent"
        git(root, "clone", "-q", str(remote), str(work))
        t = time.perf_counter()
        for r in range(args.rounds):
            git(work, "pull", "-q", "--ff-only")
            f = work / path
            n = 2 * args.rounds + r
            f.write_text(f.read_text().replace(f'"1.0.{n}"', f'"1.0.{n + 1}"'))
            git(work, "commit", "-qam", f"promote {r}")
            git(work, "push", "-q", "origin", "main")
        persistent = (time.perf_counter() - t) / args.rounds

    print(f"repo: {args.files} files, {args.rounds} promotions each")
    print(f"skerry (bare mirror, mktree commit, push)    {skerry * 1000:8.1f} ms/promotion")
    print(f"kargo-style clone+checkout+commit+push       {clone * 1000:8.1f} ms/promotion   ratio {clone / skerry:5.1f}x")
    print(f"persistent checkout pull+commit+push         {persistent * 1000:8.1f} ms/promotion   ratio {persistent / skerry:5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
