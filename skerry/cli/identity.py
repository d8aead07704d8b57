"""``skerry operator add``, ``skerry login``, ``skerry context list|use|delete``: who you are to the hub.

``operator add`` runs where the hub's state is (like ``cluster add``) and issues a client
certificate from the hub-run CA (``skerry.hub.enrollment.operators``). ``login`` checks the
credentials against the hub (one GetFleetStatus call) unless ``--no-check``, copies them under
the config directory (key 0600) and stores them as a context (``skerry.cli.contexts``), which
every client command then uses when no flag or ``SKERRY_*`` variable says otherwise.
"""

from __future__ import annotations

import pathlib
import sys

from skerry.cli.errors import UsageError
from skerry.cli.output import add_output_flag, emit

# `skerry login` waits this long for the hub to answer its check call.
LOGIN_CHECK_TIMEOUT_SECONDS = 10
# PEM files a context copies: certificates and keys are a few KiB.
MAX_PEM_BYTES = 64 * 1024


def add_commands(subparsers) -> None:
    op = subparsers.add_parser("operator", help="issue operator client certificates (run on the hub host)")
    op_sub = op.add_subparsers(dest="operator_command", metavar="COMMAND", required=True)
    add = op_sub.add_parser(
        "add",
        help="issue a client certificate from the hub's CA for a person",
        description="Issue NAME a client certificate (O=skerry:<role>, CN=NAME) from the hub-run CA in "
        "<state-dir>/enrollment. Without --csr a key is made here and written 0600 next to the certificate; "
        "with --csr only the certificate is written. Then: skerry login HUB --tls-ca HUB_CA --tls-cert "
        "NAME.crt --tls-key NAME.key.",
    )
    add.add_argument("name", metavar="NAME", help="the operator's name (approvers in skerry.yaml use it)")
    add.add_argument("--role", default="operator", choices=("operator",), help="role to grant (default operator)")
    add.add_argument("--csr", type=pathlib.Path, metavar="FILE", help="sign this PKCS#10 request instead of making a key")
    add.add_argument("--lifetime", default="720h", metavar="DURATION",
                     help="certificate lifetime, 10m .. 8760h (default 720h = 30 days)")
    add.add_argument("--out-dir", type=pathlib.Path, default=pathlib.Path("."), metavar="DIR",
                     help="where NAME.crt (and NAME.key) are written (default: here)")
    add.add_argument("--state-dir", type=pathlib.Path, metavar="DIR", help="the hub's state directory")
    add.add_argument("--from-cluster", action="store_true",
                     help="take the hub's CA from the management cluster `skerry install` made (kubeconfig as "
                     "kubectl; --context) instead of --state-dir")
    add.add_argument("--kubeconfig", type=pathlib.Path, metavar="FILE", help="with --from-cluster")
    add.add_argument("--context", metavar="NAME", help="the management cluster's context (implies --from-cluster)")
    add.set_defaults(func=operator_add)

    login = subparsers.add_parser(
        "login",
        help="store a hub address and your certificate as a context (no more TLS flags)",
        description="Check the credentials against the hub, copy them under $XDG_CONFIG_HOME/skerry "
        "(~/.config/skerry) and make them the current context.",
    )
    login.add_argument("hub", metavar="HOST:PORT", help="the hub's gRPC address")
    login.add_argument("--name", metavar="NAME", help="context name (default: the hub address)")
    login.add_argument("--tls-ca", type=pathlib.Path, required=True, metavar="FILE", help="CA bundle that signs the hub")
    login.add_argument("--tls-cert", type=pathlib.Path, required=True, metavar="FILE", help="your operator certificate")
    login.add_argument("--tls-key", type=pathlib.Path, required=True, metavar="FILE", help="its private key")
    login.add_argument("--no-check", action="store_true", help="store without calling the hub")
    login.set_defaults(func=login_command)

    ctx = subparsers.add_parser("context", help="list, switch and delete stored hub contexts")
    ctx_sub = ctx.add_subparsers(dest="context_command", metavar="COMMAND", required=True)
    p = ctx_sub.add_parser("list", help="the stored contexts; * marks the current one")
    add_output_flag(p)
    p.set_defaults(func=context_list)
    p = ctx_sub.add_parser("use", help="make NAME the current context")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=context_use)
    p = ctx_sub.add_parser("delete", help="forget context NAME (its copied files stay)")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=context_delete)


def operator_add(args) -> int:
    import datetime as _dt

    from skerry.core.duration import parse_duration
    from skerry.core.files import atomic_write, ensure_dir
    from skerry.hub.config import state_dir_from_env
    from skerry.hub.enrollment.operators import check_operator_name, issue_operator
    from skerry.hub.enrollment.service import DIR_NAME

    check_operator_name(args.name)
    lifetime = _dt.timedelta(seconds=parse_duration(args.lifetime, "--lifetime"))
    csr = _read_pem(args.csr, "CSR") if args.csr else None
    if args.from_cluster or args.context or args.kubeconfig:
        if args.state_dir:
            raise UsageError("--state-dir or the management cluster (--from-cluster, --context): one of them")
        issued = _issue_from_cluster(args, csr, lifetime)
    else:
        issued = issue_operator(state_dir_from_env(args.state_dir) / DIR_NAME, args.name, args.role,
                                csr_pem=csr, lifetime=lifetime)
    out = ensure_dir(args.out_dir, 0o755)
    crt = out / f"{args.name}.crt"
    atomic_write(crt, issued.cert_pem, 0o644)
    written = [str(crt)]
    if issued.key_pem:
        key = out / f"{args.name}.key"
        atomic_write(key, issued.key_pem, 0o600)
        written.append(str(key))
    print("\n".join(written))
    print(f"issued {issued.role} certificate for {args.name!r} (fingerprint {issued.fingerprint}, expires "
          f"{issued.not_after:%Y-%m-%dT%H:%M:%SZ}); then: skerry login HUB:PORT --tls-ca HUB_CA "
          f"--tls-cert {crt} --tls-key {out / (args.name + '.key') if issued.key_pem else 'YOUR.key'}",
          file=sys.stderr)
    return 0


def _issue_from_cluster(args, csr: bytes | None, lifetime):
    """Issue from the enrollment CA in the management cluster's skerry-hub-seed Secret (never kept on disk
    beyond a private scratch directory)."""
    import tempfile

    from skerry.core.files import write_together
    from skerry.hub.enrollment.operators import issue_operator
    from skerry.hub.seed import CA_CERT, CA_KEY
    from skerry.install import cluster
    from skerry.install import material as m

    kube = cluster.connect(args.kubeconfig, args.context)
    try:
        seed = m.secret_data(cluster.read_secret(kube, m.NAMESPACE, m.SEED, args.context))
    finally:
        kube.close()
    with tempfile.TemporaryDirectory(prefix="skerry-operator-") as tmp:
        ca = pathlib.Path(tmp)
        write_together([(ca / "ca.key", seed[CA_KEY], 0o600), (ca / "ca.crt", seed[CA_CERT], 0o644)])
        return issue_operator(ca, args.name, args.role, csr_pem=csr, lifetime=lifetime)


def _read_pem(path: pathlib.Path, what: str) -> bytes:
    """The PEM file a flag names: ``UsageError`` if it is longer than ``MAX_PEM_BYTES`` or no PEM (a wrong file
    given); one that cannot be read is the read's own refusal naming it."""
    from skerry.core.errors import InvalidInput
    from skerry.core.files import TOO_LARGE, read_bounded

    try:
        data = read_bounded(path, MAX_PEM_BYTES, f"{what} {path}")
    except InvalidInput as e:
        if e.reason != TOO_LARGE:
            raise
        raise UsageError(f"{e}: not a PEM file") from None
    if b"-----BEGIN" not in data:
        raise UsageError(f"{what} {path}: not a PEM file of at most {MAX_PEM_BYTES} bytes")
    return data


def _check_login(hub: str, files) -> None:
    """One GetFleetStatus call with these credentials: the hub must accept them as an operator's."""
    import grpc

    from skerry.api.v1 import hub_pb2, hub_pb2_grpc
    from skerry.core.client import secure_channel
    from skerry.core.rpc import error_from_rpc

    with secure_channel(hub, files) as channel:
        try:
            hub_pb2_grpc.HubServiceStub(channel).GetFleetStatus(
                hub_pb2.GetFleetStatusRequest(page_size=1), timeout=LOGIN_CHECK_TIMEOUT_SECONDS)  # one page is the check
        except grpc.RpcError as e:
            raise error_from_rpc(e, hub) from None


def login_command(args) -> int:
    from skerry.cli import contexts
    from skerry.core.files import atomic_write, ensure_dir

    name = args.name or args.hub
    if "/" in name or name in (".", ".."):
        raise UsageError(f"context name {name!r}: no '/' (give --name)")
    pems = {f: _read_pem(getattr(args, f.replace("-", "_")), f) for f in ("tls-ca", "tls-cert", "tls-key")}
    if not args.no_check:
        from skerry.core.tls import TlsFiles

        _check_login(args.hub, TlsFiles(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key))
    directory = ensure_dir(contexts.config_dir() / "contexts" / name)
    stored = {"tls-ca": directory / "ca.crt", "tls-cert": directory / "tls.crt", "tls-key": directory / "tls.key"}
    for field, path in stored.items():
        atomic_write(path, pems[field], 0o600 if field == "tls-key" else 0o644)
    path = contexts.config_path()
    config = contexts.load(path).with_context(
        contexts.Context(name=name, hub=args.hub, **{f.replace("-", "_"): str(p) for f, p in stored.items()}))
    contexts.save(path, config)
    print(f"context {name!r} stored in {path} and made current", file=sys.stderr)
    return 0


def context_list(args) -> int:
    from skerry.cli import contexts

    config = contexts.load(contexts.config_path())
    rows = [{"current": "*" if c.name == config.current else "", **c.as_dict()} for c in config.contexts]
    emit(rows, args.output, columns=("current", "name", "hub"), wide=("tls-cert",))
    return 0


def context_use(args) -> int:
    from skerry.cli import contexts

    path = contexts.config_path()
    config = contexts.load(path)
    context = config.find(args.name)
    if context is None:
        raise contexts.ContextError(f"no context {args.name!r} in {path}: see skerry context list")
    contexts.save(path, config.with_context(context))
    print(f"current context: {args.name}", file=sys.stderr)
    return 0


def context_delete(args) -> int:
    from skerry.cli import contexts

    path = contexts.config_path()
    config = contexts.load(path)
    if config.find(args.name) is None:
        raise contexts.ContextError(f"no context {args.name!r} in {path}: see skerry context list")
    contexts.save(path, config.without(args.name))
    return 0
