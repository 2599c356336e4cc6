"""What the machine is doing, read with psutil: CPU, load, memory, swap, disk, network, processes.

Blocking (it reads /proc and calls statvfs), so it runs on a worker thread, and always the
same one: psutil keeps the previous CPU times per calling thread, and a percentage is only
meaningful against the previous reading of that same thread. Rates (disk I/O, network) are
the change of psutil's counters since the previous reading, per second.

A reading costs about 0.3 ms of CPU: no per-process details, only the number of pids.
"""

import os
import time
from dataclasses import dataclass

import psutil

# CPU percentages over a shorter window than this are mostly noise (0 or 100).
MIN_CPU_WINDOW_SECONDS = 0.1
# Loopback traffic is this server talking to itself and its browser tabs on the same
# machine; what is charted is the machine's traffic with the outside.
LOOPBACK = "lo"


@dataclass(frozen=True)
class SystemReading:
    cpu_percent: float
    cpu_per_core: list[float]
    cpu_count: int
    load_1: float
    load_5: float
    load_15: float
    memory_total: int
    memory_used: int
    memory_available: int
    memory_percent: float
    swap_total: int
    swap_used: int
    swap_percent: float
    disk_total: int
    disk_used: int
    disk_percent: float
    disk_read_bytes_per_sec: float | None
    disk_write_bytes_per_sec: float | None
    network_rx_bytes_per_sec: float | None
    network_tx_bytes_per_sec: float | None
    processes: int


@dataclass(frozen=True)
class _Counters:
    at: float  # time.monotonic()
    disk_read: int | None
    disk_write: int | None
    network_rx: int
    network_tx: int


def _rate(now: int | None, before: int | None, seconds: float) -> float | None:
    if now is None or before is None or seconds <= 0:
        return None
    # A counter that went back (a removed disk) is no traffic; a tenth of a byte is precision enough.
    return round(max(0.0, (now - before) / seconds), 1)


class SystemReader:
    """Readings of the machine, each against the previous one; call `read` from one thread only."""

    def __init__(self, disk_path: str):
        self.disk_path = disk_path
        self._previous: _Counters | None = None

    def read(self) -> SystemReading:
        """A reading over the time since the previous one. The first call also takes a
        baseline and waits `MIN_CPU_WINDOW_SECONDS`, so that even it has real percentages
        and rates; later calls wait only if the previous reading is younger than that."""
        if self._previous is None:
            self._take_counters()
            psutil.cpu_percent(percpu=True)
            psutil.cpu_percent()
        waited = time.monotonic() - self._previous.at
        if waited < MIN_CPU_WINDOW_SECONDS:
            time.sleep(MIN_CPU_WINDOW_SECONDS - waited)
        per_core = psutil.cpu_percent(percpu=True)
        total = psutil.cpu_percent()
        previous, counters = self._previous, self._take_counters()
        seconds = counters.at - previous.at
        load_1, load_5, load_15 = (round(load, 2) for load in os.getloadavg())
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        disk = psutil.disk_usage(self.disk_path)
        return SystemReading(
            cpu_percent=total,
            cpu_per_core=per_core,
            cpu_count=len(per_core),
            load_1=load_1,
            load_5=load_5,
            load_15=load_15,
            memory_total=memory.total,
            memory_used=memory.used,
            memory_available=memory.available,
            memory_percent=memory.percent,
            swap_total=swap.total,
            swap_used=swap.used,
            swap_percent=swap.percent,
            disk_total=disk.total,
            disk_used=disk.used,
            disk_percent=disk.percent,
            disk_read_bytes_per_sec=_rate(counters.disk_read, previous.disk_read, seconds),
            disk_write_bytes_per_sec=_rate(counters.disk_write, previous.disk_write, seconds),
            network_rx_bytes_per_sec=_rate(counters.network_rx, previous.network_rx, seconds),
            network_tx_bytes_per_sec=_rate(counters.network_tx, previous.network_tx, seconds),
            processes=len(psutil.pids()),
        )

    def _take_counters(self) -> _Counters:
        disk = psutil.disk_io_counters()  # None where the kernel shows no disks (some containers)
        received = sent = 0
        for name, counters in psutil.net_io_counters(pernic=True).items():
            if name != LOOPBACK:
                received += counters.bytes_recv
                sent += counters.bytes_sent
        self._previous = _Counters(
            at=time.monotonic(),
            disk_read=disk.read_bytes if disk else None,
            disk_write=disk.write_bytes if disk else None,
            network_rx=received,
            network_tx=sent,
        )
        return self._previous
