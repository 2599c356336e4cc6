"""Jupyter itself: always there while this extension answers; its kernels and sessions."""

import jupyter_server

from ... import __version__
from .check import Finding, HealthCheck


class JupyterCheck(HealthCheck):
    kind = "jupyter"

    def __init__(self, kernel_manager, session_manager):
        super().__init__("jupyter")
        self.kernel_manager = kernel_manager
        self.session_manager = session_manager

    async def probe(self, timeout: float) -> Finding:
        sessions = await self.session_manager.list_sessions()
        return Finding(
            version=jupyter_server.__version__,
            details={
                "kernels": len(self.kernel_manager.list_kernel_ids()),
                "sessions": len(sessions),
                "extension_version": __version__,
            },
        )
