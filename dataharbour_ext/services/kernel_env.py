"""KernelEnvironment: variables this server adds to the environment of every kernel it starts
(whether through a session, as JupyterLab does, or POST /api/kernels), from providers asked at
each start.

Jupyter Server has no hook for this: the session manager passes `env` to the kernel manager's
`start_kernel` (a kernel started alone gets the server's own environment), so this wraps that
method on the server's kernel manager instance. A restart keeps the environment the kernel
started with (jupyter_client keeps its launch arguments).
"""

import inspect
import logging
import os
from collections.abc import Callable

log = logging.getLogger("dataharbour_ext")

Provider = Callable[[], dict[str, str]]


class KernelEnvironment:
    def __init__(self, kernel_manager):
        self._providers: list[Provider] = []
        start_kernel = kernel_manager.start_kernel

        if inspect.iscoroutinefunction(start_kernel):
            async def start_with_environment(*args, **kwargs):
                return await start_kernel(*args, **self._with_variables(kwargs))
        else:
            def start_with_environment(*args, **kwargs):
                return start_kernel(*args, **self._with_variables(kwargs))

        kernel_manager.start_kernel = start_with_environment

    def add(self, provider: Provider) -> None:
        self._providers.append(provider)

    def variables(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for provider in self._providers:
            try:
                found.update(provider())
            except Exception:  # a provider's bug must not stop kernels from starting
                log.exception("DataHarbour: a kernel environment provider failed")
        return found

    def _with_variables(self, kwargs: dict) -> dict:
        variables = self.variables()
        if variables:
            kwargs["env"] = {**(kwargs.get("env") or os.environ), **variables}
        return kwargs
