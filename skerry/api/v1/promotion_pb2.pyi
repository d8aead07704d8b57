from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Rules(_message.Message):
    __slots__ = ("soak_seconds", "approvals", "approvers", "auto_rollback", "freezes")
    SOAK_SECONDS_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    APPROVERS_FIELD_NUMBER: _ClassVar[int]
    AUTO_ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    FREEZES_FIELD_NUMBER: _ClassVar[int]
    soak_seconds: float
    approvals: int
    approvers: _containers.RepeatedScalarFieldContainer[str]
    auto_rollback: bool
    freezes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, soak_seconds: _Optional[float] = ..., approvals: _Optional[int] = ..., approvers: _Optional[_Iterable[str]] = ..., auto_rollback: _Optional[bool] = ..., freezes: _Optional[_Iterable[str]] = ...) -> None: ...

class Environment(_message.Message):
    __slots__ = ("name", "clusters", "rules")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    name: str
    clusters: _containers.RepeatedScalarFieldContainer[str]
    rules: Rules
    def __init__(self, name: _Optional[str] = ..., clusters: _Optional[_Iterable[str]] = ..., rules: _Optional[_Union[Rules, _Mapping]] = ...) -> None: ...

class ListEnvironmentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListEnvironmentsResponse(_message.Message):
    __slots__ = ("environments", "apps", "revision")
    ENVIRONMENTS_FIELD_NUMBER: _ClassVar[int]
    APPS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    environments: _containers.RepeatedCompositeFieldContainer[Environment]
    apps: _containers.RepeatedScalarFieldContainer[str]
    revision: str
    def __init__(self, environments: _Optional[_Iterable[_Union[Environment, _Mapping]]] = ..., apps: _Optional[_Iterable[str]] = ..., revision: _Optional[str] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("name", "new_name", "new_tag", "digest", "reference")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    NEW_TAG_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    new_name: str
    new_tag: str
    digest: str
    reference: str
    def __init__(self, name: _Optional[str] = ..., new_name: _Optional[str] = ..., new_tag: _Optional[str] = ..., digest: _Optional[str] = ..., reference: _Optional[str] = ...) -> None: ...

class ClusterHealth(_message.Message):
    __slots__ = ("cluster", "desired_digest", "desired_revision", "applied_digest", "ready", "reason", "healthy_since_unix_ms", "reported", "signed", "desired_release", "applied_release")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    DESIRED_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DESIRED_REVISION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_DIGEST_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_SINCE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    REPORTED_FIELD_NUMBER: _ClassVar[int]
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    DESIRED_RELEASE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_RELEASE_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    desired_digest: str
    desired_revision: str
    applied_digest: str
    ready: bool
    reason: str
    healthy_since_unix_ms: int
    reported: bool
    signed: bool
    desired_release: str
    applied_release: str
    def __init__(self, cluster: _Optional[str] = ..., desired_digest: _Optional[str] = ..., desired_revision: _Optional[str] = ..., applied_digest: _Optional[str] = ..., ready: _Optional[bool] = ..., reason: _Optional[str] = ..., healthy_since_unix_ms: _Optional[int] = ..., reported: _Optional[bool] = ..., signed: _Optional[bool] = ..., desired_release: _Optional[str] = ..., applied_release: _Optional[str] = ...) -> None: ...

class GetFreightRequest(_message.Message):
    __slots__ = ("app", "env")
    APP_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    app: str
    env: str
    def __init__(self, app: _Optional[str] = ..., env: _Optional[str] = ...) -> None: ...

class Freight(_message.Message):
    __slots__ = ("app", "env", "overlay", "images", "revision", "clusters", "healthy")
    APP_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    app: str
    env: str
    overlay: str
    images: _containers.RepeatedCompositeFieldContainer[Image]
    revision: str
    clusters: _containers.RepeatedCompositeFieldContainer[ClusterHealth]
    healthy: bool
    def __init__(self, app: _Optional[str] = ..., env: _Optional[str] = ..., overlay: _Optional[str] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., revision: _Optional[str] = ..., clusters: _Optional[_Iterable[_Union[ClusterHealth, _Mapping]]] = ..., healthy: _Optional[bool] = ...) -> None: ...

class ImageChange(_message.Message):
    __slots__ = ("name", "before", "after")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    name: str
    before: str
    after: str
    def __init__(self, name: _Optional[str] = ..., before: _Optional[str] = ..., after: _Optional[str] = ...) -> None: ...

class Gate(_message.Message):
    __slots__ = ("name", "passed", "message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    passed: bool
    message: str
    def __init__(self, name: _Optional[str] = ..., passed: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class DiffRequest(_message.Message):
    __slots__ = ("app", "from_env", "to_env")
    APP_FIELD_NUMBER: _ClassVar[int]
    FROM_ENV_FIELD_NUMBER: _ClassVar[int]
    TO_ENV_FIELD_NUMBER: _ClassVar[int]
    app: str
    from_env: str
    to_env: str
    def __init__(self, app: _Optional[str] = ..., from_env: _Optional[str] = ..., to_env: _Optional[str] = ...) -> None: ...

class DiffResponse(_message.Message):
    __slots__ = ("from_freight", "to_freight", "changes", "gates")
    FROM_FREIGHT_FIELD_NUMBER: _ClassVar[int]
    TO_FREIGHT_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    from_freight: Freight
    to_freight: Freight
    changes: _containers.RepeatedCompositeFieldContainer[ImageChange]
    gates: _containers.RepeatedCompositeFieldContainer[Gate]
    def __init__(self, from_freight: _Optional[_Union[Freight, _Mapping]] = ..., to_freight: _Optional[_Union[Freight, _Mapping]] = ..., changes: _Optional[_Iterable[_Union[ImageChange, _Mapping]]] = ..., gates: _Optional[_Iterable[_Union[Gate, _Mapping]]] = ...) -> None: ...

class PromoteRequest(_message.Message):
    __slots__ = ("app", "from_env", "to_env", "approve", "branch", "dry_run")
    APP_FIELD_NUMBER: _ClassVar[int]
    FROM_ENV_FIELD_NUMBER: _ClassVar[int]
    TO_ENV_FIELD_NUMBER: _ClassVar[int]
    APPROVE_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    app: str
    from_env: str
    to_env: str
    approve: bool
    branch: str
    dry_run: bool
    def __init__(self, app: _Optional[str] = ..., from_env: _Optional[str] = ..., to_env: _Optional[str] = ..., approve: _Optional[bool] = ..., branch: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("app", "env", "to_revision")
    APP_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    TO_REVISION_FIELD_NUMBER: _ClassVar[int]
    app: str
    env: str
    to_revision: str
    def __init__(self, app: _Optional[str] = ..., env: _Optional[str] = ..., to_revision: _Optional[str] = ...) -> None: ...

class WatchPromotionRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ClusterProgress(_message.Message):
    __slots__ = ("cluster", "state", "target_digest", "applied_digest", "message", "target_release", "applied_release")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TARGET_DIGEST_FIELD_NUMBER: _ClassVar[int]
    APPLIED_DIGEST_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TARGET_RELEASE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_RELEASE_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    state: str
    target_digest: str
    applied_digest: str
    message: str
    target_release: str
    applied_release: str
    def __init__(self, cluster: _Optional[str] = ..., state: _Optional[str] = ..., target_digest: _Optional[str] = ..., applied_digest: _Optional[str] = ..., message: _Optional[str] = ..., target_release: _Optional[str] = ..., applied_release: _Optional[str] = ...) -> None: ...

class Promotion(_message.Message):
    __slots__ = ("id", "app", "from_env", "to_env", "kind", "state", "commit", "branch", "gates", "changes", "clusters", "approved_by", "requested_by", "message", "rollback_commit", "updated_unix_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    FROM_ENV_FIELD_NUMBER: _ClassVar[int]
    TO_ENV_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    APPROVED_BY_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_COMMIT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    app: str
    from_env: str
    to_env: str
    kind: str
    state: str
    commit: str
    branch: str
    gates: _containers.RepeatedCompositeFieldContainer[Gate]
    changes: _containers.RepeatedCompositeFieldContainer[ImageChange]
    clusters: _containers.RepeatedCompositeFieldContainer[ClusterProgress]
    approved_by: _containers.RepeatedScalarFieldContainer[str]
    requested_by: str
    message: str
    rollback_commit: str
    updated_unix_ms: int
    def __init__(self, id: _Optional[str] = ..., app: _Optional[str] = ..., from_env: _Optional[str] = ..., to_env: _Optional[str] = ..., kind: _Optional[str] = ..., state: _Optional[str] = ..., commit: _Optional[str] = ..., branch: _Optional[str] = ..., gates: _Optional[_Iterable[_Union[Gate, _Mapping]]] = ..., changes: _Optional[_Iterable[_Union[ImageChange, _Mapping]]] = ..., clusters: _Optional[_Iterable[_Union[ClusterProgress, _Mapping]]] = ..., approved_by: _Optional[_Iterable[str]] = ..., requested_by: _Optional[str] = ..., message: _Optional[str] = ..., rollback_commit: _Optional[str] = ..., updated_unix_ms: _Optional[int] = ...) -> None: ...
