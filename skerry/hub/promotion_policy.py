"""The ``promotion:`` section of ``skerry.yaml``: what an app is, and the rules of each environment.

A pure parser, called by ``skerry.hub.fleet.parse_fleet`` (the section is optional; a fleet
without it has no promotable apps). It sits beside the fleet model, below ``skerry.hub.promotion``,
because the fleet file carries it: the fleet parses it, the promotion engine and the hub's
authorisation table read it::

    promotion:
      promoters: [alice, ci]          # mTLS operator names that may Promote / Rollback
                                      # (absent: any skerry:operator)
      apps:
        web:                          # the app: one kustomization per environment
          overlays: {dev: overlays/dev, prod: overlays/prod}
      environments:
        prod:
          soak: 10m                   # every cluster of the *source* env healthy this long
          approvals: 2                # k of the n approvers below must approve
          approvers: [alice, bob, carol]
          autoRollback: true          # revert by commit if prod turns unhealthy within its soak
          freezes:                    # change windows that forbid promotions *into* prod (UTC)
            - {name: weekend, days: [sat, sun]}
            - {name: night, start: "22:00", end: "06:00"}

``soak`` is read on the environment a promotion comes *from* (dev's soak gates dev -> prod),
``approvals``/``freezes`` on the environment it goes *to*. Freight is the ``images:`` list of the
app's kustomization in each overlay. Errors are ``ConfigError`` naming the field, like the rest
of ``skerry.yaml``; unknown keys are errors.

Trust note: the policy lives in Git, so whoever may push to the branch may change who approves.
Protect the branch (required reviews) as you would for any GitOps repository.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
import types
from collections.abc import Mapping
from typing import Any

from skerry.core.duration import parse_duration
from skerry.core.errors import ConfigError
from skerry.hub import fields

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_APPS = 10_000  # bounds what one skerry.yaml makes the hub hold per commit
MAX_APPROVERS = 256
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_IDENTITY = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.@]{0,127}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

_SECTION = fields.Section("promotion")
_fail, _mapping, _check_path = _SECTION.fail, _SECTION.mapping, _SECTION.path


@dataclasses.dataclass(frozen=True)
class Freeze:
    """A window in which promotions into an environment are forbidden (UTC)."""

    name: str
    days: tuple[str, ...] = ()  # empty: every day
    start: str = ""  # "HH:MM"; empty with end empty: the whole day
    end: str = ""

    def covers(self, when: _dt.datetime) -> bool:
        when = when.astimezone(_dt.UTC)
        day = DAYS[when.weekday()]
        if not self.start:
            return not self.days or day in self.days
        now = when.strftime("%H:%M")
        if self.start <= self.end:
            return (not self.days or day in self.days) and self.start <= now < self.end
        # over midnight: the part after midnight belongs to the day the window started
        if now >= self.start:
            return not self.days or day in self.days
        if now < self.end:
            yesterday = DAYS[(when.weekday() - 1) % 7]
            return not self.days or yesterday in self.days
        return False

    def describe(self) -> str:
        days = ",".join(self.days) if self.days else "every day"
        hours = f" {self.start}-{self.end} UTC" if self.start else ""
        return f"freeze {self.name!r} ({days}{hours})"


@dataclasses.dataclass(frozen=True)
class EnvironmentRules:
    soak_seconds: float = 0.0
    approvals: int = 0
    approvers: tuple[str, ...] = ()
    auto_rollback: bool = False
    freezes: tuple[Freeze, ...] = ()

    @property
    def protected(self) -> bool:
        return self.approvals > 0


@dataclasses.dataclass(frozen=True)
class App:
    name: str
    overlays: Mapping[str, str]  # environment -> overlay directory with a kustomization


@dataclasses.dataclass(frozen=True)
class PromotionPolicy:
    apps: Mapping[str, App] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))
    environments: Mapping[str, EnvironmentRules] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )
    promoters: tuple[str, ...] | None = None  # None: any operator

    def rules(self, env: str) -> EnvironmentRules:
        return self.environments.get(env, EnvironmentRules())


def _identities(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_APPROVERS:
        raise _fail(field, f"must be a list of at most {MAX_APPROVERS} identity names")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not _IDENTITY.match(name):
            raise _fail(f"{field}[{i}]", f"{name!r} is not an identity name (certificate common name)")
    if len(set(value)) != len(value):
        raise _fail(field, "lists an identity twice")
    return tuple(value)


def _duration(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _fail(field, f"{value!r} is not a duration (e.g. 0, 30s, 10m, 1h30m)")
    try:
        return parse_duration(value, field)
    except ConfigError:
        raise _fail(field, f"{value!r} is not a duration (e.g. 0, 30s, 10m, 1h30m)") from None


def _freeze(value: Any, field: str) -> Freeze:
    f = _mapping(value, field, ("name", "days", "start", "end"))
    name = f.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(f"{field}.name", "is required")
    days = f.get("days") or []
    if not isinstance(days, list) or any(d not in DAYS for d in days):
        raise _fail(f"{field}.days", f"must be a list of {', '.join(DAYS)}")
    start, end = f.get("start", ""), f.get("end", "")
    if bool(start) != bool(end):
        raise _fail(field, "start and end go together")
    for key, v in (("start", start), ("end", end)):
        if v and (not isinstance(v, str) or not _HHMM.match(v)):
            raise _fail(f"{field}.{key}", f"{v!r} is not HH:MM (quote it)")
    if start and start == end:
        raise _fail(field, "start equals end (leave both out for the whole day)")
    return Freeze(name=name, days=tuple(days), start=start, end=end)


def parse_promotion(raw: Any, environments: tuple[str, ...]) -> PromotionPolicy:
    """The ``promotion:`` section (None: absent) checked against the fleet's ``environments``."""
    if raw is None:
        return PromotionPolicy()
    top = _mapping(raw, "", ("apps", "environments", "promoters"))
    known = set(environments)

    def env_name(name: Any, field: str) -> str:
        if name not in known:
            raise _fail(field, f"{name!r} is not in environments ({', '.join(environments) or 'none'})")
        return name

    apps: dict[str, App] = {}
    raw_apps = top.get("apps") or {}
    if not isinstance(raw_apps, dict) or len(raw_apps) > MAX_APPS:
        raise _fail("apps", f"must be a mapping of at most {MAX_APPS} apps")
    for name, body in raw_apps.items():
        field = f"apps.{name}"
        if not isinstance(name, str) or not _NAME.match(name) or len(name) > 63:
            raise _fail(field, f"{name!r} must be a DNS-1123 label")
        entry = _mapping(body, field, ("overlays",))
        overlays = entry.get("overlays")
        if not isinstance(overlays, dict) or not overlays:
            raise _fail(f"{field}.overlays", "must map each environment to its overlay directory")
        checked = {
            env_name(env, f"{field}.overlays.{env}"): _check_path(path, f"{field}.overlays.{env}")
            for env, path in overlays.items()
        }
        apps[name] = App(name=name, overlays=types.MappingProxyType(checked))

    rules: dict[str, EnvironmentRules] = {}
    raw_envs = top.get("environments") or {}
    if not isinstance(raw_envs, dict):
        raise _fail("environments", "must be a mapping of environment to rules")
    for env, body in raw_envs.items():
        field = f"environments.{env}"
        env_name(env, field)
        e = _mapping(body or {}, field, ("soak", "approvals", "approvers", "autoRollback", "freezes"))
        approvers = _identities(e.get("approvers", []), f"{field}.approvers")
        k = e.get("approvals", 0)
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise _fail(f"{field}.approvals", f"{k!r} must be a whole number >= 0")
        if k > len(approvers):
            raise _fail(f"{field}.approvals", f"needs {k} approvals but lists only {len(approvers)} approvers")
        auto = e.get("autoRollback", False)
        if not isinstance(auto, bool):
            raise _fail(f"{field}.autoRollback", "must be true or false")
        freezes = e.get("freezes") or []
        if not isinstance(freezes, list):
            raise _fail(f"{field}.freezes", "must be a list")
        rules[env] = EnvironmentRules(
            soak_seconds=_duration(e.get("soak", 0), f"{field}.soak"),
            approvals=k,
            approvers=approvers,
            auto_rollback=auto,
            freezes=tuple(_freeze(f, f"{field}.freezes[{i}]") for i, f in enumerate(freezes)),
        )

    promoters = None
    if "promoters" in top:
        promoters = _identities(top["promoters"], "promoters")
    return PromotionPolicy(
        apps=types.MappingProxyType(apps), environments=types.MappingProxyType(rules), promoters=promoters
    )
