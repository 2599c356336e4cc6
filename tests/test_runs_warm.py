"""Warm (late-bound) runs: a supervised program started before it knows its run, then bound
to a run folder (dataharbour_ext.runs.process.launch_warm / Supervised.bind).

Programs are plain `python -c` snippets with their slot folder on the command line, which
marks every process of theirs (see still_running); waits are conditions with deadlines.
"""

import signal
import subprocess
import sys

import pytest
from test_runs_core import DEADLINE, running, still_running, text, wait_until

from dataharbour_ext.runs import folder
from dataharbour_ext.runs.process import Supervised, descendants, launch_warm

WARM = """
import sys
print("warming", flush=True)
run_dir = sys.stdin.readline().strip()
print("bound to " + run_dir, flush=True)
sys.exit(3)
"""

WARM_THEN_LONG_JOB = """
import sys, time
print("warming", flush=True)
print("bound to " + sys.stdin.readline().strip(), flush=True)
time.sleep(600)
"""

# Ignores SIGTERM and never reads its stdin, nor does the child it starts in a new session.
STUBBORN_WARM = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
stubborn_child = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('child ready', flush=True); time.sleep(600)"
subprocess.Popen([sys.executable, "-c", stubborn_child, sys.argv[1]], start_new_session=True, stdin=subprocess.DEVNULL)
print('ready', flush=True)
time.sleep(600)
"""

# Prints without pause while it waits for its run, and on after learning it.
CHATTY = """
import sys, threading
learned = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), learned.set()), daemon=True).start()
i = 0
while not learned.is_set():
    print(f"line-{i}", flush=True)
    i += 1
print("learned its run", file=sys.stderr, flush=True)
for _ in range(2000):
    print(f"line-{i}", flush=True)
    i += 1
"""

DIES_WHILE_WARMING = """
import sys
print("warming failed: no Connect server", flush=True)
sys.exit(5)
"""


@pytest.fixture
def slot_dir(tmp_path):
    return folder.create(tmp_path / "slots" / "slot-1")


@pytest.fixture
def run_dir(tmp_path):
    return folder.create(tmp_path / "runs" / "job-1" / "1")


def start_warm(supervisors, slot_dir, code, stop_grace=10.0):
    folder.write_command(
        slot_dir, [sys.executable, "-c", code, str(slot_dir)], {}, str(slot_dir), stop_grace, 5.0, warm=True
    )
    supervised = launch_warm(str(slot_dir))
    supervisors.append(supervised)
    return supervised


def ended(supervised, where):
    """The supervisor's end, and the exit status it recorded in `where`."""
    supervised.popen.wait(DEADLINE)
    status = folder.read_exit_status(where)
    assert status is not None, text(where / folder.SUPERVISOR_LOG)
    return status


def test_output_before_the_bind_stays_in_the_slot_and_the_end_lands_in_the_run(supervisors, slot_dir, run_dir):
    supervised = start_warm(supervisors, slot_dir, WARM)
    wait_until(lambda: "warming" in text(slot_dir / folder.LOG_FILE), what="warming in the slot's log")
    assert folder.read_supervisor(slot_dir) == supervised.identity
    assert text(run_dir / folder.LOG_FILE) == "" and supervised.alive()

    assert supervised.bind(str(run_dir))
    status = ended(supervised, run_dir)

    assert status["returncode"] == 3 and status["stop_requested"] is False and status["leftovers"] == 0
    assert status["released"] is True and status["bound"] is True and status["slot"] == str(slot_dir)
    assert text(run_dir / folder.LOG_FILE) == f"bound to {run_dir}\n"
    assert text(run_dir / folder.STDOUT_FILE) == f"bound to {run_dir}\n"
    assert text(slot_dir / folder.LOG_FILE) == "warming\n"
    assert text(slot_dir / folder.STDOUT_FILE) == "warming\n"
    assert folder.read_supervisor(run_dir) == supervised.identity
    assert folder.read_exit_status(slot_dir) is None  # the slot's program became the run
    assert "exited with 3; stopped 0 leftover process(es)" in text(slot_dir / folder.SUPERVISOR_LOG)
    assert supervised.bind(str(run_dir)) is False  # one bind per slot
    assert still_running(str(slot_dir)) == []


def test_output_written_across_the_bind_lands_once_in_order(supervisors, slot_dir, run_dir):
    supervised = start_warm(supervisors, slot_dir, CHATTY)
    wait_until(lambda: "line-1000\n" in text(slot_dir / folder.STDOUT_FILE), what="the program chatting")
    assert supervised.bind(run_dir)
    assert ended(supervised, run_dir)["returncode"] == 0

    before = text(slot_dir / folder.STDOUT_FILE).splitlines()
    after = text(run_dir / folder.STDOUT_FILE).splitlines()
    assert before and len(after) >= 2000
    assert before + after == [f"line-{i}" for i in range(len(before) + len(after))]  # none lost, torn or doubled
    assert "learned its run" in text(run_dir / folder.LOG_FILE)
    assert "learned its run" not in text(slot_dir / folder.LOG_FILE)


def test_abandon_before_the_bind_stops_the_whole_tree(supervisors, slot_dir, run_dir):
    grace = 1.0
    supervised = start_warm(supervisors, slot_dir, STUBBORN_WARM, stop_grace=grace)
    wait_until(lambda: text(slot_dir / folder.STDOUT_FILE).count("ready") == 2, what="program and child ready")
    tree = descendants(supervised.identity.pid)
    assert len(tree) == 2 and all(process.matches() for process in tree)

    supervised.abandon()
    status = ended(supervised, slot_dir)

    # Both ignore SIGTERM: SIGKILL after the grace period.
    assert status["returncode"] == -signal.SIGKILL and status["leftovers"] == 1
    assert status["bound"] is False and status["released"] is False and status["stop_requested"] is True
    assert not any(process.matches() for process in tree)
    assert still_running(str(slot_dir)) == []
    assert "never bound" in text(slot_dir / folder.SUPERVISOR_LOG)
    assert supervised.bind(str(run_dir)) is False
    assert list(run_dir.iterdir()) == []  # no run ever heard of it


def test_a_launcher_that_dies_before_binding_takes_the_warm_program_with_it(supervisors, slot_dir):
    folder.write_command(
        slot_dir, [sys.executable, "-c", WARM_THEN_LONG_JOB, str(slot_dir)], {}, str(slot_dir), warm=True
    )
    # The launcher is another process (a Jupyter server) that exits without a word.
    launcher = (
        "import sys\nfrom dataharbour_ext.runs.process import launch_warm\n"
        "supervised = launch_warm(sys.argv[1])\nprint(supervised.identity.pid, flush=True)\n"
    )
    subprocess.run([sys.executable, "-c", launcher, str(slot_dir)], check=True, timeout=DEADLINE)
    identity = wait_until(lambda: folder.read_supervisor(slot_dir), what="supervisor.json")
    attached = Supervised.attach(identity)
    if attached is not None:  # else it has already ended
        supervisors.append(attached)
    status = wait_until(lambda: folder.read_exit_status(slot_dir), what="exit.json in the slot")
    assert status["bound"] is False and status["released"] is False
    wait_until(lambda: not identity.matches(), what="the supervisor's end")
    assert still_running(str(slot_dir)) == []


def test_stop_request_before_the_bind(supervisors, slot_dir, run_dir):
    supervised = start_warm(supervisors, slot_dir, WARM_THEN_LONG_JOB)
    wait_until(lambda: "warming" in text(slot_dir / folder.LOG_FILE), what="warming")
    assert supervised.request_stop()
    status = ended(supervised, slot_dir)
    # Its stdin closed first: it read an empty line, then SIGTERM ended it.
    assert status["returncode"] == -signal.SIGTERM and status["stop_requested"] is True
    assert status["bound"] is False and status["released"] is False
    assert still_running(str(slot_dir)) == []
    assert list(run_dir.iterdir()) == []


def test_stop_request_after_the_bind_is_recorded_in_the_run(supervisors, slot_dir, run_dir):
    supervised = start_warm(supervisors, slot_dir, WARM_THEN_LONG_JOB)
    wait_until(lambda: "warming" in text(slot_dir / folder.LOG_FILE), what="warming")
    assert supervised.bind(run_dir)
    wait_until(lambda: f"bound to {run_dir}" in text(run_dir / folder.LOG_FILE), what="the program bound")
    (program,) = descendants(supervised.identity.pid)

    assert supervised.request_stop()
    status = ended(supervised, run_dir)
    assert status["stop_requested"] is True and status["returncode"] == -signal.SIGTERM
    assert status["bound"] is True and status["released"] is True
    assert not program.matches() and still_running(str(slot_dir)) == []
    assert folder.read_exit_status(slot_dir) is None
    assert "after a stop request; stopped 0 leftover process(es)" in text(slot_dir / folder.SUPERVISOR_LOG)


def test_a_program_that_died_while_warming_still_settles_the_run_it_is_bound_to(supervisors, slot_dir, run_dir):
    supervised = start_warm(supervisors, slot_dir, DIES_WHILE_WARMING)
    # The slot is dead at once (the pool sees it), yet the supervisor waits for its launcher.
    slot_status = wait_until(lambda: folder.read_exit_status(slot_dir), what="exit.json in the slot")
    assert slot_status["returncode"] == 5 and slot_status["bound"] is False
    assert supervised.alive()

    assert supervised.bind(run_dir)
    status = ended(supervised, run_dir)
    assert status["returncode"] == 5 and status["released"] is True and status["bound"] is True
    assert status["stop_requested"] is False
    assert folder.read_supervisor(run_dir) == supervised.identity
    assert text(run_dir / folder.LOG_FILE) == (
        f"DataHarbour: {sys.executable} exited with 5 before this run was handed to it; "
        f"the last of its output, from {slot_dir / folder.LOG_FILE}:\n"
        "warming failed: no Connect server\n"
    )
    assert still_running(str(slot_dir)) == []


def test_a_warm_program_that_cannot_start(supervisors, slot_dir, run_dir):
    missing = str(slot_dir / "no-such-program")
    folder.write_command(slot_dir, [missing], {}, str(slot_dir), warm=True)
    supervised = launch_warm(slot_dir)
    supervisors.append(supervised)
    slot_status = wait_until(lambda: folder.read_exit_status(slot_dir), what="exit.json in the slot")
    assert slot_status["returncode"] == 127 and "No such file or directory" in slot_status["error"]
    assert supervised.bind(run_dir)
    status = ended(supervised, run_dir)
    assert status["returncode"] == 127 and status["error"] == slot_status["error"] and status["bound"] is True
    assert f"DataHarbour: could not start {missing}" in text(run_dir / folder.LOG_FILE)


def test_a_warm_program_dies_with_its_sigkilled_supervisor(supervisors, slot_dir):
    supervised = start_warm(supervisors, slot_dir, WARM_THEN_LONG_JOB)
    wait_until(lambda: "warming" in text(slot_dir / folder.LOG_FILE), what="warming")
    (program,) = descendants(supervised.identity.pid)
    assert supervised.identity.send_signal(signal.SIGKILL)
    supervised.popen.wait(DEADLINE)
    wait_until(lambda: not program.matches(), what="the program's end")
    assert not running(program.pid) and still_running(str(slot_dir)) == []


def test_launch_warm_wants_a_warm_command(slot_dir):
    folder.write_command(slot_dir, [sys.executable, "-c", "pass"], {}, str(slot_dir))
    with pytest.raises(ValueError, match="not marked warm"):
        launch_warm(slot_dir)
    assert folder.read_supervisor(slot_dir) is None  # nothing was started
