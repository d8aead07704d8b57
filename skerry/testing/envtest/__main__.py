"""``python -m skerry.testing.envtest build|run``.

build   ensure the binaries exist (building them if needed); print their directory
run     start a local cluster, print the admin kubeconfig path, run until
        Ctrl-C / SIGTERM (or until a component dies), then clean up
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import signal
import sys
import threading

from skerry.testing.envtest import EnvtestError, LocalCluster, assets_dir


def _cmd_build(args: argparse.Namespace) -> int:
    print(assets_dir(build=True), flush=True)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_signal)

    cluster = LocalCluster(
        pathlib.Path(args.workdir) if args.workdir else None,
        controller_manager=not args.no_controller_manager,
    )
    try:
        cluster.start(timeout=args.timeout)
        kubeconfig = cluster.kubeconfig
        if args.kubeconfig_out:
            out = pathlib.Path(args.kubeconfig_out)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cluster.kubeconfig, out)
            out.chmod(0o600)
            kubeconfig = out
        print(
            f"envtest: {cluster.server} ready in {cluster.startup_seconds:.1f}s "
            f"(logs in {cluster.log_dir}); Ctrl-C to stop\n"
            f"envtest: export KUBECONFIG={kubeconfig}",
            file=sys.stderr,
            flush=True,
        )
        print(kubeconfig, flush=True)
        while not stop.wait(1.0):
            cluster.check_alive()
        print("envtest: stopping", file=sys.stderr, flush=True)
        return 0
    finally:
        cluster.stop()
        if args.kubeconfig_out:
            pathlib.Path(args.kubeconfig_out).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m skerry.testing.envtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="ensure binaries exist; print their directory")
    b.set_defaults(func=_cmd_build)
    r = sub.add_parser("run", help="run a local cluster until interrupted")
    r.add_argument("--workdir", help="keep certs/logs here (default: a temp dir, removed on exit)")
    r.add_argument("--kubeconfig-out", help="also copy the admin kubeconfig here (removed on exit)")
    r.add_argument("--no-controller-manager", action="store_true", help="apiserver + etcd only")
    r.add_argument("--timeout", type=float, default=60.0, help="start-up timeout in seconds")
    r.set_defaults(func=_cmd_run)
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except EnvtestError as e:
        print(f"envtest: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
