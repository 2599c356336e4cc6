"""Spark's S3A settings for the object storage the seed's MINIO_* variables name.

With them, a run on a cluster whose classpath carries the hadoop-aws jars (and the AWS SDK
bundle they need; the pyspark package alone has neither) reads and writes `s3a://bucket/key`
with no setup of its own. They hold the secret key: they go into a run's owner-only
properties file, never onto a command line, into a response or a log.
"""

from collections.abc import Mapping

from ..services.health.settings import MinioSettings

PREFIX = "spark.hadoop.fs.s3a."
# A job or cluster that names its own endpoint or credentials configures S3 itself: mixing ours
# in would send our credentials to its endpoint, or its credentials to ours.
OWN_CHOICE_NAMES = ("endpoint", "access.key", "secret.key", "session.token", "aws.credentials.provider")
OWN_CHOICE = tuple(PREFIX + name for name in OWN_CHOICE_NAMES)
BUCKET_PREFIX = PREFIX + "bucket."  # per-bucket settings: fs.s3a.bucket.<bucket>.endpoint, ...


def s3a_conf(settings: MinioSettings | None) -> dict[str, str]:
    """The S3A settings for `settings` (empty without object storage)."""
    if settings is None:
        return {}
    scheme = "https" if settings.secure else "http"
    conf = {
        PREFIX + "endpoint": f"{scheme}://{settings.endpoint}",
        PREFIX + "path.style.access": "true",  # MinIO and SeaweedFS serve buckets as paths, not host names
        PREFIX + "connection.ssl.enabled": "true" if settings.secure else "false",
    }
    if settings.access_key:
        conf[PREFIX + "access.key"] = settings.access_key
    if settings.secret_key:
        conf[PREFIX + "secret.key"] = settings.secret_key
    return conf


def s3a_defaults(settings: MinioSettings | None, conf: Mapping[str, str]) -> dict[str, str]:
    """What a run whose Spark conf (the cluster's with the job's on top) is `conf` gets of ours:
    nothing if it names its own endpoint or credentials, else every key it does not set."""
    if any(key in conf for key in OWN_CHOICE) or any(_per_bucket_choice(key) for key in conf):
        return {}
    return {key: value for key, value in s3a_conf(settings).items() if key not in conf}


def _per_bucket_choice(key: str) -> bool:
    """`spark.hadoop.fs.s3a.bucket.<b>.endpoint` and the like: S3 configured for some bucket."""
    return key.startswith(BUCKET_PREFIX) and key.endswith(tuple("." + name for name in OWN_CHOICE_NAMES))
