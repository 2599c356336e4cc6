"""Which CA certificates the object storage's TLS trusts: SSL_CERT_FILE from the server's
environment when set (a MinIO with a private CA), else certifi's, as the minio SDK does."""

import certifi

from dataharbour_ext.services.health.settings import MinioSettings
from dataharbour_ext.services.object_storage import ObjectStorage


def trusted_cas() -> str:
    client = ObjectStorage(MinioSettings("127.0.0.1:9000", True, "key", "secret", "bucket")).client
    return client._http.connection_pool_kw["ca_certs"]  # the SDK's urllib3 PoolManager


def test_ssl_cert_file_names_the_trusted_cas(monkeypatch, tmp_path):
    bundle = tmp_path / "private-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")  # only its name is looked at until a connection
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert trusted_cas() == str(bundle)


def test_without_ssl_cert_file_certifis_cas(monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    assert trusted_cas() == certifi.where()
    monkeypatch.setenv("SSL_CERT_FILE", "")  # set but empty: as unset
    assert trusted_cas() == certifi.where()
