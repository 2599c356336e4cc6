"""Pydantic request/response models, one module per resource. The OpenAPI document is
generated from these."""

from .clusters import (  # noqa: F401
    ClusterInfo,
    ClusterList,
)
from .errors import (  # noqa: F401
    ErrorBody,
)
from .jobs import (  # noqa: F401
    CLUSTER_CONF_KEYS,
    CONF_KEY_PATTERN,
    DEFAULT_CLUSTER_ID,
    DEFAULT_MAX_NAME_LENGTH,
    ENV_NAME_PATTERN,
    MAX_ARG_LENGTH,
    MAX_ARGS,
    MAX_CONF_VALUE_LENGTH,
    MAX_INDEX,
    RESERVED_CONF_KEYS,
    RESERVED_ENV_NAMES,
    TERMINAL_STATES,
    Arg,
    ConfKey,
    ConfValue,
    DeleteQuery,
    EnvName,
    EnvValue,
    Job,
    JobList,
    JobProgress,
    JobQuery,
    JobRun,
    JobSort,
    JobState,
    JobSubmit,
    JobSummary,
    LogLevel,
    LogPage,
    LogQuery,
    ProgressCounts,
    Scalar,
    SparkUi,
    UtcDatetime,
    as_utc,
    redact,
)
