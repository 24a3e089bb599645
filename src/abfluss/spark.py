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
from contextlib import contextmanager

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


def connect():
    """An Ibis connection to the shared session that computes a query's shared parts once.

    Ibis writes a part of a query that is used more than once (a per-host-hour total that a
    baseline joins against itself) as a common table expression. DuckDB computes such a part
    once; Spark inlines every reference, so one detection query scanned the window's Parquet and
    shuffled 14 times over (28 scans, 14 exchanges in the baseline of bulk_outbound), and on a
    cluster each of those stages costs its scheduling. Here each CTE referenced at least twice is
    computed once, kept (memory, then disk) while the query runs, and read from there; the query
    returns the same rows.
    """
    from ._ibis import lazy_compilers

    lazy_compilers()
    from ibis.backends.pyspark import Backend

    class Materializing(Backend):
        @contextmanager
        def _safe_raw_sql(self, query):
            kept = []
            try:
                yield self.raw_sql(materialize_shared_ctes(self._session, query, self.dialect, kept))
            finally:
                for df, view in kept:  # the query's rows are collected by now
                    df.unpersist()
                    self._session.catalog.dropTempView(view)

    import ibis

    if getattr(ibis.options, "pyspark", None) is None:  # as ``ibis.pyspark`` registers them
        Backend.register_options()
    return Materializing().connect(session())


_kept = 0  # numbers the kept parts' views (unique in the session)


def materialize_shared_ctes(spark, query, dialect, kept: list) -> str:
    """``query`` with every CTE referenced twice or more replaced by a view of its rows, computed
    now and persisted; each (DataFrame, view name) is appended to ``kept`` (unpersist the one and
    drop the other after the query). SQL that sqlglot cannot parse runs as it is."""
    global _kept
    import sqlglot
    from pyspark import StorageLevel
    from sqlglot import exp

    if not isinstance(query, str):
        query = query.sql(dialect=dialect)
    if "WITH" not in query[:8].upper():
        return query
    try:
        tree = sqlglot.parse_one(query, dialect=dialect)
    except sqlglot.errors.ParseError:  # only slower that way, never different
        return query
    with_ = tree.args.get("with_") or tree.args.get("with")
    if with_ is None:
        return query
    ctes = list(with_.expressions)
    names = {c.alias for c in ctes}
    uses = dict.fromkeys(names, 0)
    for t in tree.find_all(exp.Table):
        if not t.args.get("db") and t.name in uses:
            uses[t.name] += 1
    shared = [c for c in ctes if uses[c.alias] >= 2]
    if not shared:
        return query
    for cte in shared:
        # the CTE's own query, with the CTEs before it (Spark ignores those it does not use)
        before = ctes[:ctes.index(cte)]
        sql = cte.this.sql(dialect=dialect)
        if before:
            sql = "WITH " + ", ".join(c.sql(dialect=dialect) for c in before) + " " + sql
        df = spark.sql(sql).persist(StorageLevel.MEMORY_AND_DISK)
        _kept += 1
        view = f"abfluss_shared_{_kept}"
        kept.append((df, view))
        df.count()  # computed now, once
        df.createOrReplaceTempView(view)
        cte.set("this", sqlglot.parse_one(f"SELECT * FROM {view}", dialect=dialect))
    return tree.sql(dialect=dialect)
