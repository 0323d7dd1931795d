#!/usr/bin/env python
"""Run every notebook in a real Jupyter kernel, as a learner's "Run All" does.

`nbdev-test` runs the notebooks with execnb, not ipykernel: a cell can pass there and fail in Jupyter (an event loop
already running, `display`, a cell nbdev skips). This executes each `nbs/*.ipynb` with nbclient in an ipykernel
whose working directory is `nbs/`, two notebooks at a time, with a per-cell timeout; it never writes outputs back.
It prints one line per notebook with its time and exits non-zero, showing the failing cell's source and error, if any
notebook fails. It also fails if a run changed `git status --porcelain` (a lesson wrote into the tree, e.g.
`nbs/bench/`) or left files in its temporary folder (each kernel gets a `TMPDIR` of its own, looked at after it exits).

`python tools/run_nbs.py [NAME.ipynb ...]`; CDEMO_NB_WORKERS (2) and CDEMO_CELL_TIMEOUT (300 s) tune it.
"""
import os, re, shutil, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
WORKERS = int(os.environ.get('CDEMO_NB_WORKERS', 2))
CELL_TIMEOUT = int(os.environ.get('CDEMO_CELL_TIMEOUT', 300))
NB_TIMEOUT = float(os.environ.get('CDEMO_NB_TIMEOUT', 900))  # a whole notebook, kernel start and shutdown included
_re_ansi = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')

def notebooks():
    "The notebooks nbdev tests and renders (it skips names starting with `_` or `.`)"
    return sorted(p.name for p in NBS.glob('*.ipynb') if not p.name.startswith(('_', '.')))

def run_one(name):
    "Execute `nbs/name` in a fresh kernel (this runs in a child process); print the failing cell and exit 1 if one fails"
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError
    nb = nbformat.read(NBS/name, as_version=4)
    # the closing `nbdev.nbdev_export()` rewrites concurrency_demo/*.py: with two kernels at once, one could import a
    # module the other is halfway through writing. CI checks the export separately, so that cell isn't run here.
    nb.cells = [c for c in nb.cells if not (c.cell_type == 'code' and 'nbdev.nbdev_export()' in c.source)]
    # the kernel's sockets are files (IPC), not TCP ports: with TCP the client picks five free ports and the kernel binds
    # them a moment later, and a test server starting in between took one ("Address already in use": a dead kernel)
    from jupyter_client.manager import KernelManager
    ipc = tempfile.mkdtemp(prefix='cdemo-ipc-', dir='/tmp' if os.path.isdir('/tmp') else None)
    km = KernelManager(kernel_name='python3', transport='ipc', ip=os.path.join(ipc, 'k'),
                       connection_file=os.path.join(ipc, 'kernel.json'))
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, kernel_name='python3', allow_errors=False,
                            resources={'metadata': {'path': str(NBS)}})
    try: client.execute()
    except (CellExecutionError, CellTimeoutError) as e:
        # nbclient's message holds the failing cell's source and the kernel's traceback
        print(_re_ansi.sub('', str(e)), file=sys.stderr)
        return 1
    finally: shutil.rmtree(ipc, ignore_errors=True)
    return 0

def leftovers(tmp):
    "What a notebook's kernel left in its temporary folder (multiprocess's own `pymp-*` folder is its to remove)"
    return sorted(p.name for p in Path(tmp).iterdir() if not p.name.startswith('pymp-'))

def run_child(name, tmproot):
    "Run notebook `name` in its own process and temporary folder; `(name, seconds, error or None)`"
    tmp = Path(tmproot)/Path(name).stem
    tmp.mkdir(mode=0o755)  # traversable: lesson 09's throwaway PostgreSQL runs as the `postgres` user when we are root
    # the kernel imports this tree's package, not whichever checkout `pip install -e` last pointed at
    pypath = os.pathsep.join([str(ROOT)] + ([os.environ['PYTHONPATH']] if os.environ.get('PYTHONPATH') else []))
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=pypath, PYTHONUNBUFFERED='1')
    t = time.monotonic()
    p = subprocess.Popen([sys.executable, __file__, '--one', name], cwd=ROOT, env=env, start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try: out, _ = p.communicate(timeout=NB_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        out, _ = p.communicate()
        return name, time.monotonic()-t, f'still running after {NB_TIMEOUT:.0f}s (CDEMO_NB_TIMEOUT): killed\n{out[-4000:]}'
    dt = time.monotonic()-t
    if p.returncode: return name, dt, out[-8000:] or f'exit code {p.returncode}'
    if left := leftovers(tmp): return name, dt, f'left in its temporary folder (remove them in a hidden last cell): {left}'
    return name, dt, None

def git_status():
    r = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=all'], cwd=ROOT, capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None

def main(names):
    names = names or notebooks()
    before = git_status()
    t0, fails = time.monotonic(), {}
    with tempfile.TemporaryDirectory(prefix='cdemo-nbs-') as tmproot, ThreadPoolExecutor(WORKERS) as ex:
        os.chmod(tmproot, 0o755)
        for name,dt,err in ex.map(lambda n: run_child(n, tmproot), names):
            print(f'{"FAIL" if err else "ok  "} {name:<28} {dt:6.1f}s', flush=True)
            if err: fails[name] = err
        for name,err in fails.items():
            print(f'\n---- {name} failed in a Jupyter kernel ----\n{err.rstrip()}', file=sys.stderr)
    after = git_status()
    if before is not None and after != before:
        changed = sorted(set(after.splitlines()) - set(before.splitlines()))
        print(f'\nRunning the notebooks changed the working tree (a lesson must not write into it): {changed}', file=sys.stderr)
        fails['git status'] = changed
    print(f'{len(names)-len([n for n in fails if n in names])}/{len(names)} notebooks passed in a Jupyter kernel'
          f' in {time.monotonic()-t0:.0f}s', flush=True)
    return 1 if fails else 0

if __name__ == '__main__':
    if sys.argv[1:2] == ['--one']: sys.exit(run_one(sys.argv[2]))
    if {'-h', '--help'} & set(sys.argv[1:]): print(__doc__); sys.exit(0)
    names = [n.removeprefix('nbs/') for n in sys.argv[1:]]  # `nbs/00_dbqueue.ipynb` too, as a shell completes it
    if bad := [n for n in names if not (NBS/n).is_file()]:
        sys.exit(f"run_nbs: no notebook {bad[0]!r} in nbs/ (names are relative to nbs/, e.g. 00_dbqueue.ipynb)")
    sys.exit(main(names))
