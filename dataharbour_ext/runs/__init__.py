"""The supervised-process core, shared by everything that runs detached.

    identity.py           who a process is, provably: boot id + start ticks (survives clock steps)
    folder.py             the layout of a run's folder and its owner-only files
    supervisor.py         `python -m dataharbour_ext.runs.supervisor RUN_DIR`: runs the command,
                          owns its whole descendant tree (child subreaper), records how it ended
    supervisor_tree.py    the supervisor's hold on the program's tree: signals, reaping,
                          stopping the whole tree, copying its output into the logs
    supervisor_record.py  what the supervisor records of a run's end: exit.json, the summary
    supervisor_warm.py    warm mode: a program started before its run, bound to it later
    process.py            the launcher's side: start a supervisor, re-attach, learn of its end, stop it

Kept import-light: the supervisor imports this package and must start fast.
"""
