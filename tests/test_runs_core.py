"""The supervised-process core (dataharbour_ext.runs): identity, run folders, supervisor, launcher.

Child programs are plain `python -c` snippets; waits are conditions with deadlines.
"""

import json
import os
import select
import signal
import stat
import subprocess
import sys
import time

import psutil
import pytest

from dataharbour_ext.runs import folder
from dataharbour_ext.runs.identity import ProcessIdentity, boot_id, read_stat
from dataharbour_ext.runs.process import Supervised, descendants, launch

# Deadlines are generous: 2 busy cores, other suites running Spark at the same time.
DEADLINE = 60.0


def wait_until(predicate, timeout=DEADLINE, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout}s")


@pytest.fixture
def run_dir(tmp_path):
    return folder.create(tmp_path / "runs" / "run-1")


def start(supervisors, run_dir, code, env=None, stop_grace=10.0, leftover_grace=5.0, argv=None):
    # The run folder on the command line marks every process of the run (see still_running).
    argv = argv or [sys.executable, "-c", code, str(run_dir)]
    folder.write_command(run_dir, argv, env or {}, str(run_dir), stop_grace, leftover_grace)
    supervised = launch(str(run_dir))
    supervisors.append(supervised)
    return supervised


def wait_for_end(supervised, run_dir, timeout=DEADLINE):
    supervised.popen.wait(timeout)
    status = folder.read_exit_status(run_dir)
    assert status is not None, (run_dir / folder.SUPERVISOR_LOG).read_text()
    return status


def running(pid):
    """The pid names a live process (a zombie does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def still_running(marker):
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and any(
                marker in part for part in process.info["cmdline"] or ()
            ):
                found.append(process.pid)
        except psutil.Error:
            continue
    return found


def text(path):
    """The file's text so far ("" before it exists)."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# --- identity ---------------------------------------------------------------------------


def test_own_identity_matches():
    me = ProcessIdentity.of(os.getpid())
    assert me is not None and me.matches()
    assert me.boot_id == boot_id()
    assert not ProcessIdentity(me.pid, me.start_ticks + 1, me.boot_id).matches()
    assert not ProcessIdentity(me.pid, me.start_ticks, "another-boot").matches()


def test_identity_json_round_trip_and_malformed_input():
    me = ProcessIdentity.of(os.getpid())
    assert ProcessIdentity.from_json(json.loads(json.dumps(me.to_json()))) == me
    for malformed in (
        None,
        [],
        "x",
        {},
        {"pid": "1", "start_ticks": 1, "boot_id": "b"},
        {"pid": 1, "start_ticks": -1, "boot_id": "b"},
        {"pid": True, "start_ticks": 1, "boot_id": "b"},
        {"pid": 1, "start_ticks": 1, "boot_id": ""},
        {"pid": 1, "start_ticks": 1.5, "boot_id": "b"},
    ):
        assert ProcessIdentity.from_json(malformed) is None, malformed


def test_stat_is_parsed_after_the_last_parenthesis(tmp_path):
    # comm is the executable's name: give it spaces and parentheses.
    odd_name = tmp_path / "a) (b c) d"
    odd_name.symlink_to("/bin/sleep")
    child = subprocess.Popen([str(odd_name), "60"])
    try:
        stat_of_child = wait_until(lambda: read_stat(child.pid), what="child visible")
        assert stat_of_child.ppid == os.getpid()
        assert stat_of_child.state in (b"S", b"R", b"D")  # D: still reading its executable, on a busy disk
        started_after_boot = stat_of_child.start_ticks / os.sysconf("SC_CLK_TCK")
        assert abs(time.clock_gettime(time.CLOCK_BOOTTIME) - started_after_boot) < 30
        assert ProcessIdentity.of(child.pid).matches()
    finally:
        child.kill()
        child.wait()


def test_identity_of_an_ended_process_does_not_match_and_attach_refuses_it():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    identity = ProcessIdentity.of(child.pid)
    handle = Supervised(identity)
    fd = handle.exit_fd()
    assert fd is not None
    assert select.select([fd], [], [], 0)[0] == []  # not readable while it runs
    child.stdin.close()
    assert select.select([fd], [], [], DEADLINE)[0] == [fd]
    assert not identity.matches()  # a zombie until reaped: no longer the process
    assert Supervised.attach(identity) is None
    child.wait()
    assert not identity.matches()
    assert Supervised.attach(identity) is None
    assert ProcessIdentity.of(child.pid) is None or ProcessIdentity.of(child.pid) != identity
    handle.close()


def test_a_reused_pid_is_never_signalled():
    me = ProcessIdentity.of(os.getpid())
    impostor = Supervised(ProcessIdentity(me.pid, me.start_ticks + 1, me.boot_id))
    assert impostor.exit_fd() is None
    assert not impostor.alive()
    assert impostor.request_stop() is False
    assert impostor.force_stop() == 0
    assert Supervised.attach(impostor.identity) is None


# --- run folder --------------------------------------------------------------------------


def test_folder_files_are_owner_only(tmp_path):
    run_dir = tmp_path / "a" / "b"
    run_dir.mkdir(parents=True, mode=0o755)
    os.chmod(run_dir, 0o755)
    assert folder.create(run_dir) == run_dir and mode(run_dir) == 0o700
    folder.write_json_atomically(run_dir / "x.json", {"a": 1})
    assert mode(run_dir / "x.json") == 0o600 and folder.read_json(run_dir / "x.json") == {"a": 1}
    assert sorted(os.listdir(run_dir)) == ["x.json"]  # no partial file left behind
    (run_dir / "broken.json").write_text("{not json")
    (run_dir / "list.json").write_text("[1]")
    assert folder.read_json(run_dir / "broken.json") is None
    assert folder.read_json(run_dir / "list.json") is None
    assert folder.read_json(run_dir / "missing.json") is None
    assert folder.read_exit_status(run_dir) is None
    assert folder.read_supervisor(run_dir) is None


# --- supervisor: output, environment, exit status ----------------------------------------


def test_run_output_files_and_environment(supervisors, run_dir, monkeypatch):
    monkeypatch.setenv("DH_ONLY_IN_SERVER", "server-secret-1234")
    (run_dir / folder.LOG_FILE).write_bytes(b"from an earlier attempt\n")
    code = (
        "import os, sys\n"
        "print('overlay=' + os.environ['DH_OVERLAY'], flush=True)\n"
        "print('inherited=' + os.environ['DH_ONLY_IN_SERVER'], flush=True)\n"
        "for i in range(2000):\n"
        "    print(f'out-{i}-' + 'o' * 50, flush=True)\n"
        "    print(f'err-{i}-' + 'e' * 50, file=sys.stderr, flush=True)\n"
    )
    supervised = start(supervisors, run_dir, code, env={"DH_OVERLAY": "overlay-value"})
    status = wait_for_end(supervised, run_dir)

    assert status["returncode"] == 0 and status["stop_requested"] is False and status["leftovers"] == 0
    assert "error" not in status
    output = (run_dir / folder.LOG_FILE).read_text().splitlines()
    stdout = (run_dir / folder.STDOUT_FILE).read_text().splitlines()
    outs = [f"out-{i}-" + "o" * 50 for i in range(2000)]
    errs = [f"err-{i}-" + "e" * 50 for i in range(2000)]
    assert output[0] == "from an earlier attempt"  # appended, never truncated
    # Every line whole: interleaved by line, each stream in its own order.
    assert sorted(output[1:]) == sorted(["overlay=overlay-value", "inherited=server-secret-1234", *outs, *errs])
    assert [line for line in output if line.startswith("out-")] == outs
    assert [line for line in output if line.startswith("err-")] == errs
    assert stdout == ["overlay=overlay-value", "inherited=server-secret-1234", *outs]

    command = json.loads((run_dir / folder.COMMAND_FILE).read_text())
    assert command["env"] == {"DH_OVERLAY": "overlay-value"}
    assert "server-secret-1234" not in (run_dir / folder.COMMAND_FILE).read_text()

    assert mode(run_dir) == 0o700
    assert sorted(os.listdir(run_dir)) == sorted(
        [
            folder.COMMAND_FILE,
            folder.SUPERVISOR_FILE,
            folder.SUPERVISOR_LOG,
            folder.LOG_FILE,
            folder.STDOUT_FILE,
            folder.EXIT_FILE,
        ]
    )
    for name in os.listdir(run_dir):
        assert mode(run_dir / name) == 0o600, name
    assert folder.read_supervisor(run_dir) == supervised.identity
    assert "exited with 0" in (run_dir / folder.SUPERVISOR_LOG).read_text()
    assert not supervised.alive()


def test_a_run_keeps_the_umask_it_inherits(supervisors, run_dir):
    code = "import os, sys; open(os.path.join(sys.argv[1], 'made-by-program'), 'w').close()"
    old = os.umask(0o022)
    try:
        supervised = start(supervisors, run_dir, code)
    finally:
        os.umask(old)
    assert wait_for_end(supervised, run_dir)["returncode"] == 0
    assert mode(run_dir / "made-by-program") == 0o644


def test_missing_executable(supervisors, run_dir):
    missing = str(run_dir / "no-such-program")
    supervised = start(supervisors, run_dir, None, argv=[missing, "--flag"])
    status = wait_for_end(supervised, run_dir)
    assert status["returncode"] == 127
    assert "No such file or directory" in status["error"]
    lines = (run_dir / folder.LOG_FILE).read_text().splitlines()
    assert lines == [f"DataHarbour: could not start {missing}: {status['error']}"]


def test_unreadable_command(supervisors, run_dir):
    supervised = start(supervisors, run_dir, "pass")
    wait_for_end(supervised, run_dir)
    os.unlink(run_dir / folder.EXIT_FILE)
    (run_dir / folder.COMMAND_FILE).write_text("{broken")
    again = launch(str(run_dir))
    supervisors.append(again)
    status = wait_for_end(again, run_dir)
    assert status["returncode"] == 127 and "command.json" in status["error"]
    assert (
        "DataHarbour: could not start the run: command.json is missing or malformed"
        in (run_dir / folder.LOG_FILE).read_text()
    )


def test_exit_code_and_death_by_signal(supervisors, run_dir, tmp_path):
    supervised = start(supervisors, run_dir, "raise SystemExit(3)")
    assert wait_for_end(supervised, run_dir)["returncode"] == 3
    other = folder.create(tmp_path / "runs" / "run-2")
    supervised = start(supervisors, other, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    status = wait_for_end(supervised, other)
    assert status["returncode"] == -signal.SIGKILL and status["stop_requested"] is False


# --- supervisor: the whole tree ----------------------------------------------------------

ESCAPING_CHILDREN = """
import os, subprocess, sys, time
run_dir = sys.argv[1]
sleeper = [sys.executable, "-c", "import time; time.sleep(600)", run_dir]
session = subprocess.Popen(sleeper, start_new_session=True)
daemon_pid_file = os.path.join(run_dir, "daemon.pid")
if os.fork() == 0:  # the classic double fork of a daemon
    os.setsid()
    if os.fork() == 0:
        with open(daemon_pid_file + ".partial", "w") as f:
            f.write(str(os.getpid()))
        os.rename(daemon_pid_file + ".partial", daemon_pid_file)
        os.execv(sys.executable, sleeper)
    os._exit(0)
os.wait()
while not os.path.exists(daemon_pid_file):
    time.sleep(0.01)
print(session.pid, open(daemon_pid_file).read(), flush=True)
"""


def test_leftovers_that_left_the_session_are_stopped_when_the_program_ends(supervisors, run_dir):
    supervised = start(supervisors, run_dir, ESCAPING_CHILDREN, leftover_grace=5.0)
    status = wait_for_end(supervised, run_dir)
    session_pid, daemon_pid = map(int, (run_dir / folder.STDOUT_FILE).read_text().split())
    assert status["returncode"] == 0 and status["leftovers"] == 2
    assert not running(session_pid) and not running(daemon_pid)
    assert still_running(str(run_dir)) == []
    assert "stopped 2 leftover process(es)" in (run_dir / folder.SUPERVISOR_LOG).read_text()


STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
stubborn_child = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('child ready', flush=True); time.sleep(600)"
subprocess.Popen([sys.executable, "-c", stubborn_child, sys.argv[1]], start_new_session=True)
print('ready', flush=True)
time.sleep(600)
"""


def test_stop_a_program_that_ignores_sigterm_and_its_setsid_child(supervisors, run_dir):
    grace = 2.0
    supervised = start(supervisors, run_dir, STUBBORN, stop_grace=grace)
    wait_until(lambda: text(run_dir / folder.STDOUT_FILE).count("ready") == 2, what="program and child ready")
    tree = descendants(supervised.identity.pid)
    assert len(tree) == 2 and all(process.matches() for process in tree)
    # The setsid'd child is no longer in the supervisor's session: a process-group kill would miss it.
    assert len({os.getsid(process.pid) for process in tree}) == 2

    assert supervised.request_stop()
    status = wait_for_end(supervised, run_dir, timeout=grace + 30)
    assert status["stop_requested"] is True and status["returncode"] == -signal.SIGKILL and status["leftovers"] == 1
    assert not any(process.matches() for process in tree)
    assert still_running(str(run_dir)) == []
    assert "after a stop request" in (run_dir / folder.SUPERVISOR_LOG).read_text()
    assert supervised.request_stop() is False


def test_stop_right_after_launch_is_never_lost(supervisors, tmp_path):
    # A lost stop would leave the run sleeping for 600 s; one that escalated to SIGKILL would
    # take the 60 s grace: ending within the wait below proves SIGTERM did the job.
    for attempt in range(20):
        run_dir = folder.create(tmp_path / "runs" / f"run-{attempt}")
        supervised = start(supervisors, run_dir, "import time; time.sleep(600)", stop_grace=60.0)
        # Sweep the supervisor's start-up: before its handlers, before and after the spawn.
        time.sleep((attempt % 5) * 0.05)
        assert supervised.request_stop()
        status = wait_for_end(supervised, run_dir, timeout=30)
        assert status["stop_requested"] is True and status["returncode"] == -signal.SIGTERM, status
        assert not supervised.alive()
        assert still_running(str(run_dir)) == []


# --- launcher: re-attach, exit notification, force stop ----------------------------------


def test_reattach_and_learn_of_the_end_through_the_pidfd(supervisors, run_dir):
    code = "import os, sys, time\nwhile not os.path.exists(os.path.join(sys.argv[1], 'go')):\n    time.sleep(0.02)\n"
    launched = start(supervisors, run_dir, code)
    identity = wait_until(lambda: folder.read_supervisor(run_dir), what="supervisor.json")
    assert identity == launched.identity

    attached = Supervised.attach(identity)  # as a restarted server would
    supervisors.append(attached)
    assert attached is not None and attached.popen is None and attached.alive()
    fd = attached.exit_fd()
    assert fd is not None and attached.exit_fd() == fd
    assert select.select([fd], [], [], 0)[0] == []

    (run_dir / "go").touch()
    assert select.select([fd], [], [], DEADLINE)[0] == [fd]
    assert folder.read_exit_status(run_dir)["returncode"] == 0  # written before the supervisor exits
    launched.popen.wait(DEADLINE)
    assert not attached.alive() and Supervised.attach(identity) is None
    attached.close()
    assert attached.exit_fd() is None  # the process is gone: nothing to open


def test_stop_through_a_reattached_handle(supervisors, run_dir):
    launched = start(supervisors, run_dir, "print('up', flush=True); import time; time.sleep(600)")
    wait_until(lambda: "up" in text(run_dir / folder.STDOUT_FILE), what="program up")
    attached = Supervised.attach(folder.read_supervisor(run_dir))
    supervisors.append(attached)
    assert attached.request_stop()
    status = wait_for_end(launched, run_dir)
    assert status["stop_requested"] is True and status["returncode"] == -signal.SIGTERM


def test_force_stop_kills_the_tree_and_the_supervisor(supervisors, run_dir):
    supervised = start(supervisors, run_dir, STUBBORN, stop_grace=600.0)
    wait_until(lambda: text(run_dir / folder.STDOUT_FILE).count("ready") == 2, what="program and child ready")
    tree = descendants(supervised.identity.pid)
    assert len(tree) == 2
    # A supervisor that does not answer: stopped, it cannot reap, record or signal anything.
    assert supervised.identity.send_signal(signal.SIGSTOP)
    wait_until(lambda: read_stat(supervised.identity.pid).state == b"T", what="supervisor stopped")
    assert supervised.force_stop() == 3
    assert supervised.popen.returncode == -signal.SIGKILL
    assert not any(process.matches() for process in tree) and not supervised.alive()
    assert still_running(str(run_dir)) == []
    assert folder.read_exit_status(run_dir) is None  # the caller records such an end


def test_a_program_dies_with_its_supervisor_even_when_the_supervisor_is_sigkilled(supervisors, run_dir):
    supervised = start(supervisors, run_dir, "print('up', flush=True); import time; time.sleep(600)")
    wait_until(lambda: "up" in text(run_dir / folder.STDOUT_FILE), what="program up")
    (program,) = descendants(supervised.identity.pid)
    # What an OOM killer does: the supervisor gets no chance to stop anything.
    assert supervised.identity.send_signal(signal.SIGKILL)
    supervised.popen.wait(DEADLINE)
    wait_until(lambda: not program.matches(), what="the program's end")
    assert still_running(str(run_dir)) == []
