"""spark-submit's application file for every run: `bootstrap.py SIGNALS_PATH PROGRAM [ARGS...]`.

It tells the engine about the driver without anyone calling the driver's REST API (the
first REST call makes a driver build its REST layer on the job's CPU): once a SparkContext
is up it writes SIGNALS_PATH atomically,

    {"app_id": "local-1700000000000", "ui_url": "http://127.0.0.1:4040", "ready_at": 1700000000.1}

and when that context stops it adds "stopped_at". While the context is up, a daemon thread
samples `sc.statusTracker()` twice a second and writes the run's progress (Spark jobs,
stages and tasks done / total / failed / active) to `progress.json` beside it whenever it
changes: the tracker reads the driver's status store over the Py4J socket the program
already has, costing the driver next to nothing. Then it runs PROGRAM as `__main__` with
`sys.argv == [PROGRAM, *ARGS]` and PROGRAM's folder first on sys.path, exactly what
`python PROGRAM ARGS...` would show the program. A failure of the bootstrap's own hooks
never breaks the job: the program runs without signals.

Standard library only, and nothing imported from dataharbour_ext: it runs in the job's
Python, beside the user's code.
"""

import json
import os
import runpy
import sys
import threading
import time

PROGRESS_FILE = "progress.json"  # beside SIGNALS_PATH; the engine reads both
PROGRESS_INTERVAL = 0.5
PROGRESS_INTERVAL_VARIABLE = "DATAHARBOUR_PROGRESS_INTERVAL"  # seconds; 0 turns sampling off


def _progress_interval() -> float:
    try:
        return float(os.environ.get(PROGRESS_INTERVAL_VARIABLE, PROGRESS_INTERVAL))
    except ValueError:
        return PROGRESS_INTERVAL


def _write_atomically(path: str, data: dict) -> None:
    partial = f"{path}.{os.getpid()}.partial"
    # Owner-only like every file of the run folder, whatever the program's umask.
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(partial, path)


def _warn(what: str) -> None:
    try:
        print(f"DataHarbour: {what}; the run continues without driver signals", file=sys.stderr, flush=True)
    except Exception:
        pass


def _counts() -> dict:
    return {"total": 0, "done": 0, "failed": 0, "active": 0}


class ProgressSampler:
    """Spark jobs, stages and tasks of one SparkContext, from its status tracker.

    A finished job is read once and added to running totals, so a sample costs a call for
    the known job ids plus a few per job still running, and jobs the driver forgets
    (`spark.ui.retainedJobs`) stay counted. A stage shared by several jobs counts once. A
    stage of a finished job that never ran a task was skipped (its shuffle output was
    reused) and counts nowhere. Jobs in a job group are seen while they run."""

    MAX_ERRORS_IN_A_ROW = 5

    def __init__(self, sc, path: str, interval: float = PROGRESS_INTERVAL):
        self.sc = sc
        self.path = path
        self.interval = interval
        self.finished_ids: set[int] = set()
        self.finished = {"jobs": _counts(), "stages": _counts(), "tasks": _counts()}
        self.counted_stages: set[int] = set()  # stages already in the finished totals
        self.last: dict | None = None
        self.errors = 0
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="dataharbour-progress", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """A last sample (the context is still up), then no more."""
        self.stop_event.set()
        self.sample()

    def _run(self) -> None:
        while not self.stop_event.wait(self.interval):
            if not self.sample():
                return

    def sample(self) -> bool:
        """Write the progress if it changed; False once the tracker keeps failing."""
        with self.lock:
            try:
                progress = self._read()
                self.errors = 0
            except Exception:
                self.errors += 1
                return self.errors < self.MAX_ERRORS_IN_A_ROW
            if progress == self.last:
                return True
            self.last = progress
            try:
                _write_atomically(self.path, {**progress, "sampled_at": time.time()})
            except OSError:
                return False
            return True

    @staticmethod
    def _add_stage(counts: dict, stage, job_status: str) -> None:
        complete = stage.numCompletedTasks >= stage.numTasks and not stage.numActiveTasks
        ran = stage.numCompletedTasks or stage.numActiveTasks or stage.numFailedTasks
        counts["stages"]["total"] += 1
        counts["stages"]["done"] += complete
        counts["stages"]["failed"] += job_status == "FAILED" and not complete
        counts["stages"]["active"] += bool(stage.numActiveTasks) or (job_status == "RUNNING" and ran and not complete)
        counts["tasks"]["total"] += stage.numTasks
        counts["tasks"]["done"] += min(stage.numCompletedTasks, stage.numTasks)
        counts["tasks"]["failed"] += stage.numFailedTasks
        counts["tasks"]["active"] += stage.numActiveTasks

    def _read(self) -> dict:
        tracker = self.sc.statusTracker()
        job_ids = (set(tracker.getJobIdsForGroup(None)) | set(tracker.getActiveJobsIds())) - self.finished_ids
        live = {"jobs": _counts(), "stages": _counts(), "tasks": _counts()}
        seen_stages = set(self.counted_stages)
        current_stage = None
        for job_id in sorted(job_ids):
            info = tracker.getJobInfo(job_id)
            if info is None:
                continue
            status = str(info.status)
            ended = status in ("SUCCEEDED", "FAILED")
            counts = self.finished if ended else live
            counts["jobs"]["total"] += 1
            counts["jobs"]["done"] += status == "SUCCEEDED"
            counts["jobs"]["failed"] += status == "FAILED"
            counts["jobs"]["active"] += status == "RUNNING"
            for stage_id in info.stageIds:
                if stage_id in seen_stages:
                    continue
                stage = tracker.getStageInfo(stage_id)
                if stage is None:
                    continue
                ran = stage.numCompletedTasks or stage.numActiveTasks or stage.numFailedTasks
                if ended and not ran:
                    continue  # skipped, or never reached before the job failed
                seen_stages.add(stage_id)
                if ended:
                    self.counted_stages.add(stage_id)
                self._add_stage(counts, stage, status)
                if stage.numActiveTasks:
                    current_stage = stage.name
            if ended:
                self.finished_ids.add(job_id)
        totals = {part: {name: self.finished[part][name] + live[part][name] for name in self.finished[part]}
                  for part in ("jobs", "stages", "tasks")}
        tasks = totals["tasks"]
        percent = round(100.0 * tasks["done"] / tasks["total"], 1) if tasks["total"] else 0.0
        return {**totals, "current_stage": current_stage, "percent": percent}


class Signals:
    """Writes the signals file for the first SparkContext of the run, and has its progress
    sampled."""

    def __init__(self, path: str):
        self.path = path
        self.data: dict | None = None
        self.context_id: int | None = None
        self.sampler: ProgressSampler | None = None

    def context_ready(self, sc) -> None:
        if self.data is not None and self.data.get("stopped_at") is None:
            return  # a second context in the same run: the first one's signals stand
        try:
            ui_url = sc.uiWebUrl
        except Exception:
            ui_url = None
        self.data = {"app_id": sc.applicationId, "ui_url": ui_url or None, "ready_at": time.time()}
        self.context_id = id(sc)
        _write_atomically(self.path, self.data)
        interval = _progress_interval()
        if interval > 0:
            self.sampler = ProgressSampler(sc, os.path.join(os.path.dirname(self.path), PROGRESS_FILE), interval)
            self.sampler.start()

    def context_stopping(self, sc) -> None:
        if self.sampler is not None and self.context_id == id(sc):
            self.sampler.stop()

    def context_stopped(self, sc) -> None:
        if self.data is None or self.context_id != id(sc) or self.data.get("stopped_at") is not None:
            return
        self.data["stopped_at"] = time.time()
        _write_atomically(self.path, self.data)


def install_hooks(signals: Signals) -> None:
    """Wrap SparkContext.__init__ and stop(); any failure here leaves pyspark untouched."""
    from pyspark import SparkContext

    original_init = SparkContext.__init__
    original_stop = SparkContext.stop

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        try:
            signals.context_ready(self)
        except Exception as error:
            _warn(f"could not record the SparkContext ({error!r})")

    def stop(self, *args, **kwargs):
        try:
            signals.context_stopping(self)
        except Exception as error:
            _warn(f"could not record the run's last progress ({error!r})")
        try:
            return original_stop(self, *args, **kwargs)
        finally:
            try:
                signals.context_stopped(self)
            except Exception as error:
                _warn(f"could not record the SparkContext's stop ({error!r})")

    for wrapper, original in ((__init__, original_init), (stop, original_stop)):
        wrapper.__name__ = original.__name__
        wrapper.__qualname__ = original.__qualname__
        wrapper.__doc__ = original.__doc__
        wrapper.__wrapped__ = original
    SparkContext.__init__ = __init__
    SparkContext.stop = stop


def _program_traceback(tb, program: str):
    """The traceback from the program's first frame on: the bootstrap and runpy are not the user's."""
    first = tb
    while first is not None and first.tb_frame.f_code.co_filename != program:
        first = first.tb_next
    return first or tb


def _die_with_the_driver_jvm() -> None:
    """The driver's JVM (spark-submit) is our parent: if it is killed (its supervisor SIGKILLed,
    an OOM killer), this process must not run on alone."""
    try:
        import ctypes
        import signal

        parent = os.getppid()
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # it died before the prctl
            os._exit(1)
    except Exception:
        pass  # not Linux: nothing to do


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: bootstrap.py SIGNALS_PATH PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    _die_with_the_driver_jvm()
    signals_path, program, args = argv[1], argv[2], argv[3:]
    signals = Signals(os.path.abspath(signals_path))
    try:
        install_hooks(signals)
    except Exception as error:
        _warn(f"could not hook SparkContext ({error!r})")
    program = os.path.abspath(program)
    sys.argv = [argv[2], *args]
    # `python PROGRAM` puts PROGRAM's folder first on sys.path; ours (this package's
    # folder) would shadow the user's modules with submit.py, runner.py...
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == here:
        sys.path[0] = os.path.dirname(program)
    else:
        sys.path.insert(0, os.path.dirname(program))
    try:
        runpy.run_path(program, run_name="__main__")
    except SystemExit:
        raise
    except BaseException as error:
        # As Python reports an uncaught exception, minus our frames: the program's own
        # exception line stays the last line of the log.
        sys.stdout.flush()
        # (The default hook prints the exception's own __traceback__, so trim that.)
        error.__traceback__ = _program_traceback(error.__traceback__, program)
        sys.excepthook(type(error), error, error.__traceback__)
        sys.stderr.flush()
        return 130 if isinstance(error, KeyboardInterrupt) else 1
    finally:
        _last_progress(signals)
    return 0


def _last_progress(signals: Signals) -> None:
    """A program that never stops its context still gets its final progress recorded: the
    JVM stops the context only after this Python process has gone."""
    try:
        if signals.sampler is not None and not signals.sampler.stop_event.is_set():
            signals.sampler.stop()
    except Exception:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv))
