"""``skerry render``: a directory, or a cluster's bundle, rendered as the hub does.

``skerry render DIR`` renders one directory the way ``kustomize build DIR``
does (plain YAML if it has no kustomization). ``skerry render --repo REPO
--cluster NAME`` prints the cluster's bundle exactly as the hub signs it
(same code path as the hub's sync: ``skerry.hub.sync.build_revision``).

Apart from ``skerry hub``: building this parser imports nothing of the hub, so ``skerry render DIR``
starts about as fast as ``kubectl kustomize DIR`` (bench/render.py). Failures print one line
(``skerry render: error: overlays/prod: kustomize build failed: ...``) and return 1 (2 for a wrong
combination of arguments), never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from skerry.cli.errors import fail


def add_commands(subparsers) -> None:
    render = subparsers.add_parser(
        "render",
        help="render a directory, or a cluster's bundle, like the hub does",
        description="skerry render DIR [-o yaml|json]: render one directory like `kustomize build DIR`.  "
        "skerry render --repo REPO --cluster NAME [--revision REV]: print that cluster's bundle JSON, "
        "byte for byte what the hub signs.",
    )
    render.add_argument("directory", nargs="?", metavar="DIR", help="directory to render")
    render.add_argument(
        "-o", "--output", choices=("yaml", "json"), help="output format (DIR: yaml, bundle: json)"
    )
    render.add_argument("--repo", metavar="PATH|URL", help="Git repository with skerry.yaml at its root")
    render.add_argument("--cluster", metavar="NAME", help="cluster whose bundle to build (with --repo)")
    render.add_argument("--branch", default="main", metavar="NAME", help="branch to build (default main)")
    render.add_argument(
        "--revision", metavar="REV", help="branch, tag or commit to build instead of the branch head"
    )
    render.add_argument(
        "--engine",
        choices=("auto", "inprocess", "binary"),
        default="auto",
        help="render engine (default auto: in-process kustomize if installed, else the binary)",
    )
    render.set_defaults(func=render_command)


def render_command(args: argparse.Namespace) -> int:
    from skerry.core import logging as skerry_logging
    from skerry.core.errors import SkerryError

    command = "skerry render"
    if args.directory and (args.repo or args.cluster or args.revision):
        return fail(command, "give either DIR or --repo/--cluster, not both", 2)
    if not args.directory and not (args.repo and args.cluster):
        return fail(command, "give DIR, or --repo REPO --cluster NAME", 2)
    # logs go to stderr; stdout is the rendered output. A directory render usually logs nothing: structlog
    # is then never imported (skerry.core.logging)
    skerry_logging.configure("warning", defer=bool(args.directory))
    try:
        if args.directory:
            data = _render_directory(args.directory, args.output or "yaml", args.engine)
        else:
            data = _render_bundle(
                args.repo, args.cluster, args.branch, args.revision, args.output or "json", args.engine
            )
    except SkerryError as e:
        return fail(command, str(e))
    except KeyboardInterrupt:
        return 130
    sys.stdout.buffer.write(data)  # a closed stdout is the error wrapper's (exit 141)
    return 0


def _dump(objects, output: str) -> bytes:
    import json

    from skerry.core import documents

    if output == "json":
        return (
            json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2, ensure_ascii=False)
            + "\n"
        ).encode()
    # One stream: the same bytes as each object written alone and joined with "---", one dumper instead
    # of one per object. Where an object may be written by PyYAML's own emitter instead of libyaml's
    # (a "\\U" escape, see documents.dump_yaml_all), that choice stays the object's own.
    text = documents.dump_yaml_all(objects)
    if "\\U" in text:
        text = "---\n".join(documents.dump_yaml(o) for o in objects)
    return text.encode()


def _render_directory(directory: str, output: str, engine_choice: str = "auto") -> bytes:
    import pathlib

    from skerry.hub.render.detect import detect_engine
    from skerry.hub.render.kustomization import refuse_remote_bases
    from skerry.hub.render.validate import check_objects

    refuse_remote_bases(pathlib.Path(directory))
    objects = detect_engine(engine_choice, isolate=False).render(pathlib.Path(directory))
    check_objects(objects, directory)  # structural checks, as the hub does (schemas with --repo)
    return _dump(objects, output)


# Renders shorter than this show no progress bar (it would only flicker).
PROGRESS_MIN_PATHS = 20


class _Progress:
    """A rich progress bar on stderr while paths render; nothing when stderr is not a terminal."""

    def __init__(self):
        self._bar = None
        self._task = None

    def __call__(self, done: int, total: int) -> None:
        if total < PROGRESS_MIN_PATHS or not sys.stderr.isatty():
            return
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._bar = Progress(
                "rendering", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task("render", total=total)
        self._bar.update(self._task, completed=done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _render_bundle(
    repo: str, cluster: str, branch: str, revision: str | None, output: str, engine_choice: str = "auto"
) -> bytes:
    import json

    from skerry.core import documents
    from skerry.hub.sync import render_bundle

    progress = _Progress()
    try:
        data = render_bundle(repo, cluster, branch, revision, engine_choice, progress=progress)
    finally:
        progress.close()
    if output == "json":
        return data
    return documents.dump_yaml(json.loads(data)).encode()
