"""S3 names and URIs as object storage takes them, and which S3A settings a run gets: the
rules that decide what is refused with a 400 before any request."""

import pytest

from dataharbour_ext.errors import InvalidInput
from dataharbour_ext.services.health.settings import MinioSettings
from dataharbour_ext.services.object_storage import check_bucket, check_key, parse_uri
from dataharbour_ext.spark.s3a_conf import s3a_defaults


def test_uris_keep_question_marks_and_hashes_in_keys():
    assert parse_uri("s3://data/out/q?x=1.csv") == ("data", "out/q?x=1.csv")
    assert parse_uri("s3a://data/a#b.txt") == ("data", "a#b.txt")


@pytest.mark.parametrize("uri", ["s3://data", "s3://data/", "http://data/k", "data/k", "s3:///k", "s3://Data/k"])
def test_what_is_not_an_s3_uri(uri):
    with pytest.raises(InvalidInput):
        parse_uri(uri)


@pytest.mark.parametrize("key", ["a/../b", "./a", "a/.", ""])
def test_keys_that_http_would_rewrite_are_refused(key):
    with pytest.raises(InvalidInput):
        check_key(key)


@pytest.mark.parametrize("name", ["ab", "a" * 64, "Upper", "-start", "end-", "a..b", "192.168.1.1"])
def test_bucket_names_follow_s3s_rules(name):
    with pytest.raises(InvalidInput):
        check_bucket(name)
    assert check_bucket("my-data.2024") == "my-data.2024"


def test_a_run_that_configures_s3_itself_gets_none_of_our_settings():
    settings = MinioSettings("127.0.0.1:9000", False, "key", "secret", "bucket")
    ours = s3a_defaults(settings, {})
    assert ours["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9000"
    assert s3a_defaults(settings, {"spark.hadoop.fs.s3a.endpoint": "https://s3.example"}) == {}
    assert s3a_defaults(settings, {"spark.hadoop.fs.s3a.bucket.logs.secret.key": "x"}) == {}
    tuned = s3a_defaults(settings, {"spark.hadoop.fs.s3a.bucket.logs.fast.upload": "true",
                                    "spark.hadoop.fs.s3a.path.style.access": "false"})
    assert "spark.hadoop.fs.s3a.secret.key" in tuned and "spark.hadoop.fs.s3a.path.style.access" not in tuned
