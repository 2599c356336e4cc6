"""Where the pyspark installation (SPARK_HOME) lives, found without importing pyspark."""

import importlib.util
import os
from functools import cache
from pathlib import Path


@cache
def spark_home() -> Path:
    configured = os.environ.get("SPARK_HOME")
    if configured and (Path(configured) / "bin" / "spark-submit").exists():
        return Path(configured)
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise RuntimeError("pyspark is not installed; install it with `pip install pyspark`")
    return Path(spec.origin).parent


def spark_submit() -> str:
    return str(spark_home() / "bin" / "spark-submit")
