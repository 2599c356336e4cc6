"""spark-submit's application file for every run: `bootstrap.py SIGNALS_PATH PROGRAM [ARGS...]`.

It tells the engine about the driver without anyone calling the driver's REST API (the
first REST call makes a driver build its REST layer on the job's CPU): once a SparkContext
is up it writes SIGNALS_PATH atomically,

    {"app_id": "local-1700000000000", "ui_url": "http://127.0.0.1:4040", "ready_at": 1700000000.1}

and when that context stops it adds "stopped_at". Then it runs PROGRAM as `__main__` with
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
import time


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


class Signals:
    """Writes the signals file for the first SparkContext of the run."""

    def __init__(self, path: str):
        self.path = path
        self.data: dict | None = None
        self.context_id: int | None = None

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


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: bootstrap.py SIGNALS_PATH PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    signals_path, program, args = argv[1], argv[2], argv[3:]
    try:
        install_hooks(Signals(os.path.abspath(signals_path)))
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
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
