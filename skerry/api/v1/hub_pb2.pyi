from skerry.api.v1 import bundle_pb2 as _bundle_pb2
from skerry.api.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SyncRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SyncResponse(_message.Message):
    __slots__ = ("commit", "rendered", "published", "errors", "fleet_error", "source_error")
    class ErrorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    RENDERED_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    FLEET_ERROR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ERROR_FIELD_NUMBER: _ClassVar[int]
    commit: str
    rendered: bool
    published: _containers.RepeatedScalarFieldContainer[str]
    errors: _containers.ScalarMap[str, str]
    fleet_error: str
    source_error: str
    def __init__(self, commit: _Optional[str] = ..., rendered: _Optional[bool] = ..., published: _Optional[_Iterable[str]] = ..., errors: _Optional[_Mapping[str, str]] = ..., fleet_error: _Optional[str] = ..., source_error: _Optional[str] = ...) -> None: ...

class WatchBundlesRequest(_message.Message):
    __slots__ = ("cluster", "last_version", "last_digest", "accepts_chunks", "have_blob")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    LAST_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    HAVE_BLOB_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    last_version: int
    last_digest: str
    accepts_chunks: bool
    have_blob: str
    def __init__(self, cluster: _Optional[str] = ..., last_version: _Optional[int] = ..., last_digest: _Optional[str] = ..., accepts_chunks: _Optional[bool] = ..., have_blob: _Optional[str] = ...) -> None: ...

class WatchBundlesResponse(_message.Message):
    __slots__ = ("bundle", "render_error", "chunk", "transfer")
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    RENDER_ERROR_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    bundle: _bundle_pb2.SignedBundle
    render_error: RenderError
    chunk: BundleChunk
    transfer: BlobTransfer
    def __init__(self, bundle: _Optional[_Union[_bundle_pb2.SignedBundle, _Mapping]] = ..., render_error: _Optional[_Union[RenderError, _Mapping]] = ..., chunk: _Optional[_Union[BundleChunk, _Mapping]] = ..., transfer: _Optional[_Union[BlobTransfer, _Mapping]] = ...) -> None: ...

class BlobTransfer(_message.Message):
    __slots__ = ("omitted", "size", "chunks")
    OMITTED_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    omitted: bool
    size: int
    chunks: int
    def __init__(self, omitted: _Optional[bool] = ..., size: _Optional[int] = ..., chunks: _Optional[int] = ...) -> None: ...

class BundleChunk(_message.Message):
    __slots__ = ("digest", "offset", "data")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    digest: str
    offset: int
    data: bytes
    def __init__(self, digest: _Optional[str] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class RenderError(_message.Message):
    __slots__ = ("revision", "message")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    revision: str
    message: str
    def __init__(self, revision: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ObjectStatus(_message.Message):
    __slots__ = ("ref", "action", "message")
    REF_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ref: _common_pb2.ObjectRef
    action: str
    message: str
    def __init__(self, ref: _Optional[_Union[_common_pb2.ObjectRef, _Mapping]] = ..., action: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ClusterStatus(_message.Message):
    __slots__ = ("cluster", "applied_version", "applied_digest", "revision", "conditions", "objects", "agent_version", "observed_unix_ms", "applied_number")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    APPLIED_VERSION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_DIGEST_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_NUMBER_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    applied_version: int
    applied_digest: str
    revision: str
    conditions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Condition]
    objects: _containers.RepeatedCompositeFieldContainer[ObjectStatus]
    agent_version: str
    observed_unix_ms: int
    applied_number: int
    def __init__(self, cluster: _Optional[str] = ..., applied_version: _Optional[int] = ..., applied_digest: _Optional[str] = ..., revision: _Optional[str] = ..., conditions: _Optional[_Iterable[_Union[_common_pb2.Condition, _Mapping]]] = ..., objects: _Optional[_Iterable[_Union[ObjectStatus, _Mapping]]] = ..., agent_version: _Optional[str] = ..., observed_unix_ms: _Optional[int] = ..., applied_number: _Optional[int] = ...) -> None: ...

class ReportStatusRequest(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: ClusterStatus
    def __init__(self, status: _Optional[_Union[ClusterStatus, _Mapping]] = ...) -> None: ...

class ReportStatusResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetFleetStatusRequest(_message.Message):
    __slots__ = ("cluster", "page_size", "page_token")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    page_size: int
    page_token: str
    def __init__(self, cluster: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ClusterView(_message.Message):
    __slots__ = ("cluster", "labels", "paths", "desired_version", "desired_digest", "desired_revision", "desired_objects", "render_error", "reported", "reported_objects_omitted", "desired_release", "applied_release")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    DESIRED_VERSION_FIELD_NUMBER: _ClassVar[int]
    DESIRED_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DESIRED_REVISION_FIELD_NUMBER: _ClassVar[int]
    DESIRED_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    RENDER_ERROR_FIELD_NUMBER: _ClassVar[int]
    REPORTED_FIELD_NUMBER: _ClassVar[int]
    REPORTED_OBJECTS_OMITTED_FIELD_NUMBER: _ClassVar[int]
    DESIRED_RELEASE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_RELEASE_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    labels: _containers.ScalarMap[str, str]
    paths: _containers.RepeatedScalarFieldContainer[str]
    desired_version: int
    desired_digest: str
    desired_revision: str
    desired_objects: int
    render_error: str
    reported: ClusterStatus
    reported_objects_omitted: int
    desired_release: str
    applied_release: str
    def __init__(self, cluster: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., paths: _Optional[_Iterable[str]] = ..., desired_version: _Optional[int] = ..., desired_digest: _Optional[str] = ..., desired_revision: _Optional[str] = ..., desired_objects: _Optional[int] = ..., render_error: _Optional[str] = ..., reported: _Optional[_Union[ClusterStatus, _Mapping]] = ..., reported_objects_omitted: _Optional[int] = ..., desired_release: _Optional[str] = ..., applied_release: _Optional[str] = ...) -> None: ...

class GetFleetStatusResponse(_message.Message):
    __slots__ = ("revision", "clusters", "next_page_token")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    revision: str
    clusters: _containers.RepeatedCompositeFieldContainer[ClusterView]
    next_page_token: str
    def __init__(self, revision: _Optional[str] = ..., clusters: _Optional[_Iterable[_Union[ClusterView, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
