"""``skerry.yaml``: which clusters exist, their labels, and which paths each one gets.

A pure parser (no I/O)::

    apiVersion: skerry.io/v1alpha1
    kind: Fleet
    environments: [dev, prod]          # promotion order
    clusters:
      - name: oslo-dev
        labels: {region: no-oslo, env: dev}
    paths:
      - path: overlays/dev
        selector: {matchLabels: {env: dev}}
      - path: overlays/prod
        selector:
          matchLabels: {env: prod}
          matchExpressions: [{key: region, operator: In, values: [no-oslo]}]

Selectors are Kubernetes label selectors with the same meaning: every
``matchLabels`` pair and every ``matchExpressions`` requirement must hold;
``In``/``NotIn`` need a non-empty ``values``, ``Exists``/``DoesNotExist`` take
none; ``NotIn`` and ``DoesNotExist`` hold for a cluster without the label;
an empty selector ``{}`` selects every cluster. A cluster gets every path
whose selector matches it, in file order; a cluster that matches none is an
error for that cluster only (``Fleet.paths_for``).

Besides selectors, paths can be given per environment and per cluster::

    clusters:
      - name: oslo-prod
        environment: prod              # one of environments (optional)
        labels: {region: no-oslo}
        paths: [clusters/oslo-prod]    # this cluster only, after the rules' paths
    paths:
      - path: apps/shop/overlays/prod
        environments: [prod]           # clusters whose environment is listed
      - path: apps/shop/overlays/{environment}   # one rule for every environment

A rule needs a ``selector``, ``environments`` or both (both must hold). A
path may contain ``{environment}`` (the cluster's environment; a cluster
without one does not match such a rule) and ``{cluster}``. Directories may
be kustomizations or plain YAML directories (see ``render.engine``).
An optional ``promotion:`` section (apps, per-environment soak, approvers,
freezes) is parsed by ``skerry.hub.promotion_policy`` into ``Fleet.promotion``.

Every problem is a ``ConfigError`` naming ``skerry.yaml`` and the field
(``skerry.yaml: clusters[2].name: ...``). Unknown keys are errors, so a typo
never silently selects nothing.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Mapping
from typing import Any

from skerry.core import documents
from skerry.core.errors import NotFound
from skerry.hub import fields
from skerry.hub.promotion_policy import PromotionPolicy, parse_promotion

FLEET_FILE = fields.FLEET_FILE
#: A fleet of 10,000 clusters with labels and paths is about 2 MiB; twice that is still a fleet file.
MAX_FLEET_BYTES = 4 * 1024 * 1024
API_VERSION = "skerry.io/v1alpha1"
KIND = "Fleet"
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

_FILE = fields.Section()  # the fleet's fields stand at the top level of skerry.yaml
_fail, _mapping, _check_path = _FILE.fail, _FILE.mapping, _FILE.path


def is_dns_label(name: str) -> bool:
    return isinstance(name, str) and len(name) <= 63 and bool(_DNS_LABEL.match(name))


def check_label_key(key: Any, field: str) -> str:
    if not isinstance(key, str):
        raise _fail(field, f"label key {documents.clip_repr(key)} must be a string")
    prefix, sep, name = key.rpartition("/")
    if sep and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise _fail(field, f"label key {documents.clip_repr(key)}: prefix must be a DNS subdomain of at most 253 characters")
    if len(name) > 63 or not _LABEL_NAME.match(name):
        raise _fail(
            field,
            f"label key {documents.clip_repr(key)}: name must be at most 63 characters, alphanumeric, '-', '_' or '.', "
            "starting and ending with an alphanumeric character",
        )
    return key


def check_label_value(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise _fail(field, f"label value {documents.clip_repr(value)} must be a string (quote it)")
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        raise _fail(
            field,
            f"label value {documents.clip_repr(value)} must be empty or at most 63 characters, alphanumeric, '-', '_' or '.', "
            "starting and ending with an alphanumeric character",
        )
    return value


@dataclasses.dataclass(frozen=True)
class Requirement:
    """One ``matchExpressions`` entry."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        raise AssertionError(self.operator)  # parse_fleet admits only OPERATORS


@dataclasses.dataclass(frozen=True, eq=True)
class LabelSelector:
    match_labels: Mapping[str, str] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            r.matches(labels) for r in self.match_expressions
        )


@dataclasses.dataclass(frozen=True)
class Cluster:
    name: str
    labels: Mapping[str, str]
    environment: str | None = None
    paths: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class PathRule:
    path: str
    selector: LabelSelector | None
    environments: tuple[str, ...] | None = None

    def path_for(self, cluster: Cluster) -> str | None:
        """The rule's path for ``cluster`` (templates filled in), or None if it does not apply."""
        if self.selector is not None and not self.selector.matches(cluster.labels):
            return None
        if self.environments is not None and cluster.environment not in self.environments:
            return None
        path = self.path
        if "{environment}" in path:
            if cluster.environment is None:
                return None
            path = path.replace("{environment}", cluster.environment)
        return path.replace("{cluster}", cluster.name)


@dataclasses.dataclass(frozen=True)
class Fleet:
    environments: tuple[str, ...]
    clusters: tuple[Cluster, ...]
    paths: tuple[PathRule, ...]
    promotion: PromotionPolicy | None = None  # the ``promotion:`` section; None: not parsed

    @property
    def cluster_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.clusters)

    def cluster(self, name: str) -> Cluster:
        for c in self.clusters:
            if c.name == name:
                return c
        raise NotFound(f"cluster {documents.clip_repr(name)} is not in {FLEET_FILE}")

    def paths_for(self, cluster: str | Cluster) -> tuple[str, ...]:
        """The paths whose selector matches the cluster, in file order; ``ConfigError`` if none."""
        c = cluster if isinstance(cluster, Cluster) else self.cluster(cluster)
        matched = [p for p in (rule.path_for(c) for rule in self.paths) if p is not None]
        found = tuple(dict.fromkeys([*matched, *c.paths]))
        if not found:
            raise _fail(
                f"cluster {documents.clip_repr(c.name)}", "matches no entry in paths (check its labels and the selectors)"
            )
        return found


# --- parsing -----------------------------------------------------------------------------


def _list(value: Any, field: str) -> list:
    if not isinstance(value, list):
        raise _fail(field, f"must be a list, got {fields.type_name(value)}")
    return value


def _field(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _labels(value: Any, field: str) -> Mapping[str, str]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _fail(field, f"must be a mapping of label keys to values, got {fields.type_name(value)}")
    out = {}
    for k, v in value.items():
        out[check_label_key(k, field)] = check_label_value(v, f"{field}.{k}")
    return types.MappingProxyType(out)


def _selector(value: Any, field: str) -> LabelSelector:
    if value is None:
        raise _fail(field, "is required (use {} to select every cluster)")
    sel = _mapping(value, field, ("matchLabels", "matchExpressions"))
    match_labels = _labels(sel.get("matchLabels"), f"{field}.matchLabels")
    exprs = []
    raw_exprs = sel.get("matchExpressions")
    for i, raw in enumerate(_list(raw_exprs if raw_exprs is not None else [], f"{field}.matchExpressions")):
        ef = f"{field}.matchExpressions[{i}]"
        expr = _mapping(raw, ef, ("key", "operator", "values"), ("key", "operator"))
        key = check_label_key(expr["key"], f"{ef}.key")
        op = expr["operator"]
        if op not in OPERATORS:
            raise _fail(f"{ef}.operator", f"{documents.clip_repr(op)} is not one of {', '.join(OPERATORS)}")
        values = expr.get("values")
        values = _list(values if values is not None else [], f"{ef}.values")
        checked = tuple(check_label_value(v, f"{ef}.values[{j}]") for j, v in enumerate(values))
        if op in ("In", "NotIn") and not checked:
            raise _fail(f"{ef}.values", f"must be non-empty for operator {op}")
        if op in ("Exists", "DoesNotExist") and checked:
            raise _fail(f"{ef}.values", f"must be empty for operator {op}")
        exprs.append(Requirement(key=key, operator=op, values=checked))
    return LabelSelector(match_labels=match_labels, match_expressions=tuple(exprs))


def parse_fleet(data: str | bytes | None) -> Fleet:
    """Parse and validate the content of ``skerry.yaml`` (None: the file does not exist)."""
    if data is None:
        raise _fail("", "not found at the repository root")
    try:
        doc = documents.load_yaml(data, max_bytes=MAX_FLEET_BYTES)
    except documents.BadDocument as e:
        raise _fail("", str(e), e.reason) from None
    if doc is None:
        raise _fail("", "is empty")
    top = _mapping(
        doc, "", ("apiVersion", "kind", "environments", "clusters", "paths", "promotion"), ("apiVersion", "kind")
    )
    if top["apiVersion"] != API_VERSION:
        raise _fail("apiVersion", f"must be {API_VERSION!r}, got {documents.clip_repr(top['apiVersion'])}")
    if top["kind"] != KIND:
        raise _fail("kind", f"must be {KIND!r}, got {documents.clip_repr(top['kind'])}")
    environments = _environments(top.get("environments"))
    return Fleet(
        environments=environments,
        clusters=_clusters(top.get("clusters"), environments),
        paths=_path_rules(top.get("paths"), environments),
        promotion=parse_promotion(top.get("promotion"), environments),
    )


def _environments(raw: Any) -> tuple[str, ...]:
    environments: list[str] = []
    for i, env in enumerate(_list(raw if raw is not None else [], "environments")):
        if not is_dns_label(env):
            raise _fail(f"environments[{i}]", f"{documents.clip_repr(env)} must be a DNS-1123 label (lower-case a-z, 0-9, '-')")
        if env in environments:
            raise _fail(f"environments[{i}]", f"duplicate environment {documents.clip_repr(env)}")
        environments.append(env)
    return tuple(environments)


def _clusters(raw: Any, environments: tuple[str, ...]) -> tuple[Cluster, ...]:
    clusters: list[Cluster] = []
    index: dict[str, int] = {}
    for i, item in enumerate(_list(raw if raw is not None else [], "clusters")):
        cf = f"clusters[{i}]"
        entry = _mapping(item, cf, ("name", "labels", "environment", "paths"), ("name",))
        name = entry["name"]
        if not is_dns_label(name):
            raise _fail(
                f"{cf}.name",
                f"{documents.clip_repr(name)} must be a DNS-1123 label (at most 63 lower-case a-z, 0-9 or '-', "
                "starting and ending with a letter or digit)",
            )
        if name in index:
            raise _fail(f"{cf}.name", f"duplicate cluster {documents.clip_repr(name)} (also clusters[{index[name]}])")
        index[name] = i
        env = entry.get("environment")
        if env is not None and env not in environments:
            raise _fail(
                f"{cf}.environment", f"{documents.clip_repr(env)} is not one of environments ({', '.join(environments)})"
            )
        raw_cpaths = entry.get("paths")
        cpaths: list[str] = []
        for j, raw_path in enumerate(_list(raw_cpaths if raw_cpaths is not None else [], f"{cf}.paths")):
            cpath = _check_path(raw_path, f"{cf}.paths[{j}]")
            if cpath in cpaths:
                raise _fail(f"{cf}.paths[{j}]", f"duplicate path {documents.clip_repr(cpath)}")
            cpaths.append(cpath)
        labels = _labels(entry.get("labels"), f"{cf}.labels")
        clusters.append(Cluster(name=name, labels=labels, environment=env, paths=tuple(cpaths)))
    return tuple(clusters)


def _path_rules(raw: Any, environments: tuple[str, ...]) -> tuple[PathRule, ...]:
    rules: list[PathRule] = []
    seen_paths: dict[str, int] = {}
    for i, item in enumerate(_list(raw if raw is not None else [], "paths")):
        pf = f"paths[{i}]"
        entry = _mapping(item, pf, ("path", "selector", "environments"), ("path",))
        path = _check_path(entry["path"], f"{pf}.path")
        if path in seen_paths:
            raise _fail(f"{pf}.path", f"duplicate path {documents.clip_repr(path)} (also paths[{seen_paths[path]}])")
        seen_paths[path] = i
        for part in re.findall(r"\{[^}]*\}", path):
            if part not in ("{environment}", "{cluster}"):
                raise _fail(f"{pf}.path", f"{part} is not a template (use {{environment}} or {{cluster}})")
        envs = None
        if "environments" in entry:
            envs = []
            for j, env in enumerate(_list(entry["environments"], f"{pf}.environments")):
                if env not in environments:
                    raise _fail(f"{pf}.environments[{j}]", f"{documents.clip_repr(env)} is not one of environments")
                envs.append(env)
            envs = tuple(envs)
        if "selector" not in entry and envs is None:
            raise _fail(pf, "needs a selector, environments, or both (use selector: {} for every cluster)")
        selector = _selector(entry["selector"], f"{pf}.selector") if "selector" in entry else None
        rules.append(PathRule(path=path, selector=selector, environments=envs))
    return tuple(rules)
