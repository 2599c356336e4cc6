"""Syntax check of a submitted program without freezing the server.

`compile()` holds the GIL, so a thread does not help: a 450 KB program of list
comprehensions takes 15-30 s to compile and would stall every user's notebooks. Small
programs compile inline (well under a millisecond per KB); larger ones compile in a
separate worker process (`python -m dataharbour_ext.services.program_check <filename>`,
program on stdin, verdict on stdout). A check that times out or a worker that crashes
accepts the program: a real syntax error then shows up when the job runs.
"""

import asyncio
import logging
import sys
import weakref

from ..errors import InvalidInput

log = logging.getLogger(__name__)

# Compile time grows faster than size for nested code ("lambda:" * 2300, 16 KB: 0.57 s):
# only programs this small compile on the event loop (a few ms at worst).
INLINE_LIMIT_BYTES = 2 * 1024
CHECK_TIMEOUT_SECONDS = 5.0
MAX_WORKERS = 2  # a burst of large submissions must not start a compiler per request
WORKER_MEMORY_BYTES = 1024 * 1024 * 1024
_workers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = weakref.WeakKeyDictionary()
_VERDICT_OK = "ok"


def syntax_problem(code: str, filename: str) -> str | None:
    """Why `code` does not compile, in one line, or None if it compiles."""
    try:
        compile(code, filename, "exec", dont_inherit=True)
    except SyntaxError as error:  # also IndentationError, TabError
        where = f" (line {error.lineno})" if error.lineno else ""
        return f"{type(error).__name__}{where}: {error.msg}"
    except ValueError as error:  # NUL bytes, on older Pythons
        return f"{type(error).__name__}: {error}"
    except (RecursionError, MemoryError):
        # The parser and compiler recurse per nesting level: `-----1`, `a.b.b.b`, `f()()()`.
        return "the program is too deeply nested to compile"
    except OverflowError:
        return "the program is too large to compile"
    return None


async def check_syntax(
    code: str,
    filename: str,
    field: str,
    *,
    inline_limit: int = INLINE_LIMIT_BYTES,
    timeout: float = CHECK_TIMEOUT_SECONDS,
) -> None:
    """Raise InvalidInput(field, ...) if `code` has a syntax error."""
    source = code.encode("utf-8", "surrogatepass")
    if len(source) <= inline_limit:
        problem = syntax_problem(code, filename)
    else:
        problem = await _check_in_worker(source, filename, timeout)
    if problem:
        raise InvalidInput(field, problem)


async def _check_in_worker(source: bytes, filename: str, timeout: float) -> str | None:
    loop = asyncio.get_running_loop()
    workers = _workers.setdefault(loop, asyncio.Semaphore(MAX_WORKERS))  # a semaphore belongs to one loop
    async with workers:
        return await _run_worker(source, filename, timeout)


def _limit_worker_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))


async def _run_worker(source: bytes, filename: str, timeout: float) -> str | None:
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        filename,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        preexec_fn=_limit_worker_memory,
    )
    try:
        verdict, _ = await asyncio.wait_for(worker.communicate(source), timeout)
    except asyncio.TimeoutError:
        log.info("syntax check of %s (%d bytes) took over %.1fs; accepting it unchecked", filename, len(source),
                 timeout)
        return None
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    text = verdict.decode("utf-8", "replace").strip()
    if worker.returncode != 0 or not text:
        log.info("syntax check of %s failed (worker exit %s); accepting it unchecked", filename, worker.returncode)
        return None
    return None if text == _VERDICT_OK else text


def _worker_main() -> None:
    filename = sys.argv[1]
    code = sys.stdin.buffer.read().decode("utf-8", "surrogatepass")
    verdict = syntax_problem(code, filename) or _VERDICT_OK
    sys.stdout.buffer.write(verdict.encode("utf-8", "backslashreplace") + b"\n")


if __name__ == "__main__":
    _worker_main()
