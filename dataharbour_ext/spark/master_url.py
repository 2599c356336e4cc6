"""Spark master URLs as spark-submit accepts them, checked before a cluster is registered.

    spark://HOST:PORT[,HOST:PORT...]   a standalone master (several: high availability)
    k8s://[https://|http://]HOST[:PORT][/PATH]   a Kubernetes API server
    yarn                               YARN (found through HADOOP_CONF_DIR / YARN_CONF_DIR)
    local, local[N], local[*], local[N,F], local[*,F]   Spark inside the driver

Only the syntax is checked here; a spark:// master is probed by the cluster service.
"""

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

LOCAL = re.compile(r"local(\[(?P<threads>\d+|\*)(,\d+)?\])?")
HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>\d{1,5})")
K8S_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")
EXPECTED = "spark://HOST:PORT, k8s://https://HOST[:PORT], yarn or local[N]"


@dataclass(frozen=True)
class MasterAddress:
    """A spark:// master's host and port."""

    host: str  # without brackets for IPv6
    port: int


def check_master_url(url: str) -> str:
    """`url` if spark-submit can use it as --master; ValueError saying why not otherwise."""
    if not isinstance(url, str) or not url or url != url.strip() or any(ch.isspace() for ch in url):
        raise ValueError(f"must be {EXPECTED} without spaces")
    scheme = url.split("://", 1)[0].lower() if "://" in url else None
    if scheme == "spark":
        spark_master_addresses(url)
    elif scheme == "k8s":
        _check_k8s(url)
    elif scheme is None and url == "yarn":
        pass
    elif scheme is None and (local := LOCAL.fullmatch(url)):
        if local["threads"] not in (None, "*") and int(local["threads"]) == 0:
            raise ValueError("local[N] needs at least 1 thread: Spark refuses local[0]")
    else:
        raise ValueError(f"must be {EXPECTED}, not {url[:100]!r}")
    return url


def spark_master_addresses(url: str) -> list[MasterAddress]:
    """The masters a spark:// URL names; ValueError if one lacks a host or a valid port."""
    rest = url.split("://", 1)[1]
    if not rest:
        raise ValueError("spark:// needs HOST:PORT, e.g. spark://127.0.0.1:7077")
    addresses = []
    for part in rest.split(","):
        found = HOST_PORT.fullmatch(part)
        if found is None:
            raise ValueError(f"spark:// needs HOST:PORT for each master, not {part[:100]!r}")
        port = int(found["port"])
        if not 0 < port < 65536:
            raise ValueError(f"port {port} of {part[:100]!r} is not between 1 and 65535")
        addresses.append(MasterAddress(found["host"].strip("[]"), port))
    return addresses


def _check_k8s(url: str) -> None:
    api = url.split("://", 1)[1]
    if "://" not in api:
        api = "https://" + api  # Spark's default for k8s://HOST:PORT
    parts = urlsplit(api)
    if parts.scheme not in ("https", "http"):
        raise ValueError("k8s:// takes an http or https API server address, e.g. k8s://https://HOST:6443")
    host = parts.netloc.rsplit("@", 1)[-1]
    host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if not host or not K8S_HOST.fullmatch(host):
        raise ValueError("k8s:// needs the API server's host, e.g. k8s://https://HOST:6443")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("k8s://: the API server's port is not a number between 1 and 65535") from None
    if port == 0:
        raise ValueError("k8s://: the API server's port is not a number between 1 and 65535")
