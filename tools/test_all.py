#!/usr/bin/env python
"""Run every test: the notebooks with `nbdev-test`, then in a real Jupyter kernel (`tools/run_nbs.py`), then `pytest`.

pytest runs last, so the output ends with its summary line; a failure in any makes the exit code non-zero.
Extra arguments go to pytest (`python tools/test_all.py -x -k docs`). Set CDEMO_SKIP_NBDEV_TEST=1 to skip nbdev-test
and CDEMO_SKIP_KERNEL_RUN=1 to skip the kernel run (both for pytest only).
Each runner gets CDEMO_TEST_TIMEOUT seconds (900 by default): a notebook stuck in a thread can outlive nbdev's
per-cell timeout, and a hung run should fail, not eat CI's time.
"""
import glob, os, shutil, signal, subprocess, sys, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TIMEOUT = float(os.environ.get('CDEMO_TEST_TIMEOUT', 900))

def _kill(p):
    "End `p` and everything it started in its process group"
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try: os.killpg(p.pid, sig)
        except ProcessLookupError: return
        try: return p.wait(10)
        except subprocess.TimeoutExpired: pass

def _tee(stream, found, bad):
    "Copy `stream`'s lines to our stderr, keeping those that contain one of `bad`'s strings in `found`"
    for line in iter(stream.readline, ''):
        sys.stderr.write(line); sys.stderr.flush()
        if any(b in line for b in bad): found.append(line.strip())

def run(cmd, timeout=TIMEOUT, env=None, bad=()):
    """Run `cmd` from the repo root in its own process group, echoing it; return its exit code (124 if it timed out).
    A line of its stderr containing one of `bad`'s strings makes a passing run fail (exit 1): a warning that reads
    as a failure in a learner's log is a defect too"""
    print('$', ' '.join(cmd), flush=True)
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, text=True,
                         stderr=subprocess.PIPE if bad else None)
    found = []
    tee = threading.Thread(target=_tee, args=(p.stderr, found, bad), daemon=True)
    if bad: tee.start()
    try:
        rc = p.wait(timeout)
        if bad: tee.join(10)  # the last lines
        if rc or not found: return rc
        print(f'{cmd[0]} passed but printed: {found[0]}', file=sys.stderr, flush=True)
        return 1
    except subprocess.TimeoutExpired:
        print(f'{cmd[0]} still running after {timeout:.0f}s (CDEMO_TEST_TIMEOUT): killed', flush=True)
        _kill(p)
        return 124
    except BaseException:  # Ctrl-C: the child is in its own session, so stop it here
        _kill(p)
        raise

SYSTEM = {'chromium': lambda: shutil.which('chromium'),  # the docs check and the console's browser test
          'postgresql': lambda: glob.glob('/usr/lib/postgresql/*/bin/initdb')}  # the PgQueue tests' throwaway server

def system_packages():
    "Install the Debian packages the tests need when missing (as root), or say which are missing; True if all are there"
    missing = [k for k,found in SYSTEM.items() if not found()]
    if not missing: return True
    if os.geteuid() != 0 or not shutil.which('apt-get'):
        print(f'The tests need Debian packages that are missing: {" ".join(missing)}. '
              f'Install them (sudo apt-get install {" ".join(missing)}) or run `bash .ci/run` as root.', file=sys.stderr)
        return False
    print(f'Installing the missing Debian packages the tests need: {" ".join(missing)}', flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    for cmd in (['apt-get', 'update', '-qq'], ['apt-get', 'install', '-y', '-qq', '--no-install-recommends', *missing]):
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode: return False
    return all(found() for found in SYSTEM.values())

def main(args):
    if args in (['-h'], ['--help']): print(f"usage: python tools/test_all.py [pytest arguments]\n\n{__doc__.strip()}"); return 0
    if not system_packages(): return 1
    nb_rc = 0
    if os.environ.get('CDEMO_SKIP_NBDEV_TEST') != '1':
        t = time.monotonic()
        # this tree's package first: `pip install -e` may point at another checkout (a git worktree's notebooks would
        # import it); `python -m pytest` and tools/run_nbs.py see to that themselves
        pypath = os.pathsep.join([str(ROOT)] + ([os.environ['PYTHONPATH']] if os.environ.get('PYTHONPATH') else []))
        nb_rc = run(['nbdev-test', '--n-workers', '2'], env=dict(os.environ, PYTHONPATH=pypath),
                    bad=('leaked semaphore', 'leaked shared_memory'))  # multiprocess's resource tracker
        # said now rather than at the end, so that pytest's summary stays the last line
        print(f'nbdev-test: {"FAILED (exit %d), see above; running pytest anyway" % nb_rc if nb_rc else "passed"}'
              f' in {time.monotonic()-t:.0f}s', flush=True)
    kr_rc = 0
    if os.environ.get('CDEMO_SKIP_KERNEL_RUN') != '1':
        t = time.monotonic()
        kr_rc = run([sys.executable, 'tools/run_nbs.py'])
        print(f'Jupyter kernel run: {"FAILED (exit %d), see above; running pytest anyway" % kr_rc if kr_rc else "passed"}'
              f' in {time.monotonic()-t:.0f}s', flush=True)
    pt_rc = run([sys.executable, '-m', 'pytest', '-q', '-ra', *args])
    if pt_rc == 5: print('pytest collected no tests: tests/ is missing or was filtered out', file=sys.stderr)
    return 1 if nb_rc or kr_rc or pt_rc else 0  # pytest's 5 (no tests) is a failure too

if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
