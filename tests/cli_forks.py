"""Run ``python -m hqc`` for many argument lists in one interpreter: import once, fork per run.

``python tests/cli_forks.py < runs.json`` reads ``[{"argv": [...], "env": {...}, "out": path,
"err": path}, ...]`` and prints the exit status of each run as a JSON list. Each run is a forked
child that runs ``hqc/__main__.py`` exactly as ``python -m hqc`` does (an uncaught exception
prints its traceback and exits 1, as the interpreter would), so tests see real exit statuses
and real stderr while paying the interpreter's and Lightning's start-up once, not per run.
Nothing is computed before the fork: the parent only imports.
"""

import json
import os
import runpy
import sys
import traceback

import hqc.main  # noqa: F401  (the costly imports, shared by every child)


def child(run: dict) -> None:
    """Become ``python -m hqc <argv>`` with ``run``'s environment and output files; never return."""
    os.environ.update(run["env"])
    for name in run.get("unset", []):
        os.environ.pop(name, None)
    for fd, path in ((1, run["out"]), (2, run["err"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.argv = ["hqc", *run["argv"]]
    status = 0
    try:
        runpy.run_module("hqc", run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def main() -> None:
    """Fork one child per run, one at a time; print their exit statuses."""
    statuses = []
    for run in json.load(sys.stdin):
        pid = os.fork()
        if pid == 0:
            child(run)
        statuses.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    print(json.dumps(statuses))


if __name__ == "__main__":
    main()
