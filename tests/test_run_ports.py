"""The ports a run listens on: only its own processes' (runs/ports.py), one scan at a time."""

import asyncio
import subprocess
import sys
import threading

import psutil

from dataharbour_ext.runs.identity import ProcessIdentity
from dataharbour_ext.runs.ports import PortScans, listening_ports

# A "supervisor" whose child listens on a port the kernel picks and says which.
PARENT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", '''
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(600)
'''])
child.wait()
"""


async def test_the_ports_of_a_runs_processes_one_scan_for_concurrent_asks():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        port = int(parent.stdout.readline())
        supervisor = ProcessIdentity.of(parent.pid)
        assert port in listening_ports(supervisor)

        started = 0
        release = threading.Event()

        def in_thread(function, *args):
            def held():
                release.wait(30)
                return function(*args)
            nonlocal started
            started += 1
            return asyncio.to_thread(held)

        scans = PortScans(in_thread)
        asks = [asyncio.ensure_future(scans.of(supervisor)) for _ in range(5)]
        await asyncio.sleep(0)  # every ask is waiting on the one scan
        release.set()
        assert all(port in ports for ports in await asyncio.gather(*asks))
        assert started == 1
        assert port in await scans.of(supervisor) and started == 2  # a later ask scans anew
    finally:
        for process in [*psutil.Process(parent.pid).children(recursive=True), psutil.Process(parent.pid)]:
            process.kill()
        parent.wait(timeout=30)
    assert listening_ports(supervisor) == set()  # a run that ended listens nowhere
