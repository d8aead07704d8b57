"""``skerry promote``, ``skerry freight``, ``skerry rollback``, ``skerry environments``: PromotionService clients.

Each talks mutual TLS to the hub with an operator certificate (``--hub``, ``--tls-*``)::

  skerry environments --hub hub:7440 --tls-ca ca.crt --tls-cert me.crt --tls-key me.key
  skerry freight web [--env prod] ...
  skerry promote web --from dev --to prod [--approve] [--wait] [--dry-run] [--branch review/x] ...
  skerry rollback web --env prod --to REV [--wait] ...

Output is human-readable lines (``-o json|yaml`` for the messages). ``--hub`` and the TLS files come from
the flags, else ``SKERRY_HUB``/``SKERRY_TLS_*``, else the current context (``skerry login``). Exit status: 0 done (or
committed, without ``--wait``); 1 refused, blocked by a gate, failed or rolled back; 2 wrong arguments.
"""

from __future__ import annotations

import argparse

from skerry.cli.contexts import add_hub_flags, call_hub
from skerry.cli.output import add_output_flag, emit

WAIT_TIMEOUT = 3600.0  # --wait gives up after this long (the hub keeps following the rollout)
RPC_TIMEOUT = 60.0  # one unary call (a promotion fetches, commits and pushes)
GOOD = {"approved", "done", "committed", "rolling-out", "verifying", "pushed-for-review", "ready"}


def _connection_flags(p: argparse.ArgumentParser) -> None:
    add_hub_flags(p)
    add_output_flag(p)


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("environments", help="list environments in promotion order, their clusters and rules")
    _connection_flags(p)
    p.set_defaults(func=environments_command)

    p = subparsers.add_parser("freight", help="show what an app runs in each environment (images, revision, health)")
    p.add_argument("app", metavar="APP")
    p.add_argument("--env", help="only this environment")
    _connection_flags(p)
    p.set_defaults(func=freight_command)

    p = subparsers.add_parser(
        "promote",
        help="promote an app's freight to the next environment (a gated Git commit by the hub)",
        description="Evaluate the gates (source clusters healthy and soaked, no freeze, approvals) and, if they "
        "pass, have the hub commit the source environment's images into the target overlay and push it.",
    )
    p.add_argument("app", metavar="APP")
    p.add_argument("--from", dest="from_env", required=True, metavar="ENV")
    p.add_argument("--to", dest="to_env", required=True, metavar="ENV")
    p.add_argument("--approve", action="store_true", help="record your approval (you must be an approver of --to)")
    p.add_argument("--wait", action="store_true", help="follow the rollout until it is done, failed or rolled back")
    p.add_argument("--dry-run", action="store_true", help="evaluate the gates only")
    p.add_argument("--branch", default="", help="push the commit to this branch for review instead")
    _connection_flags(p)
    p.set_defaults(func=promote_command)

    p = subparsers.add_parser("rollback", help="restore an environment's freight as of a revision, by a new commit")
    p.add_argument("app", metavar="APP")
    p.add_argument("--env", required=True)
    p.add_argument("--to", dest="to_revision", required=True, metavar="REV", help="commit, tag or branch")
    p.add_argument("--wait", action="store_true", help="follow the rollout")
    _connection_flags(p)
    p.set_defaults(func=rollback_command)


def _call(command: str, args, fn) -> int:
    from skerry.api.v1 import promotion_pb2_grpc

    return call_hub(args, promotion_pb2_grpc.PromotionServiceStub, fn)


def _json(msg, output: str = "json") -> None:
    """A reply as JSON or YAML (the message's proto3 JSON mapping, field names as in the .proto)."""
    from google.protobuf import json_format

    emit([], output, columns=(), document=json_format.MessageToDict(msg, preserving_proto_field_name=True))


def _machine(output: str) -> bool:
    return output in ("json", "yaml")


def _cluster_state(c) -> str:
    """``pending``, ``applying(r6->r7)``, ``Ready@r7`` or ``NotReady@r7(reason)``: releases as people read them."""
    if not c.reported:
        return "pending"
    if c.applied_digest != c.desired_digest:
        return f"applying({c.applied_release}->{c.desired_release})" if c.desired_release else "applying"
    at = f"@{c.applied_release}" if c.applied_release else ""
    return f"Ready{at}" if c.ready else f"NotReady{at}({c.reason})"


def freight_row(f) -> dict:
    """One row of `skerry freight`: what the app runs in one environment."""
    return {
        "env": f.env,
        "revision": f.revision[:12] or "-",
        "healthy": f.healthy,
        "images": [f"{i.name}={i.reference}" for i in f.images],
        "clusters": [f"{c.cluster}:{_cluster_state(c)}" for c in f.clusters],
        "overlay": f.overlay,
    }


def environment_row(e) -> dict:
    """One row of `skerry environments`: an environment, its clusters and its promotion rules."""
    from skerry.core.duration import format_duration

    r = e.rules
    return {
        "environment": e.name,
        "clusters": list(e.clusters),
        "soak": format_duration(r.soak_seconds),
        "approvals": f"{r.approvals} of {len(r.approvers)}" if r.approvals else "-",
        "auto-rollback": r.auto_rollback,
        "freezes": list(r.freezes),
        "approvers": list(r.approvers),
    }


def _print_promotion(p) -> None:
    head = f"{p.kind} {p.app} {p.from_env} -> {p.to_env}: {p.state}"
    if p.commit:
        head += f" (commit {p.commit[:12]} on {p.branch})"
    print(head + (f" - {p.message}" if p.message else ""))
    for g in p.gates:
        print(f"  gate {g.name}: {'ok' if g.passed else 'BLOCKED'} - {g.message}")
    for c in p.changes:
        print(f"  change {c.name}: {c.before or '(none)'} -> {c.after}")
    for c in p.clusters:
        release = f" ({c.target_release})" if c.target_release else ""
        print(f"  cluster {c.cluster}: {c.state}{release}" + (f" - {c.message}" if c.message else ""))
    if p.rollback_commit:
        print(f"  rolled back by commit {p.rollback_commit[:12]}")


def _follow(stub, promotion, output: str) -> int:
    from skerry.api.v1 import promotion_pb2 as pb

    last = promotion
    for update in stub.WatchPromotion(pb.WatchPromotionRequest(id=promotion.id), timeout=WAIT_TIMEOUT):
        last = update
        if _machine(output):
            _json(update, output)
        else:
            _print_promotion(update)
    return 0 if last.state == "done" else 1


def environments_command(args) -> int:
    from skerry.api.v1 import promotion_pb2 as pb
    def run(stub):
        resp = stub.ListEnvironments(pb.ListEnvironmentsRequest(), timeout=RPC_TIMEOUT)
        if _machine(args.output):
            _json(resp, args.output)
            return 0
        emit([environment_row(e) for e in resp.environments], args.output,
             columns=("environment", "clusters", "soak", "approvals", "auto-rollback"),
             wide=("freezes", "approvers"))
        return 0

    return _call("skerry environments", args, run)


def freight_command(args) -> int:
    from skerry.api.v1 import promotion_pb2 as pb
    def run(stub):
        envs = [args.env] if args.env else [
            e.name for e in stub.ListEnvironments(pb.ListEnvironmentsRequest(), timeout=RPC_TIMEOUT).environments
        ]
        freight = [stub.GetFreight(pb.GetFreightRequest(app=args.app, env=env), timeout=RPC_TIMEOUT) for env in envs]
        if _machine(args.output):
            for f in freight:
                _json(f, args.output)
            return 0
        emit([freight_row(f) for f in freight], args.output,
             columns=("env", "revision", "healthy", "images", "clusters"), wide=("overlay",))
        return 0

    return _call("skerry freight", args, run)


def promote_command(args) -> int:
    from skerry.api.v1 import promotion_pb2 as pb

    def run(stub):
        p = stub.Promote(
            pb.PromoteRequest(app=args.app, from_env=args.from_env, to_env=args.to_env, approve=args.approve,
                              branch=args.branch, dry_run=args.dry_run),
            timeout=RPC_TIMEOUT,
        )
        _json(p, args.output) if _machine(args.output) else _print_promotion(p)
        if p.state not in GOOD:
            return 1
        if args.wait and p.state not in ("approved", "done", "pushed-for-review", "ready"):
            return _follow(stub, p, args.output)
        return 0

    return _call("skerry promote", args, run)


def rollback_command(args) -> int:
    from skerry.api.v1 import promotion_pb2 as pb

    def run(stub):
        p = stub.Rollback(pb.RollbackRequest(app=args.app, env=args.env, to_revision=args.to_revision),
                          timeout=RPC_TIMEOUT)
        _json(p, args.output) if _machine(args.output) else _print_promotion(p)
        if p.state not in GOOD:
            return 1
        if args.wait and p.state != "done":
            return _follow(stub, p, args.output)
        return 0

    return _call("skerry rollback", args, run)
