"""The kernelspec a notebook records: one of this server's kernels, as JupyterLab writes it,
so that a notebook made through the API opens in JupyterLab with its kernel, unasked."""

import asyncio
import inspect
from collections.abc import Callable

from ..errors import InvalidInput


class NotebookKernels:
    def __init__(self, kernel_spec_manager: Callable[[], object], default_kernel_name: Callable[[], str | None]):
        self._kernel_spec_manager = kernel_spec_manager
        self._default_kernel_name = default_kernel_name

    async def kernelspec(self, name: str | None) -> dict | None:
        """{name, display_name, language} of kernel `name` (None: the server's default kernel,
        or no kernelspec at all if it has none); 400 for a kernel this server does not have."""
        specs = await self._all_specs()
        wanted = name or self._default_kernel_name()
        found = specs.get(wanted) if wanted else None
        if found is None:
            if name is None:
                return None
            known = ", ".join(sorted(specs)) or "none"
            raise InvalidInput("kernel_name", f"this server has no kernel {name!r} (it has: {known})")
        spec = found.get("spec", {})
        return {"name": wanted, "display_name": spec.get("display_name", wanted), "language": spec.get("language", "")}

    async def _all_specs(self) -> dict:
        get_all = self._kernel_spec_manager().get_all_specs
        if inspect.iscoroutinefunction(get_all):
            return await get_all()
        # jupyter_client's manager reads kernel.json files from several folders: not on the loop.
        return await asyncio.to_thread(get_all)
