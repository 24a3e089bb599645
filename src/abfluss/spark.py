"""A Spark session for running the detections on Apache Spark (``--engine pyspark``).

Locally this starts Spark in-process (``local[2]``). On a cluster, name its master
(``abfluss analyze --engine pyspark --spark-master spark://host:7077``, or ``SPARK_MASTER``; a
Spark Connect server via ``SPARK_REMOTE``) and the same code runs there, reading the same Parquet;
further Spark settings (executor memory, object store credentials) come from the usual
``PYSPARK_SUBMIT_ARGS`` or ``spark-defaults.conf`` (docs/scale.md).
Spark works in UTC here, like the rest of abfluss, so hour and day buckets agree with DuckDB.
"""

from __future__ import annotations

import os

from .errors import AbflussError

_session = None


def session():
    """The shared SparkSession (created on first use)."""
    global _session
    if _session is not None:
        return _session
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise AbflussError("the pyspark engine needs Spark: pip install 'abfluss[spark]' "
                           "and a Java runtime (apt-get install default-jre-headless)") from None
    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
    builder = (SparkSession.builder.appName("abfluss")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", os.environ.get("ABFLUSS_SPARK_PARTITIONS", "4"))
               .config("spark.ui.enabled", "false")
               .config("spark.driver.memory", os.environ.get("ABFLUSS_SPARK_MEMORY", "2g"))
               .config("spark.sql.ansi.enabled", "false"))
    if os.environ.get("SPARK_MASTER"):
        builder = builder.master(os.environ["SPARK_MASTER"])
    elif not os.environ.get("SPARK_REMOTE"):
        builder = builder.master("local[2]")
    try:
        _session = builder.getOrCreate()
    except Exception as e:  # no Java runtime, no free port ...
        raise AbflussError(f"cannot start Spark: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    _session.sparkContext.setLogLevel("ERROR")
    return _session
