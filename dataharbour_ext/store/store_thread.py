"""Store methods run on their store's own thread pool, so Jupyter's event loop never waits on SQL."""

import asyncio
import functools
from collections.abc import Callable


def in_store_thread(method: Callable) -> Callable:
    """Run a blocking method of a store on the store's `_executor`; callers await it."""

    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(method, self, *args, **kwargs))

    return wrapper
