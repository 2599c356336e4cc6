"""The job state machine: which state a run may move to from which.

Every state change goes through the store as a conditional update from the states this
table allows, so a change that lost a race (a kill against the program's own exit, two
servers settling one run) is refused instead of overwriting the winner.
"""

from ..models import JobState

Q, S, R = JobState.queued, JobState.starting, JobState.running
OK, FAILED, KILLED, LOST = JobState.succeeded, JobState.failed, JobState.killed, JobState.lost

ALLOWED: dict[JobState, frozenset[JobState]] = {
    # queued -> failed: the run cannot be launched (its cluster is gone, its record is unusable).
    Q: frozenset({S, KILLED, FAILED}),
    # starting -> queued: the server stopped between claiming the run and launching it.
    S: frozenset({Q, R, OK, FAILED, KILLED, LOST}),
    R: frozenset({OK, FAILED, KILLED, LOST}),
}
ACTIVE = (S.value, R.value)
TERMINAL = tuple(state.value for state in (OK, FAILED, KILLED, LOST))


def sources(target: JobState) -> tuple[str, ...]:
    """The states from which a run may move to `target`."""
    return tuple(state.value for state, targets in ALLOWED.items() if target in targets)
