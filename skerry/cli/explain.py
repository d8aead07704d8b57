"""``skerry explain KIND/NAME -n NS``: the command for ``skerry.agent.explain``'s chain.

Thin: parses, calls ``explain`` (imported when run), prints text or JSON.
"""

from __future__ import annotations

import pathlib

from skerry.cli.output import emit
from skerry.core import release_number


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("explain", help="object -> bundle digest -> signatures -> source commit")
    p.add_argument("ref", metavar="KIND/NAME", help="e.g. deployment/web or Deployment.apps/web")
    p.add_argument("-n", "--namespace", default="")
    p.add_argument("--state-dir", type=pathlib.Path, default=pathlib.Path("/var/lib/skerry/agent"))
    p.add_argument("--kubeconfig", type=pathlib.Path)
    p.add_argument("--context")
    p.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text",
                   help="text: the chain line by line (default); json, yaml: the whole record")
    p.set_defaults(func=_explain)


def _explain(args) -> int:
    from skerry.agent.explain import explain
    from skerry.agent.kube import KubeClient

    kube = KubeClient.from_kubeconfig(args.kubeconfig, args.context)
    chain = explain(args.ref, args.namespace, args.state_dir, kube)
    if args.output in ("json", "yaml"):
        emit([], args.output, columns=(), document=chain)
        return 0
    o, p = chain["object"], chain["provenance"]
    print(f"object     {o['apiVersion']} {o['kind']} {o['namespace'] + '/' if o['namespace'] else ''}{o['name']}")
    print(f"bundle     {chain['bundle_digest']}")
    if p:
        print(f"release    {release_number.label(int(p.get('number', 0)), int(p['release']))}  {p['image']}")
        d, r = p["director"], p["release_role"]
        print(f"director   {d['role']} v{d['version']} signed by {', '.join(k[:12] for k in d['signed_by'])}")
        print(f"released   {r['role']} v{r['version']} signed by {', '.join(k[:12] for k in r['signed_by'])} "
              f"(threshold {r['threshold']})")
    else:
        print("signatures (no provenance recorded for this bundle on this agent)")
    s = chain["source"]
    print(f"source     {s['url']} @ {s['revision']}  paths {', '.join(s['paths'])}")
    print(f"render     {chain['render']['engine']} {chain['render']['version']}")
    return 0
