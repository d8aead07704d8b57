"""Where a client command finds its hub: flags, then ``SKERRY_*`` variables, then the current context.

Why: an operator types ``--hub --tls-ca --tls-cert --tls-key`` once, in ``skerry login``, as with
``argocd login`` / kubeconfig contexts. The contexts file is
``$XDG_CONFIG_HOME/skerry/config.yaml`` (default ``~/.config/skerry/config.yaml``)::

    current-context: prod
    contexts:
      - name: prod
        hub: hub.example:7440
        tls-ca: /home/me/.config/skerry/contexts/prod/ca.crt
        tls-cert: /home/me/.config/skerry/contexts/prod/tls.crt
        tls-key: /home/me/.config/skerry/contexts/prod/tls.key

Each field is resolved on its own, first found wins: the flag (``--hub``, ``--tls-ca``,
``--tls-cert``, ``--tls-key``), the variable (``SKERRY_HUB``, ``SKERRY_TLS_CA``,
``SKERRY_TLS_CERT``, ``SKERRY_TLS_KEY``), the context named by ``SKERRY_CONTEXT`` or else the
file's ``current-context``. (The hub server's own settings are ``SKERRY_HUB_*``.)
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping

# The file is written by `skerry login`; anything larger was not.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_CONTEXTS = 1000
FIELDS = ("hub", "tls-ca", "tls-cert", "tls-key")
ENV = {"hub": "SKERRY_HUB", "tls-ca": "SKERRY_TLS_CA", "tls-cert": "SKERRY_TLS_CERT", "tls-key": "SKERRY_TLS_KEY"}
FLAG = {"hub": "--hub", "tls-ca": "--tls-ca", "tls-cert": "--tls-cert", "tls-key": "--tls-key"}
CONTEXT_ENV = "SKERRY_CONTEXT"


class ContextError(Exception):
    """The contexts file or a context is unusable; the message names the file or the context."""


@dataclasses.dataclass(frozen=True)
class Context:
    name: str
    hub: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    def get(self, field: str) -> str:
        return getattr(self, field.replace("-", "_"))

    def as_dict(self) -> dict:
        return {"name": self.name, **{f: self.get(f) for f in FIELDS}}


@dataclasses.dataclass(frozen=True)
class Config:
    current: str = ""
    contexts: tuple[Context, ...] = ()

    def find(self, name: str) -> Context | None:
        return next((c for c in self.contexts if c.name == name), None)

    def with_context(self, context: Context, *, use: bool = True) -> Config:
        others = tuple(c for c in self.contexts if c.name != context.name)
        return Config(current=context.name if use else self.current, contexts=(*others, context))

    def without(self, name: str) -> Config:
        return Config(current="" if self.current == name else self.current,
                      contexts=tuple(c for c in self.contexts if c.name != name))


@dataclasses.dataclass(frozen=True)
class HubTarget:
    """A resolved hub connection and, per field, where it came from (flag, variable or context)."""

    address: str
    tls_ca: pathlib.Path
    tls_cert: pathlib.Path
    tls_key: pathlib.Path
    sources: Mapping[str, str]

    @property
    def tls_files(self):
        from skerry.core.tls import TlsFiles

        return TlsFiles(ca=self.tls_ca, cert=self.tls_cert, key=self.tls_key)


def config_dir(environ: Mapping[str, str] | None = None) -> pathlib.Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(pathlib.Path(env.get("HOME") or pathlib.Path.home()) / ".config")
    return pathlib.Path(base) / "skerry"


def config_path(environ: Mapping[str, str] | None = None) -> pathlib.Path:
    return config_dir(environ) / "config.yaml"


def load(path: pathlib.Path) -> Config:
    """The contexts in ``path`` (none if there is no file yet); ``ContextError`` names the file."""
    from skerry.core import documents
    from skerry.core.errors import InvalidInput
    from skerry.core.files import read_bounded_if_present

    try:
        data = read_bounded_if_present(path, MAX_CONFIG_BYTES, f"contexts file {path}")
    except InvalidInput as e:
        raise ContextError(str(e)) from e
    if data is None:
        return Config()
    try:
        doc = documents.load_yaml(data, max_bytes=MAX_CONFIG_BYTES) or {}
    except documents.BadDocument as e:
        raise ContextError(f"{path}: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("contexts", []), list):
        raise ContextError(f"{path}: expected a mapping with a contexts list")
    items = doc.get("contexts") or []
    if len(items) > MAX_CONTEXTS:
        raise ContextError(f"{path}: more than {MAX_CONTEXTS} contexts")
    contexts = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ContextError(f"{path}: contexts[{i}] needs a name")
        contexts.append(Context(name=item["name"], **{f.replace("-", "_"): str(item.get(f) or "") for f in FIELDS}))
    return Config(current=str(doc.get("current-context") or ""), contexts=tuple(contexts))


def save(path: pathlib.Path, config: Config) -> None:
    from skerry.core import documents
    from skerry.core.files import atomic_write, ensure_dir

    ensure_dir(path.parent)
    doc = {"current-context": config.current, "contexts": [c.as_dict() for c in config.contexts]}
    atomic_write(path, documents.dump_yaml(doc, sort_keys=False).encode(), 0o600)


def resolve_hub(flags: Mapping[str, object], environ: Mapping[str, str] | None = None) -> HubTarget:
    """The hub connection from ``flags`` (``hub``, ``tls_ca``, ``tls_cert``, ``tls_key``), env, context."""
    env = os.environ if environ is None else environ
    path = config_path(env)
    context: Context | None = None
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for field in FIELDS:
        flag = flags.get(field.replace("-", "_"))
        if flag:
            values[field], sources[field] = str(flag), f"flag {FLAG[field]}"
        elif env.get(ENV[field]):
            values[field], sources[field] = env[ENV[field]], f"${ENV[field]}"
    missing = [f for f in FIELDS if f not in values]
    if missing:
        config = load(path)
        name = env.get(CONTEXT_ENV) or config.current
        if name:
            context = config.find(name)
            if context is None:
                where = f"${CONTEXT_ENV}" if env.get(CONTEXT_ENV) else f"current-context in {path}"
                raise ContextError(f"context {name!r} ({where}) is not in {path}: see skerry context list")
            for field in missing:
                if context.get(field):
                    values[field], sources[field] = context.get(field), f"context {context.name}"
    still = [f for f in FIELDS if f not in values]
    if still:
        flags_text = " ".join(FLAG[f] for f in still)
        raise ContextError(f"no {', '.join(still)} for the hub: give {flags_text}, set "
                           f"{', '.join('$' + ENV[f] for f in still)}, or run skerry login")
    return HubTarget(values["hub"], pathlib.Path(values["tls-ca"]), pathlib.Path(values["tls-cert"]),
                     pathlib.Path(values["tls-key"]), sources)


def add_hub_flags(parser) -> None:
    """``--hub --tls-ca --tls-cert --tls-key``, each optional: see the module docstring for the fallbacks."""
    parser.add_argument("--hub", metavar="HOST:PORT", help="the hub's gRPC address (else $SKERRY_HUB, else the context)")
    parser.add_argument("--tls-ca", type=pathlib.Path, metavar="FILE",
                        help="CA bundle that signs the hub (else $SKERRY_TLS_CA, else the context)")
    parser.add_argument("--tls-cert", type=pathlib.Path, metavar="FILE",
                        help="your operator certificate (else $SKERRY_TLS_CERT, else the context)")
    parser.add_argument("--tls-key", type=pathlib.Path, metavar="FILE",
                        help="its private key (else $SKERRY_TLS_KEY, else the context)")


def call_hub(args, stub_class, call):
    """``call(stub)`` on a channel to the hub ``args`` resolve to (flags, variables, context); a gRPC
    error becomes the Skerry error naming the hub (one line through the error wrapper)."""
    import grpc

    from skerry.core.client import secure_channel
    from skerry.core.rpc import error_from_rpc

    target = resolve_hub(vars(args))
    with secure_channel(target.address, target.tls_files) as channel:
        try:
            return call(stub_class(channel))
        except grpc.RpcError as e:
            raise error_from_rpc(e, target.address) from None
