"""``skerry status [--watch]`` and ``skerry fetch``: the fleet as the hub sees it, and "fetch Git now".

Both are HubService clients with an operator certificate; the hub and TLS files come from the
flags, else ``SKERRY_HUB`` / ``SKERRY_TLS_*``, else the current context (``skerry login``).
``status --watch`` asks again every ``--interval`` and prints the table (or document) each time it
changed, like ``kubectl get -w``, until Ctrl-C. ``fetch`` is ``HubService.Sync``: the hub fetches
its branch now and answers once anything new is rendered and released, instead of at its next
poll; exit 1 if the fetch or a render failed (the hub keeps serving what it had).
"""

from __future__ import annotations

import sys

from skerry.cli.contexts import add_hub_flags, call_hub
from skerry.cli.errors import UsageError
from skerry.cli.output import add_output_flag, emit
from skerry.cli.parser import duration_type
from skerry.core import release_number

# Bounds on what the commands wait for.
STATUS_TIMEOUT_SECONDS = 10
# A fetch renders every changed path of a large fleet before it answers.
SYNC_TIMEOUT_SECONDS = 600
DEFAULT_WATCH_INTERVAL = 2.0
MIN_WATCH_INTERVAL = 0.5  # each look is one GetFleetStatus on the hub; not a busy loop


def add_commands(subparsers) -> None:
    status = subparsers.add_parser(
        "status", help="the fleet as the hub sees it (a table; -o wide|json|yaml; --watch)",
        description="GetFleetStatus with an operator certificate: per cluster the desired and applied "
        "release, Ready, Healthy, Drifted, Suspended and the first problem. The hub and TLS files come from "
        "the flags, else SKERRY_HUB / SKERRY_TLS_*, else the current context (skerry login).",
    )
    add_hub_flags(status)
    status.add_argument("--cluster", default="", help="one cluster (default: all)")
    status.add_argument("-w", "--watch", action="store_true", help="print again whenever it changes (Ctrl-C ends)")
    status.add_argument("--interval", type=duration_type("--interval"), default=DEFAULT_WATCH_INTERVAL,
                        metavar="DURATION", help="with --watch: how often to ask the hub (default 2s)")
    add_output_flag(status)
    status.set_defaults(func=status_command)

    fetch = subparsers.add_parser(
        "fetch", help="make the hub fetch Git now (and render and release what changed)",
        description="HubService.Sync: the hub fetches its branch now instead of at its next poll, renders "
        "what changed and answers with the commit and the clusters that got a new release.",
    )
    add_hub_flags(fetch)
    add_output_flag(fetch)
    fetch.set_defaults(func=fetch_command)


def _stub_call(args, call):
    from skerry.api.v1 import hub_pb2_grpc

    return call_hub(args, hub_pb2_grpc.HubServiceStub, call)


def status_command(args) -> int:
    import time

    from google.protobuf import json_format

    from skerry.api.v1 import hub_pb2
    from skerry.core.client import all_pages

    if args.interval < MIN_WATCH_INTERVAL:
        raise UsageError(f"--interval: at least {MIN_WATCH_INTERVAL}s")

    def look(stub):
        resp = all_pages(stub.GetFleetStatus, hub_pb2.GetFleetStatusRequest(cluster=args.cluster), "clusters",
                         timeout=STATUS_TIMEOUT_SECONDS)
        return status_rows(resp), json_format.MessageToDict(resp, preserving_proto_field_name=True)

    def show(stub) -> int:
        shown = None
        while True:
            rows, document = look(stub)
            if (rows, document) != shown:
                if shown is not None and args.output in ("table", "wide"):
                    print()
                emit(rows, args.output, columns=STATUS_COLUMNS, wide=STATUS_WIDE, document=document)
                shown = (rows, document)
            if not args.watch:
                return 0
            sys.stdout.flush()
            time.sleep(args.interval)

    return _stub_call(args, show)


def fetch_command(args) -> int:
    from google.protobuf import json_format

    from skerry.api.v1 import hub_pb2

    resp = _stub_call(args, lambda stub: stub.Sync(hub_pb2.SyncRequest(), timeout=SYNC_TIMEOUT_SECONDS))
    row = {"commit": resp.commit[:12] or "-", "rendered": resp.rendered, "published": list(resp.published),
           "errors": [f"{c}: {m}" for c, m in sorted(resp.errors.items())],
           "problem": resp.source_error or resp.fleet_error or ""}
    emit([row], args.output, columns=("commit", "rendered", "published", "problem"), wide=("errors",),
         document=json_format.MessageToDict(resp, preserving_proto_field_name=True))
    return 1 if resp.source_error or resp.fleet_error or resp.errors else 0


STATUS_COLUMNS = ("cluster", "desired", "applied", "ready", "healthy", "drifted", "suspended", "message")
STATUS_WIDE = ("digest", "revision", "objects", "failed")
# Conditions shown as columns, by column name.
_CONDITION_COLUMNS = {"ready": "Ready", "healthy": "Healthy", "drifted": "Drifted", "suspended": "Suspended"}


def status_rows(resp) -> list[dict]:
    """One row per cluster of a GetFleetStatusResponse (releases readable, the first problem named)."""
    rows = []
    for view in resp.clusters:
        rep = view.reported
        conds = {c.type: c for c in rep.conditions}
        row = {
            "cluster": view.cluster,
            # the hub's readable form; an older hub sends only the counters
            "desired": view.desired_release or release_number.label(0, view.desired_version),
            "applied": (view.applied_release or release_number.label(rep.applied_number, rep.applied_version))
            if view.HasField("reported") else "-",
            "digest": view.desired_digest[7:19] or "-",
            "revision": view.desired_revision[:12] or "-",
            "objects": view.desired_objects,
        }
        for column, type_ in _CONDITION_COLUMNS.items():
            c = conds.get(type_)
            row[column] = c.status if c is not None else ("Unknown" if column == "ready" else "-")
        failed = [o for o in rep.objects if o.action == "failed"]
        row["failed"] = len(failed)
        ready = conds.get("Ready")
        if view.render_error:
            row["message"] = f"render error: {view.render_error}"
        elif failed:
            o = failed[0]
            row["message"] = f"{o.ref.kind} {o.ref.namespace}/{o.ref.name}: {o.message}"
        elif ready is not None and ready.status != "True":
            row["message"] = f"{ready.reason}: {ready.message}"
        elif not view.HasField("reported"):
            row["message"] = "no report from the agent yet"
        else:
            row["message"] = ""
        rows.append(row)
    return rows


