"""The supervised-process core, shared by everything that runs detached.

    identity.py    who a process is, provably: boot id + start ticks (survives clock steps)
    folder.py      the layout of a run's folder and its owner-only files
    supervisor.py  `python -m dataharbour_ext.runs.supervisor RUN_DIR`: runs the command, owns its
                   whole descendant tree (child subreaper), records how it ended
    process.py     the launcher's side: start a supervisor, re-attach, learn of its end, stop it

Kept import-light: the supervisor imports this package and must start fast.
"""
