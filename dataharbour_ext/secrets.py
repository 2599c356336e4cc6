"""Masks secrets in job settings and free text before they reach a response, an event or a log.

Three kinds of secret are recognised:
- a value whose key names a secret (`fs.s3a.secret.key`, `AIRFLOW_PASSWORD`,
  `fs.azure.account.key.<account>`, `...sas.token`, `...oauth2.client.secret`);
- the password of a URL anywhere in a value (`s3://user:pass@host` -> `s3://user:********@host`),
  and the `;token=` parameter of a Spark Connect URL (`sc://host:15002/;token=...`);
- the value of a `-D<property>=<value>` Java option whose property names a secret, inside
  option strings such as `spark.driver.extraJavaOptions` (the rest of the string is kept).
"""

import re

REDACTED = "********"

# Key names that hold a secret (`...oauth2.client.secret` and `...sas.token` match as
# secret and token). `sas` must be a whole part of the name: as a substring it is too common.
SECRET_NAME = re.compile(
    r"secret|password|passwd|token|credential|private|access\.?key|api\.?key|account[._-]?key"
    r"|(?:^|[._-])sas(?:[._-]|$)",
    re.IGNORECASE,
)

# scheme://user:password@host: the password ends at the first character that cannot be in
# the userinfo part of a URL (RFC 3986), so a path or a second URL is left alone.
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:]*:)(?P<password>[^\s/?#@]+)(?=@)")

# sc://host:port/;token=...;user_id=...: the token ends at the next parameter or whitespace.
_CONNECT_TOKEN = re.compile(r"(?P<head>;\s*token\s*=)(?P<token>[^;\s]+)", re.IGNORECASE)

# -Dname=value where the name holds a secret; the value may be quoted.
_JAVA_OPTION = re.compile(r"(?P<head>-D(?P<name>[^\s=]+)=)(?P<value>\"[^\"]*\"|'[^']*'|\S*)")


def is_secret_name(name: str) -> bool:
    return SECRET_NAME.search(name) is not None


def _mask_java_option(match: re.Match) -> str:
    if not is_secret_name(match["name"]) or not match["value"]:
        return match[0]
    return match["head"] + REDACTED


def redact_text(text: str) -> str:
    """`text` with URL passwords and secret `-D` option values masked."""
    text = _URL_PASSWORD.sub(lambda m: m["head"] + REDACTED, text)
    text = _CONNECT_TOKEN.sub(lambda m: m["head"] + REDACTED, text)
    return _JAVA_OPTION.sub(_mask_java_option, text)


def redact_mapping(values: dict[str, str]) -> dict[str, str]:
    """Conf or env with secret values masked: whole values of secret keys, secret parts of others."""
    return {key: REDACTED if is_secret_name(key) else redact_text(value) for key, value in values.items()}
