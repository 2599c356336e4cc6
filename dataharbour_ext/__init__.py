"""DataHarbour for Jupyter: Spark jobs, clusters and monitoring inside the Jupyter server.

Kept import-light on purpose: the run supervisor (`python -m dataharbour_ext.runs.supervisor`)
imports this package too and must start fast.
"""

__version__ = "0.1.0"


def _jupyter_server_extension_points():
    from .app import DataHarbourApp

    return [{"module": "dataharbour_ext", "app": DataHarbourApp}]


def load_ipython_extension(ipython):
    """`%load_ext dataharbour_ext`: the Spark magics (dataharbour_ext/magics.py)."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython):
    from .magics import unload_ipython_extension as unload

    unload(ipython)
