"""Runs several ``ddfad`` command lines in one process and writes, per command line, ``{"argv", "rc", "out",
"err"}`` to a JSON file. tests/test_adversarial_faults.py runs it under resource limits (``ulimit -f``, a full or
read-only file system, a folder without write permission), paying for one interpreter for all of them.

    python tests/adversarial_driver.py CASES.json RESULTS.json
"""
import contextlib
import io
import json
import sys
import traceback


def run(argv):
    from ddfad_fast.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
        except BaseException:  # noqa: BLE001 - a traceback is what the tests look for
            err.write(traceback.format_exc())
            rc = "exception"
    return {"argv": argv, "rc": rc, "out": out.getvalue(), "err": err.getvalue()}


if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        cases = json.load(handle)
    results = [run(argv) for argv in cases]
    with open(sys.argv[2], "w") as handle:
        json.dump(results, handle)
