"""Reading standalone daemons without running them: why one failed, their logs merged, the
master's status."""

import os
import time

import pytest

from dataharbour_ext.spark.daemon_logs import DaemonLogs
from dataharbour_ext.spark.standalone import NotAMaster, failure_reason, parse_master_status


@pytest.mark.parametrize("lines, code, reason", [
    (["JAVA_HOME is not set"], 1, "Java was not found: install Java 17 or later, or set JAVA_HOME (spark-class could "
                                  "not run java)"),
    (["26/11/27 12:00:01 ERROR MasterWebUI: Failed to bind MasterWebUI",
      "java.net.BindException: Service 'MasterUI' failed after 0 retries (on a random free port)! ...",
      "Caused by: java.net.BindException: Address already in use"], 1,
     "the master's web UI port 8080 is taken (BindException: Address already in use)"),
    (["26/11/27 12:00:01 WARN Worker: Failed to connect to master 127.0.0.1:7077",
      "26/11/27 12:01:01 ERROR Worker: All masters are unresponsive! Giving up."], 1,
     "the worker could not reach its master"),
    (["26/11/27 12:00:01 ERROR Master: RECEIVED SIGNAL TERM"], 143, "26/11/27 12:00:01 ERROR Master: RECEIVED SIGNAL "
                                                                   "TERM"),
    ([], -9, "it was killed by signal 9"),
    ([], 3, "it exited with code 3"),
])
def test_a_daemons_failure_in_words(lines, code, reason):
    assert failure_reason(lines, code, {"sparkMaster": 7077, "MasterUI": 8080}) == reason


def test_daemon_logs_are_merged_by_time_with_their_daemon_named(tmp_path):
    master, worker = tmp_path / "master.log", tmp_path / "worker.log"
    master.write_text("26/11/27 12:00:01 INFO Master: Starting Spark master\n"
                      "26/11/27 12:00:04 INFO Master: Registering worker 127.0.0.1:4242\n")
    worker.write_text("spark-class says hello\n"
                      "26/11/27 12:00:03 INFO Worker: Starting Spark worker\n"
                      "26/11/27 12:00:05 ERROR Worker: something broke\n"
                      "java.lang.IllegalStateException: here\n"
                      "\tat Worker.java:1\n")
    last_write = time.mktime((2026, 11, 27, 12, 0, 6, 0, 0, -1))  # local time, as Spark writes its times
    os.utime(worker, (last_write, last_write))
    logs = DaemonLogs(lambda: [("master", master), ("worker-1", worker), ("worker-2", tmp_path / "missing.log")])
    assert logs.tail(100) == [
        "[master] 26/11/27 12:00:01 INFO Master: Starting Spark master",
        "[worker-1] spark-class says hello",  # before the worker's first time, after nothing known
        "[worker-1] 26/11/27 12:00:03 INFO Worker: Starting Spark worker",
        "[master] 26/11/27 12:00:04 INFO Master: Registering worker 127.0.0.1:4242",
        "[worker-1] 26/11/27 12:00:05 ERROR Worker: something broke",
        "[worker-1] java.lang.IllegalStateException: here",
        "[worker-1] \tat Worker.java:1",
    ]
    # The end of a stack trace without its first line: written by the file's last write at latest.
    assert logs.tail(2) == ["[worker-1] java.lang.IllegalStateException: here", "[worker-1] \tat Worker.java:1"]


def test_a_masters_status_and_what_is_not_one():
    status = parse_master_status({
        "url": "spark://127.0.0.1:7077", "status": "ALIVE", "cores": 2, "coresused": 1, "memory": 2048,
        "memoryused": 1024, "workers": [
            {"id": "worker-1", "host": "127.0.0.1", "port": 4242, "state": "ALIVE", "cores": 1, "coresused": 1,
             "memory": 1024, "memoryused": 1024},
            {"id": "worker-0", "host": "127.0.0.1", "port": 4241, "state": "DEAD", "cores": 1, "coresused": 0,
             "memory": 1024, "memoryused": 0},
        ]})
    assert [worker.id for worker in status.alive_workers] == ["worker-1"]
    assert (status.cores, status.cores_used, status.memory_mb) == (2, 1, 2048)
    with pytest.raises(NotAMaster):
        parse_master_status({"spark": "a driver's page"})
