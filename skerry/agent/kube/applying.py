"""Server-side apply: the one write the agent makes to its objects, and what it did.

``apply`` sends ``application/apply-patch+yaml`` with field manager
``skerry`` under the conflict policy "force, but say whom from" and says
whether the object was created, configured or left unchanged — without a
GET when the caller hands back the digest of its last apply
(``drift.applied_state_digest``). ``apply_status`` writes a status
subresource the same way. ``ApplyVerbs`` is mixed into ``KubeClient``
over ``client.KubeConnection``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from skerry.agent.kube.errors import conflicting_managers
from skerry.agent.kube.objects import apply_body, comparable, describe_object
from skerry.agent.reasons import CONFLICT, INVALID
from skerry.agent.reconcile.drift import applied_state_digest
from skerry.core.errors import KubeError

CREATED, CONFIGURED, UNCHANGED = "created", "configured", "unchanged"

APPLY_PATCH = "application/apply-patch+yaml"


@dataclasses.dataclass(frozen=True)
class ApplyResult:
    """What a server-side apply did; the object body is deliberately not kept (it may be a Secret).

    ``conflicts`` names the other field managers whose fields this apply took
    over (``kubectl: .spec.replicas``): the first apply is sent without
    ``force``; only when the API server answers with a conflict is it repeated
    with ``force`` and the conflict reported.
    """

    action: str  # created | configured | unchanged
    resource_version: str
    conflicts: tuple[str, ...] = ()
    live: dict | None = None  # the object as stored (dry-run: as it would be); never logged
    digest: str = ""  # ``drift.applied_state_digest``: pass it back as ``previous_digest``


@dataclasses.dataclass(frozen=True)
class _Known:
    """What the caller knew before the apply: how ``created/configured/unchanged`` is told apart."""

    previous_digest: str | None
    before: dict | None
    dry_run: bool
    assume_new: bool


def _action(status: int, known: _Known, after: dict, digest: str, conflicts, ignore: tuple[str, ...]) -> str:
    fresh = known.previous_digest is None and known.before is None
    if status == 201 or (fresh and not known.dry_run and not known.assume_new):
        return CREATED
    if known.assume_new and fresh:
        return CONFIGURED
    if known.before is not None:
        return UNCHANGED if comparable(known.before, ignore) == comparable(after, ignore) else CONFIGURED
    if conflicts:
        return CONFIGURED  # it took fields back from another manager
    return UNCHANGED if digest == known.previous_digest else CONFIGURED


class ApplyVerbs:
    """Server-side apply of objects and of status subresources (a ``KubeConnection`` mixin)."""

    def apply(
        self,
        obj: Mapping[str, Any],
        *,
        field_manager: str = "skerry",
        force: bool = True,
        ignore_annotations: Iterable[str] = (),
        previous_digest: str | None = None,
        dry_run: bool = False,
        keep_live: bool = False,
        assume_new: bool = False,
    ) -> ApplyResult:
        """Server-side apply ``obj``.

        ``unchanged`` means the live object did not change, or changed only
        in ``ignore_annotations`` (e.g. the bundle digest stamp) and
        server-owned metadata. When the caller passes the ``digest`` of its
        last apply of this object as ``previous_digest`` no GET is made (the
        resourceVersion cannot tell: status writes by controllers bump it).
        Without one, the apply costs one GET first, unless ``assume_new``
        (the caller never applied it): then 201 is ``created`` and 200 (an
        object that existed, now adopted) ``configured``.

        ``force=True`` is the conflict policy "force, but say whom from": the
        apply goes without force first; a 409 conflict is retried with force
        and the other managers are returned in ``conflicts``.
        """
        what = describe_object(obj)
        api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        if not name:
            raise KubeError(f"{what}: metadata.name is required", reason=INVALID)
        resource = self._resource(api_version, kind, what=what)
        namespace = meta.get("namespace") or None
        if resource.namespaced and not namespace:
            raise KubeError(f"{what}: a namespaced {kind} needs metadata.namespace", reason=INVALID)
        if not resource.namespaced:
            namespace = None
        body = apply_body(obj, namespace)
        before = None
        if previous_digest is None and not dry_run and not assume_new:
            before = self._get_raw(resource, name, namespace, what)

        # Encoded once (JSON is YAML): retries and the forced re-send reuse the bytes.
        payload = json.dumps(body, separators=(",", ":")).encode()
        path = resource.path(name=name, namespace=namespace)

        def send(forced: bool):
            query = [("fieldManager", field_manager), ("force", forced)]
            if dry_run:
                query.append(("dryRun", "All"))
            return self._send("PATCH", path, query, payload, APPLY_PATCH)

        conflicts: tuple[str, ...] = ()
        try:
            status, data = self._call(what, lambda: send(False))
        except KubeError as e:
            if e.reason != CONFLICT or not force:
                raise
            conflicts = conflicting_managers(str(e))
            status, data = self._call(what, lambda: send(True))
        after = json.loads(data)
        ignore = tuple(ignore_annotations)
        digest = applied_state_digest(body, after, field_manager=field_manager, ignore_annotations=ignore)
        known = _Known(previous_digest, before, dry_run, assume_new)
        return ApplyResult(
            action=_action(status, known, after, digest, conflicts, ignore),
            resource_version=str((after.get("metadata") or {}).get("resourceVersion", "")),
            conflicts=conflicts,
            live=after if keep_live else None,
            digest=digest,
        )

    def apply_status(self, obj: Mapping[str, Any], *, field_manager: str = "skerry") -> None:
        """Server-side apply ``obj``'s ``status`` through the status subresource (the object must exist)."""
        what = describe_object(obj) + " status"
        meta = obj.get("metadata") or {}
        resource = self._resource(str(obj.get("apiVersion", "")), str(obj.get("kind", "")), what=what)
        namespace = (meta.get("namespace") or None) if resource.namespaced else None
        body = apply_body(obj, namespace)
        self._request(
            what,
            "server_side_apply",
            resource.subresources["status"],
            body=body,
            name=str(meta.get("name") or ""),
            namespace=namespace,
            field_manager=field_manager,
            force_conflicts=True,
        )
