"""A private event loop on a daemon thread, for the blocking client's async parts (the live
stream, waiting for a job). It works where the caller's thread already runs a loop, as in a
Jupyter kernel, where `asyncio.run` would refuse."""

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
CANCEL_WAIT_SECONDS = 5.0  # for a cancelled call to unwind (an HTTP request being dropped)


class LoopThread:
    def __init__(self, name: str = "dataharbour-client"):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run_loop, name=name, daemon=True)
        self.thread.start()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the loop and wait for its result. An interrupt (Ctrl-C, a kernel
        interrupt) while waiting cancels it, and waits (briefly) until it has really stopped,
        so that what comes next (closing a generator it was stepping) finds it at rest."""
        finished = threading.Event()
        future = asyncio.run_coroutine_threadsafe(_signalling(coroutine, finished), self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            finished.wait(CANCEL_WAIT_SECONDS)
            raise

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        """An async iterator, stepped from this thread; closing the generator closes it. A
        failure to close never hides the exception that ended the iteration."""
        try:
            while True:
                try:
                    yield self.run(_next(iterator))
                except StopAsyncIteration:
                    return
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None and self.loop.is_running():
                try:
                    self.run(_wait(close()))
                except Exception:
                    pass

    def close(self) -> None:
        if self.loop.is_running():
            self.run(_cancel_everything_else())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        if not self.loop.is_running():
            self.loop.close()


async def _signalling(coroutine: Coroutine[Any, Any, T], finished: threading.Event) -> T:
    try:
        return await coroutine
    finally:
        finished.set()


async def _next(iterator: AsyncIterator[T]) -> T:
    return await iterator.__anext__()


async def _wait(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _cancel_everything_else() -> None:
    """Streams still open when the client closes: cancelled, not left pending."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()
