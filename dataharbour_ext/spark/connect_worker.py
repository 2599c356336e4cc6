"""A warm Spark Connect worker: `python -m dataharbour_ext.spark.connect_worker SLOT_DIR`.

Started ahead of any job by the warm pool (services/warm_pool.py), under a run supervisor in
warm mode, with `SPARK_REMOTE` naming the cluster's Connect server. It imports pyspark, opens
its Connect session, runs one tiny query (the server plans its first query slowly), writes
SLOT_DIR/ready.json and waits. When the pool hands it a job, its supervisor writes the run
folder's path on its stdin; from then on its output is that run's log. It reads the job from
RUN_DIR/connect_job.json and runs the program as `__main__`, as `python PROGRAM ARGS...`
would, in this session: `SparkSession.builder.getOrCreate()` in the program returns it, so
the job's temp views and SQL conf are its own. Every Spark operation of the program carries
the job's tag, so a kill (SIGTERM from the supervisor) interrupts exactly that work on the
server (`interruptTag`) before the process ends. One job per worker: the process ends with
the job, and the session is released.

It writes the same files as a batch run's bootstrap: spark.json (the session is up),
progress.json (from the Connect client's progress handler), and error.json when the program
fails with something Spark Connect does not support, with the advice to run it in batch mode.
"""

import faulthandler
import json
import os
import runpy
import signal
import sys
import threading
import time
import traceback

from .bootstrap import PROGRESS_FILE, _program_traceback, _write_atomically

READY_FILE = "ready.json"
JOB_FILE = "connect_job.json"
SIGNALS_FILE = "spark.json"  # as driver_signals.SIGNALS_FILE
ERROR_FILE = "error.json"
STOP_WAIT_SECONDS = 4.0  # how long a killed job may take to end once interrupted (under the kill grace)
INTERRUPT_EVERY_SECONDS = 0.2
RETRIES = 8  # about 16 s of back-off before a lost Connect server fails the job
# Error classes pyspark raises for what only a JVM-backed (batch) session has.
UNSUPPORTED = ("JVM_ATTRIBUTE_NOT_SUPPORTED", "CONTEXT_UNAVAILABLE_FOR_REMOTE_CLIENT", "NOT_IMPLEMENTED",
               "UNSUPPORTED_OPERATION", "CANNOT_CONFIGURE_SPARK_CONNECT_MASTER")
BATCH_ADVICE = 'Spark Connect does not support this; submit the job with "mode": "batch"'


def unsupported_by_connect(error: BaseException) -> bool:
    condition = getattr(error, "getCondition", None) or getattr(error, "getErrorClass", None)
    try:
        name = condition() if condition else None
    except Exception:
        name = None
    return bool(name) and any(name.startswith(prefix) for prefix in UNSUPPORTED)


class ConnectProgress:
    """The job's progress from the Connect client's handler (called with every stage the
    server reports for an operation, cumulative), as the engine reads progress.json."""

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.Lock()
        self.operations: dict[str, dict] = {}  # operation id: {"stages": {id: StageInfo}, "done": bool}
        self.inflight: dict[str, int] = {}
        self.last: dict | None = None

    def __call__(self, stages, inflight_tasks, operation_id, done, **_) -> None:
        try:
            with self.lock:
                operation = self.operations.setdefault(operation_id, {"stages": {}, "done": False})
                for stage in stages:
                    operation["stages"][stage.stage_id] = stage
                operation["done"] = bool(done)
                self.inflight[operation_id] = 0 if done else int(inflight_tasks)
                progress = self._totals()
                if progress != self.last:
                    self.last = progress
                    _write_atomically(self.path, {**progress, "sampled_at": time.time()})
        except Exception:
            pass  # progress is a nicety: never the job's failure

    def _totals(self) -> dict:
        jobs = {"total": len(self.operations), "done": 0, "failed": 0, "active": 0}
        stages = {"total": 0, "done": 0, "failed": 0, "active": 0}
        tasks = {"total": 0, "done": 0, "failed": 0, "active": sum(self.inflight.values())}
        for operation in self.operations.values():
            jobs["done" if operation["done"] else "active"] += 1
            for stage in operation["stages"].values():
                # A stage adaptive execution skipped never completes: once its operation is
                # done it counts nowhere, as a skipped stage of a batch run.
                if operation["done"] and not stage.done and not stage.num_completed_tasks:
                    continue
                stages["total"] += 1
                stages["done" if stage.done else "active"] += 1
                tasks["total"] += stage.num_tasks
                tasks["done"] += min(stage.num_completed_tasks, stage.num_tasks)
        percent = round(100.0 * tasks["done"] / tasks["total"], 1) if tasks["total"] else 0.0
        return {"jobs": jobs, "stages": stages, "tasks": tasks, "current_stage": None, "percent": percent}


class Stopper:
    """SIGTERM from the supervisor (a kill, or the pool letting an unused worker go) and
    SIGINT. Unbound, the worker just ends. Bound, a thread interrupts the job's operations on
    the server, again and again until the program ends (an operation the program was just
    sending may reach the server after the first interrupt), closes the session (the server
    then cancels whatever of it still runs) and ends the process. A Python handler, not a
    blocked signal: gRPC's waits return to the interpreter often, and the job's own
    subprocesses must not inherit a blocked SIGTERM."""

    def __init__(self):
        self.spark = None
        self.tag: str | None = None
        self.finished = threading.Event()
        self._stopping = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def bound(self, spark, tag: str) -> None:
        self.spark, self.tag = spark, tag

    def _on_signal(self, signum, frame) -> None:
        if self.tag is None:
            os._exit(128 + signum)
        if not self._stopping:
            self._stopping = True
            threading.Thread(target=self._stop, args=(signum,), name="dataharbour-stop", daemon=True).start()

    def _stop(self, signum: int) -> None:
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while time.monotonic() < deadline:
            try:
                self.spark.interruptTag(self.tag)
            except Exception:
                pass
            if self.finished.wait(INTERRUPT_EVERY_SECONDS):
                break
        _release(self.spark)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + signum)


def _release(spark) -> None:
    """Close the session: the server frees it now, not after its idle timeout."""
    try:
        spark.stop()
    except Exception:
        pass


def _give_up_on_a_dead_server(spark) -> None:
    """pyspark's client retries a lost server for minutes; a Connect server that died comes
    back on another port with another token, so this session can never reconnect: fail the
    job within seconds instead (the retries still ride out a brief hiccup)."""
    try:
        from pyspark.sql.connect.client.retries import DefaultPolicy

        spark.client.set_retry_policies([DefaultPolicy(max_retries=RETRIES, backoff_multiplier=2.0,
                                                       initial_backoff=100, max_backoff=5000)])
    except Exception as error:  # a pyspark without this API: its defaults stand
        print(f"DataHarbour: the Spark Connect client's retries stay pyspark's ({error!r})", file=sys.stderr)


def _read_run_dir() -> str | None:
    line = sys.stdin.readline()
    return line.strip() or None


def _fail(run_dir: str, summary: str) -> int:
    print(f"DataHarbour: {summary}", file=sys.stderr, flush=True)
    _write_atomically(os.path.join(run_dir, ERROR_FILE), {"error": summary})
    return 1


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m dataharbour_ext.spark.connect_worker SLOT_DIR", file=sys.stderr)
        return 2
    slot_dir = argv[1]
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1` writes every thread's stack to the log
    stopper = Stopper()
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()  # SPARK_REMOTE: a Connect session
    _give_up_on_a_dead_server(spark)
    # A small Spark job: the first one of a session (and of the server) is slow, planning and
    # result code loaded; a job's first query then takes what its second would.
    spark.range(10).filter("id % 3 = 0").count()
    session_id = spark.session_id
    _write_atomically(os.path.join(slot_dir, READY_FILE),
                      {"pid": os.getpid(), "session_id": session_id, "ready_at": time.time()})

    run_dir = _read_run_dir()
    if run_dir is None:
        _release(spark)
        return 0  # the pool let this worker go unused
    with open(os.path.join(run_dir, JOB_FILE), encoding="utf-8") as f:
        job = json.load(f)
    stopper.bound(spark, job["tag"])
    os.environ.update(job.get("env") or {})
    for key, value in (job.get("conf") or {}).items():
        try:
            spark.conf.set(key, value)
        except Exception as error:  # a static or unknown conf: the session cannot take it
            _release(spark)
            return _fail(run_dir, f"cannot set {key} in a Spark Connect session ({type(error).__name__}: "
                                  f"{str(error).splitlines()[0] if str(error) else ''}); set it on the cluster, "
                                  f"or submit the job with \"mode\": \"batch\"")
    spark.addTag(job["tag"])  # this thread's operations, the program's: it runs here
    spark.registerProgressHandler(ConnectProgress(os.path.join(run_dir, PROGRESS_FILE)))
    signals = {"app_id": None, "ui_url": None, "session_id": session_id, "ready_at": time.time()}
    _write_atomically(os.path.join(run_dir, SIGNALS_FILE), signals)
    program = os.path.abspath(job["program"])
    sys.argv = [program, *job.get("args", [])]
    sys.path.insert(0, os.path.dirname(program))
    code = 0
    try:
        runpy.run_path(program, run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if exit_.code is not None and not isinstance(exit_.code, int):
            print(exit_.code, file=sys.stderr)
    except BaseException as error:
        sys.stdout.flush()
        error.__traceback__ = _program_traceback(error.__traceback__, program)
        traceback.print_exception(type(error), error, error.__traceback__)
        sys.stderr.flush()
        if unsupported_by_connect(error):
            # Its first sentence: pyspark goes on about SparkSession builders.
            first = (str(error).splitlines() or [""])[0].split(". ", 1)[0].rstrip(".")
            _fail(run_dir, f"{type(error).__name__}: {first}. {BATCH_ADVICE}")
        code = 130 if isinstance(error, KeyboardInterrupt) else 1
    finally:
        stopper.finished.set()
    _release(spark)
    _write_atomically(os.path.join(run_dir, SIGNALS_FILE), {**signals, "stopped_at": time.time()})
    return code


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # gRPC's threads must not hold the process open
