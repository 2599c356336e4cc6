"""Everything that talks to Spark: spark-submit command lines, the run supervisor, driver logs and UI."""
