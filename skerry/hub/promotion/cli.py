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

WAIT_TIMEOUT = 3600.0  # --wait gives up after this long (the hub keeps following the rollout)
RPC_TIMEOUT = 60.0  # one unary call (a promotion fetches, commits and pushes)
GOOD = {"approved", "done", "committed", "rolling-out", "verifying", "pushed-for-review", "ready"}


def _connection_flags(p: argparse.ArgumentParser) -> None:
    from skerry.cli.contexts import add_hub_flags
    from skerry.cli.output import add_output_flag

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
    import grpc

    from skerry.api.v1 import promotion_pb2_grpc
    from skerry.cli.contexts import resolve_hub
    from skerry.core import tls
    from skerry.core.client import secure_channel
    from skerry.core.rpc import error_from_rpc

    target = resolve_hub(vars(args))
    with secure_channel(target.address, tls.TlsFiles(target.tls_ca, target.tls_cert, target.tls_key)) as channel:
        try:
            return fn(promotion_pb2_grpc.PromotionServiceStub(channel))
        except grpc.RpcError as e:
            raise error_from_rpc(e, target.address) from None


def _json(msg, output: str = "json") -> None:
    """A reply as JSON or YAML (the message's proto3 JSON mapping, field names as in the .proto)."""
    from google.protobuf import json_format

    from skerry.cli.output import emit

    emit([], output, columns=(), document=json_format.MessageToDict(msg, preserving_proto_field_name=True))


def _machine(output: str) -> bool:
    return output in ("json", "yaml")


def _print_freight(f) -> None:
    state = "healthy" if f.healthy else "NOT healthy"
    print(f"{f.app} in {f.env} ({f.overlay}) at {f.revision[:12]}: {state}")
    for i in f.images:
        print(f"  image {i.name} = {i.reference}")
    for c in f.clusters:
        if not c.reported:
            how = "pending (no report)"
        elif c.applied_digest != c.desired_digest:
            how = f"applying (runs {c.applied_digest[:19] or 'nothing'})"
        else:
            how = "Ready" if c.ready else f"NOT Ready: {c.reason}"
        print(f"  cluster {c.cluster}: bundle {c.desired_digest[:19] or '-'} {how}")


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
        print(f"  cluster {c.cluster}: {c.state}" + (f" - {c.message}" if c.message else ""))
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
        print(" -> ".join(e.name for e in resp.environments) + f"   (apps: {', '.join(resp.apps) or 'none'})")
        for e in resp.environments:
            r = e.rules
            rules = [f"soak {r.soak_seconds:.0f}s"]
            if r.approvals:
                rules.append(f"{r.approvals} of {', '.join(r.approvers)} approve")
            if r.auto_rollback:
                rules.append("auto-rollback")
            rules += list(r.freezes)
            print(f"  {e.name}: clusters {', '.join(e.clusters) or '(none)'}; {'; '.join(rules)}")
        return 0

    return _call("skerry environments", args, run)


def freight_command(args) -> int:
    from skerry.api.v1 import promotion_pb2 as pb

    def run(stub):
        envs = [args.env] if args.env else [
            e.name for e in stub.ListEnvironments(pb.ListEnvironmentsRequest(), timeout=RPC_TIMEOUT).environments
        ]
        for env in envs:
            f = stub.GetFreight(pb.GetFreightRequest(app=args.app, env=env), timeout=RPC_TIMEOUT)
            _json(f, args.output) if _machine(args.output) else _print_freight(f)
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
