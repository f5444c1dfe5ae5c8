"""The domain's typed values: functions, their versions and aliases (layers: ``layer_model``).

These are plain frozen dataclasses. ``to_doc``/``from_doc`` turn them into the JSON documents
the ``Store`` keeps; the AWS wire shapes are rendered by ``lambdad.api.shapes``.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import uuid
from typing import Any, Self

LATEST = "$LATEST"
#: The version ``PublishVersion(PublishTo=LATEST_PUBLISHED)`` creates and republishes in place.
LATEST_PUBLISHED = "$LATEST.PUBLISHED"


class State(enum.StrEnum):
    """A function version's ``State`` (botocore's ``State`` enum)."""

    PENDING = "Pending"
    ACTIVE = "Active"
    INACTIVE = "Inactive"
    FAILED = "Failed"
    DEACTIVATING = "Deactivating"
    DEACTIVATED = "Deactivated"
    ACTIVE_NON_INVOCABLE = "ActiveNonInvocable"
    DELETING = "Deleting"


class StateReasonCode(enum.StrEnum):
    """``StateReasonCode`` (botocore's ``StateReasonCode`` enum)."""

    IDLE = "Idle"
    CREATING = "Creating"
    RESTORING = "Restoring"
    ENI_LIMIT_EXCEEDED = "EniLimitExceeded"
    INSUFFICIENT_ROLE_PERMISSIONS = "InsufficientRolePermissions"
    INVALID_CONFIGURATION = "InvalidConfiguration"
    INTERNAL_ERROR = "InternalError"
    SUBNET_OUT_OF_IP_ADDRESSES = "SubnetOutOfIPAddresses"
    INVALID_SUBNET = "InvalidSubnet"
    INVALID_SECURITY_GROUP = "InvalidSecurityGroup"
    IMAGE_DELETED = "ImageDeleted"
    IMAGE_ACCESS_DENIED = "ImageAccessDenied"
    INVALID_IMAGE = "InvalidImage"
    KMS_KEY_ACCESS_DENIED = "KMSKeyAccessDenied"
    KMS_KEY_NOT_FOUND = "KMSKeyNotFound"
    INVALID_STATE_KMS_KEY = "InvalidStateKMSKey"
    DISABLED_KMS_KEY = "DisabledKMSKey"
    EFS_IO_ERROR = "EFSIOError"
    EFS_MOUNT_CONNECTIVITY_ERROR = "EFSMountConnectivityError"
    EFS_MOUNT_FAILURE = "EFSMountFailure"
    EFS_MOUNT_TIMEOUT = "EFSMountTimeout"
    INVALID_RUNTIME = "InvalidRuntime"
    INVALID_ZIP_FILE_EXCEPTION = "InvalidZipFileException"
    FUNCTION_ERROR = "FunctionError"
    SERVICE_QUOTA_EXCEEDED_EXCEPTION = "ServiceQuotaExceededException"
    VCPU_LIMIT_EXCEEDED = "VcpuLimitExceeded"
    CAPACITY_PROVIDER_SCALING_LIMIT_EXCEEDED = "CapacityProviderScalingLimitExceeded"
    INSUFFICIENT_CAPACITY = "InsufficientCapacity"
    EC2_REQUEST_LIMIT_EXCEEDED = "EC2RequestLimitExceeded"
    FUNCTION_ERROR_INIT_TIMEOUT = "FunctionError.InitTimeout"
    FUNCTION_ERROR_RUNTIME_INIT_ERROR = "FunctionError.RuntimeInitError"
    FUNCTION_ERROR_EXTENSION_INIT_ERROR = "FunctionError.ExtensionInitError"
    FUNCTION_ERROR_INVALID_ENTRY_POINT = "FunctionError.InvalidEntryPoint"
    FUNCTION_ERROR_INVALID_WORKING_DIRECTORY = "FunctionError.InvalidWorkingDirectory"
    FUNCTION_ERROR_PERMISSION_DENIED = "FunctionError.PermissionDenied"
    FUNCTION_ERROR_TOO_MANY_EXTENSIONS = "FunctionError.TooManyExtensions"
    FUNCTION_ERROR_INIT_RESOURCE_EXHAUSTED = "FunctionError.InitResourceExhausted"
    DISALLOWED_BY_VPC_ENCRYPTION_CONTROL = "DisallowedByVpcEncryptionControl"
    DRAINING_DURABLE_EXECUTIONS = "DrainingDurableExecutions"
    INCOMPATIBLE_ACCELERATOR_INSTANCE_TYPES = "IncompatibleAcceleratorInstanceTypes"
    DEPENDENCY_ERROR = "DependencyError"


class UpdateStatus(enum.StrEnum):
    """``LastUpdateStatus`` (botocore's ``LastUpdateStatus`` enum)."""

    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    IN_PROGRESS = "InProgress"


#: ``(reason code, reason)`` of a function being created, and of an update in progress: AWS
#: answers both with ``Creating`` / "The function is being created.".
CREATING = ("Creating", "The function is being created.")


class UpdateRuntimeOn(enum.StrEnum):
    """PutRuntimeManagementConfig's runtime update modes."""

    AUTO = "Auto"
    FUNCTION_UPDATE = "FunctionUpdate"
    MANUAL = "Manual"


def runtime_version_arn(region: str, runtime: str) -> str:
    """The ARN of the runtime version lambdad runs ``runtime`` on: one per runtime and region,
    shaped like AWS's (``arn:aws:lambda:<region>::runtime:<64 hex digits>``)."""
    digest = hashlib.sha256(f"lambdad-runtime:{runtime}".encode()).hexdigest()
    return f"arn:aws:lambda:{region}::runtime:{digest}"


class LastUpdateStatusReasonCode(enum.StrEnum):
    """``LastUpdateStatusReasonCode`` (botocore's enum of that name)."""

    ENI_LIMIT_EXCEEDED = "EniLimitExceeded"
    INSUFFICIENT_ROLE_PERMISSIONS = "InsufficientRolePermissions"
    INVALID_CONFIGURATION = "InvalidConfiguration"
    INTERNAL_ERROR = "InternalError"
    SUBNET_OUT_OF_IP_ADDRESSES = "SubnetOutOfIPAddresses"
    INVALID_SUBNET = "InvalidSubnet"
    INVALID_SECURITY_GROUP = "InvalidSecurityGroup"
    IMAGE_DELETED = "ImageDeleted"
    IMAGE_ACCESS_DENIED = "ImageAccessDenied"
    INVALID_IMAGE = "InvalidImage"
    KMS_KEY_ACCESS_DENIED = "KMSKeyAccessDenied"
    KMS_KEY_NOT_FOUND = "KMSKeyNotFound"
    INVALID_STATE_KMS_KEY = "InvalidStateKMSKey"
    DISABLED_KMS_KEY = "DisabledKMSKey"
    EFS_IO_ERROR = "EFSIOError"
    EFS_MOUNT_CONNECTIVITY_ERROR = "EFSMountConnectivityError"
    EFS_MOUNT_FAILURE = "EFSMountFailure"
    EFS_MOUNT_TIMEOUT = "EFSMountTimeout"
    INVALID_RUNTIME = "InvalidRuntime"
    INVALID_ZIP_FILE_EXCEPTION = "InvalidZipFileException"
    FUNCTION_ERROR = "FunctionError"
    SERVICE_QUOTA_EXCEEDED_EXCEPTION = "ServiceQuotaExceededException"
    VCPU_LIMIT_EXCEEDED = "VcpuLimitExceeded"
    CAPACITY_PROVIDER_SCALING_LIMIT_EXCEEDED = "CapacityProviderScalingLimitExceeded"
    INSUFFICIENT_CAPACITY = "InsufficientCapacity"
    EC2_REQUEST_LIMIT_EXCEEDED = "EC2RequestLimitExceeded"
    FUNCTION_ERROR_INIT_TIMEOUT = "FunctionError.InitTimeout"
    FUNCTION_ERROR_RUNTIME_INIT_ERROR = "FunctionError.RuntimeInitError"
    FUNCTION_ERROR_EXTENSION_INIT_ERROR = "FunctionError.ExtensionInitError"
    FUNCTION_ERROR_INVALID_ENTRY_POINT = "FunctionError.InvalidEntryPoint"
    FUNCTION_ERROR_INVALID_WORKING_DIRECTORY = "FunctionError.InvalidWorkingDirectory"
    FUNCTION_ERROR_PERMISSION_DENIED = "FunctionError.PermissionDenied"
    FUNCTION_ERROR_TOO_MANY_EXTENSIONS = "FunctionError.TooManyExtensions"
    FUNCTION_ERROR_INIT_RESOURCE_EXHAUSTED = "FunctionError.InitResourceExhausted"
    DISALLOWED_BY_VPC_ENCRYPTION_CONTROL = "DisallowedByVpcEncryptionControl"
    INCOMPATIBLE_ACCELERATOR_INSTANCE_TYPES = "IncompatibleAcceleratorInstanceTypes"
    DEPENDENCY_ERROR = "DependencyError"


def new_revision() -> str:
    return str(uuid.uuid4())


def now_timestamp() -> str:
    """``2020-04-10T19:06:32.563+0000``, the string form of FunctionConfiguration.LastModified."""
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


class Stored:
    """A flat dataclass kept as a store document: its fields, as they are."""

    __slots__ = ()

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = dataclasses.asdict(self)  # type: ignore[call-overload]
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        return cls(**doc)


@dataclasses.dataclass(frozen=True, slots=True)
class LoggingConfig:
    log_format: str = "Text"
    application_log_level: str | None = None
    system_log_level: str | None = None
    log_group: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionLayer:
    """A layer version a function uses, copied when it was attached: deleting the layer
    version later leaves the function (and its content) as it was, as on AWS."""

    arn: str
    code_size: int
    code_key: str
    unzipped_size: int = 0

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | str) -> Self:
        if isinstance(doc, str):  # written before layers were resolved
            return cls(arn=doc, code_size=0, code_key="")
        return cls(**doc)


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionConfig:
    """One version of a function (``$LATEST`` or a published number)."""

    name: str
    version: str
    runtime: str | None
    role: str
    handler: str | None
    code_key: str
    code_sha256: str
    code_size: int
    #: Bytes of the code once unzipped (0: not recorded, read from the blob when needed).
    code_unzipped_size: int = 0
    description: str = ""
    timeout: int = 3
    memory_size: int = 128
    ephemeral_storage: int = 512
    environment: dict[str, str] = dataclasses.field(default_factory=dict)
    #: ``Environment.Variables`` was given (possibly empty): AWS then echoes
    #: ``{"Variables": {}}``; never given, it leaves ``Environment`` out.
    environment_set: bool = False
    architectures: tuple[str, ...] = ("x86_64",)
    package_type: str = "Zip"
    tracing_mode: str = "PassThrough"
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)
    #: In the order the runtime unpacks them into ``/opt`` (later ones win).
    layers: tuple[FunctionLayer, ...] = ()
    dead_letter_target: str | None = None
    kms_key_arn: str | None = None
    snap_start: str = "None"
    last_modified: str = dataclasses.field(default_factory=now_timestamp)
    revision_id: str = dataclasses.field(default_factory=new_revision)
    state: State = State.ACTIVE
    last_update_status: UpdateStatus = UpdateStatus.SUCCESSFUL
    state_reason: str | None = None
    state_reason_code: str | None = None
    last_update_status_reason: str | None = None
    last_update_status_reason_code: str | None = None
    #: A new id on every change of code or configuration of ``$LATEST``, copied into the
    #: versions published from it: PublishVersion publishes when it differs from the newest
    #: version's ("": written before it was kept, compared by content instead).
    content_id: str = ""
    #: PutRuntimeManagementConfig of this version.
    runtime_update_on: UpdateRuntimeOn = UpdateRuntimeOn.AUTO
    #: The runtime version pinned with ``Manual`` (None otherwise).
    runtime_version_arn: str | None = None
    #: ``TenancyConfig.TenantIsolationMode`` (``PER_TENANT``), set at create only; None: off.
    tenant_isolation_mode: str | None = None
    #: ``DurableConfig.ExecutionTimeout`` in seconds; None: not a durable function.
    durable_execution_timeout: int | None = None
    #: ``DurableConfig.RetentionPeriodInDays`` (AWS's default: 30).
    durable_retention_days: int = 30

    @property
    def durable(self) -> bool:
        """Whether the function has a ``DurableConfig`` (its invokes start durable executions)."""
        return self.durable_execution_timeout is not None

    @property
    def settling(self) -> bool:
        """Created or updated, and not yet ``Active`` / ``Successful`` (a SnapStart version
        whose snapshot is being made is not settling: its snapshot decides)."""
        if self.snap_start_on:
            return False
        return self.state is State.PENDING or self.last_update_status is UpdateStatus.IN_PROGRESS

    @property
    def log_group(self) -> str:
        return self.logging.log_group or f"/aws/lambda/{self.name}"

    @property
    def snap_start_on(self) -> bool:
        """A published version made with SnapStart (``OptimizationStatus: On``)."""
        return self.snap_start == "PublishedVersions" and self.version != LATEST

    @property
    def layer_keys(self) -> tuple[str, ...]:
        """The layers' blob keys, in order."""
        return tuple(layer.code_key for layer in self.layers if layer.code_key)

    def evolve(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)

    def to_doc(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["architectures"] = list(self.architectures)
        doc["layers"] = [dataclasses.asdict(layer) for layer in self.layers]
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        fields = dict(doc)
        fields["architectures"] = tuple(fields.get("architectures", ("x86_64",)))
        fields["layers"] = tuple(FunctionLayer.from_doc(d) for d in fields.get("layers", ()))
        fields["logging"] = LoggingConfig(**fields.get("logging", {}))
        fields["state"] = State(fields.get("state", State.ACTIVE))
        fields["last_update_status"] = UpdateStatus(
            fields.get("last_update_status", UpdateStatus.SUCCESSFUL)
        )
        fields["runtime_update_on"] = UpdateRuntimeOn(
            fields.get("runtime_update_on", UpdateRuntimeOn.AUTO)
        )
        return cls(**fields)


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionRecord(Stored):
    """What belongs to the function as a whole rather than to one version."""

    name: str
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    last_version: int = 0
    created: str = dataclasses.field(default_factory=now_timestamp)


@dataclasses.dataclass(frozen=True, slots=True)
class Alias(Stored):
    function_name: str
    name: str
    function_version: str
    description: str = ""
    #: Additional version -> weight (0.0 - 1.0): RoutingConfig.AdditionalVersionWeights.
    weights: dict[str, float] = dataclasses.field(default_factory=dict)
    revision_id: str = dataclasses.field(default_factory=new_revision)
