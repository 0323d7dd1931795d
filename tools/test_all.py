#!/usr/bin/env python
"""Run every test: the notebooks with `nbdev-test`, then `pytest`.

pytest runs last, so the output ends with its summary line; a failure in either makes the exit code non-zero.
Extra arguments go to pytest (`python tools/test_all.py -x -k docs`). Set CDEMO_SKIP_NBDEV_TEST=1 to run pytest only.
"""
import os, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def run(cmd):
    "Run `cmd` from the repo root, echoing it; return its exit code"
    print('$', ' '.join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode

def main(args):
    nb_rc = 0
    if os.environ.get('CDEMO_SKIP_NBDEV_TEST') != '1':
        t = time.monotonic()
        nb_rc = run(['nbdev-test', '--n-workers', '2'])
        # said now rather than at the end, so that pytest's summary stays the last line
        print(f'nbdev-test: {"FAILED (exit %d), see above; running pytest anyway" % nb_rc if nb_rc else "passed"}'
              f' in {time.monotonic()-t:.0f}s', flush=True)
    pt_rc = run([sys.executable, '-m', 'pytest', '-q', '-ra', *args])
    if pt_rc == 5: print('pytest collected no tests: tests/ is missing or was filtered out', file=sys.stderr)
    return 1 if nb_rc or pt_rc else 0  # pytest's 5 (no tests) is a failure too

if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
