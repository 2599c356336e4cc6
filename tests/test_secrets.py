"""Secrets in job conf and env are masked before they reach a response, an event or a log."""

import pytest

from dataharbour_ext.models import redact
from dataharbour_ext.secrets import REDACTED, redact_mapping, redact_text


@pytest.mark.parametrize(
    "key",
    [
        "spark.hadoop.fs.s3a.secret.key",
        "AWS_SECRET_ACCESS_KEY",
        "AIRFLOW_PASSWORD",
        "spark.ssl.keyStorePassword",
        "GITHUB_TOKEN",
        "spark.hadoop.fs.s3a.access.key",
        "spark.hadoop.fs.azure.account.key.mystore.blob.core.windows.net",
        "AZURE_STORAGE_ACCOUNT_KEY",
        "spark.hadoop.google.cloud.auth.service.account.json.credentials.file",
        "spark.hadoop.fs.azure.sas.mycontainer.mystore.blob.core.windows.net",
        "spark.hadoop.fs.azure.sas.token.provider.type",
        "spark.hadoop.fs.azure.account.oauth2.client.secret",
        "spark.hadoop.fs.gs.auth.service.account.private.key",
    ],
)
def test_values_of_secret_keys_are_masked(key):
    assert redact_mapping({key: "hunter2"}) == {key: REDACTED}


@pytest.mark.parametrize(
    "key",
    ["spark.executor.memory", "GREETING", "spark.sql.shuffle.partitions", "spark.hadoop.fs.azure.account.auth.type",
     "spark.sql.sources.partitionOverwriteMode", "PATH"],
)
def test_ordinary_values_are_kept(key):
    assert redact_mapping({key: "4g"}) == {key: "4g"}


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("s3a://AKIA123:s3cr3t@bucket/path", f"s3a://AKIA123:{REDACTED}@bucket/path"),
        ("postgresql://app:pa55@db:5432/x", f"postgresql://app:{REDACTED}@db:5432/x"),
        ("redis://:pa55@cache:6379", f"redis://:{REDACTED}@cache:6379"),
        (
            "primary=http://u:p@a:1,fallback=https://v:q@b:2/x",
            f"primary=http://u:{REDACTED}@a:1,fallback=https://v:{REDACTED}@b:2/x",
        ),
        ("http://host:8080/path@v1", "http://host:8080/path@v1"),  # a port, not a password
        ("http://user@host/x", "http://user@host/x"),  # no password
        ("sc://localhost:15002/;token=abc-DEF_1", f"sc://localhost:15002/;token={REDACTED}"),  # Spark Connect
        ("sc://h:1/;user_id=me;token=t0k;use_ssl=true", f"sc://h:1/;user_id=me;token={REDACTED};use_ssl=true"),
    ],
)
def test_credentials_inside_urls_are_masked(value, masked):
    assert redact_text(value) == masked
    assert redact_mapping({"spark.myapp.endpoint": value}) == {"spark.myapp.endpoint": masked}


@pytest.mark.parametrize(
    ("options", "masked"),
    [
        (
            "-Xmx2g -Djavax.net.ssl.trustStorePassword=changeit -Dfoo=bar",
            f"-Xmx2g -Djavax.net.ssl.trustStorePassword={REDACTED} -Dfoo=bar",
        ),
        ("-Dapp.client.secret=abc123 -verbose", f"-Dapp.client.secret={REDACTED} -verbose"),
        ("-Dvault.token='s p a c e' -Dx=1", f"-Dvault.token={REDACTED} -Dx=1"),
        ('-Ddb.password="a b" -XX:+UseG1GC', f"-Ddb.password={REDACTED} -XX:+UseG1GC"),
        ("-Dlog4j.configurationFile=log4j2.xml -Duser.timezone=UTC", "-Dlog4j.configurationFile=log4j2.xml "
                                                                     "-Duser.timezone=UTC"),
    ],
)
def test_secret_java_options_are_masked_and_the_rest_kept(options, masked):
    assert redact_mapping({"spark.driver.extraJavaOptions": options}) == {"spark.driver.extraJavaOptions": masked}
    assert redact_text(options) == masked


def test_models_redact_is_the_same_masking():
    values = {"spark.hadoop.fs.azure.account.key.x": "k", "spark.x": "s3a://a:b@c", "GREETING": "ahoy"}
    assert redact(values) == redact_mapping(values) == {
        "spark.hadoop.fs.azure.account.key.x": REDACTED,
        "spark.x": f"s3a://a:{REDACTED}@c",
        "GREETING": "ahoy",
    }
