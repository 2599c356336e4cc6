"""What the service reads out of driver logs."""

from dataharbour_ext.spark.driver_log import error_summary

SPARK_FAILURE = """\
26/11/25 19:44:41 INFO DAGScheduler: Job 1 finished
Traceback (most recent call last):
  File "/runs/job.py", line 4, in <module>
    raise KeyError("missing")
KeyError: 'missing'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/runs/job.py", line 6, in <module>
    df = spark.table("nope")
pyspark.errors.exceptions.captured.AnalysisException: [TABLE_OR_VIEW_NOT_FOUND] The table `nope` cannot be found.
JVM stacktrace:
\tat org.apache.spark.sql.X
26/11/25 19:44:42 INFO SparkContext: Invoking stop() from shutdown hook
"""


def test_error_summary_is_the_last_exception_line():
    summary = error_summary(SPARK_FAILURE, 1)
    assert summary.startswith("pyspark.errors.exceptions.captured.AnalysisException: [TABLE_OR_VIEW_NOT_FOUND]")


def test_error_summary_falls_back_to_error_lines_then_exit_code():
    log = "26/11/25 19:44:41 INFO A: fine\n26/11/25 19:44:42 ERROR SparkContext: Error initializing SparkContext.\n"
    assert error_summary(log, 1) == "SparkContext: Error initializing SparkContext."
    assert error_summary("nothing useful\n", 3) == "exited with code 3"
    assert error_summary("", -9) == "terminated by signal 9"
