"""The house's layout holds: a lean core, imports that run one way, plots only in the bench code, the main names at the top.

DESIGN.md's layers: storage (`store`, `dbqueue`, `pgqueue`) → worker core (`worker`) → runtimes (`threads`, `aio`, `procs`)
→ LLM, web, CLI → bench. These tests read the package's source and import it in fresh interpreters, as a user would.
"""
import ast, json, os, subprocess, sys, venv
from pathlib import Path
import pytest

PKG = Path(__file__).resolve().parent.parent/'concurrency_demo'
ROOT = PKG.parent
HEAVY = {'matplotlib', 'numpy', 'openai', 'aiohttp', 'fasthtml', 'uvicorn', 'starlette', 'psycopg', 'pydantic'}
CORE = ['store', 'dbqueue', 'worker', 'threads', 'aio', 'procs']
BENCH = {'bench', 'bench_runtimes'}

def modules(): return sorted(p.stem for p in PKG.glob('*.py') if p.stem not in ('__init__', '_modidx'))

def imports(mod):
    "Every package module that `mod` imports, anywhere in its source (in functions too)"
    res = set()
    for node in ast.walk(ast.parse((PKG/f'{mod}.py').read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level: names = [base] if base else [a.name for a in node.names]
            elif base == 'concurrency_demo': names = [a.name for a in node.names]
            elif base.startswith('concurrency_demo.'): names = [base.split('.')[1]]
            else: continue
            res |= {n.split('.')[0] for n in names}
        elif isinstance(node, ast.Import):
            res |= {a.name.split('.')[1] for a in node.names if a.name.startswith('concurrency_demo.')}
    return (res & set(modules())) - {mod}  # a module naming itself (a spawned child importing it by name) is no cycle

def loaded(code):
    "The heavy packages a fresh interpreter has imported after running `code`"
    out = subprocess.run([sys.executable, '-c', f"{code}\nimport sys, json; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return set(json.loads(out.splitlines()[-1])) & HEAVY

def test_core_imports_nothing_heavy():
    "The package, its main names and the runtime modules load no web, LLM, PostgreSQL or plotting stack"
    assert loaded('import concurrency_demo as c; c.Queue, c.open_queue, c.ThreadWorkers, c.AsyncWorkers, c.ProcessWorkers') == set()
    assert loaded('; '.join(f'import concurrency_demo.{m}' for m in CORE)) == set()

def test_main_names_at_the_top():
    "`from concurrency_demo import …` gives the classes themselves; both stores share the `Store` base"
    from concurrency_demo import Queue, PgQueue, open_queue, ThreadWorkers, AsyncWorkers, ProcessWorkers, Store
    from concurrency_demo.dbqueue import Queue as Q
    from concurrency_demo.pgqueue import PgQueue as P
    assert (Queue, PgQueue) == (Q, P) and issubclass(Queue, Store) and issubclass(PgQueue, Store)
    assert not issubclass(PgQueue, Queue) and callable(open_queue)
    with pytest.raises(ImportError): from concurrency_demo import NoSuchThing

def test_no_import_cycle():
    "The package's import graph (imports inside functions included) has no cycle"
    graph = {m: imports(m) for m in modules()}
    state = {}
    def visit(m, path):
        if state.get(m) == 'done': return
        assert state.get(m) != 'active', f"import cycle: {' -> '.join(path + [m])}"
        state[m] = 'active'
        for n in sorted(graph[m]): visit(n, path + [m])
        state[m] = 'done'
    for m in graph: visit(m, [])

def test_imports_run_down():
    "No store imports another store; storage and the runtimes import nothing above them; nothing imports the bench code"
    assert imports('store') == set()
    assert imports('dbqueue') <= {'store'} and imports('pgqueue') <= {'store'}
    assert imports('worker') <= {'store'}
    for m in ('threads', 'aio', 'procs'): assert imports(m) <= {'store', 'worker'}, (m, imports(m))
    assert not [m for m in modules() if m not in BENCH and imports(m) & BENCH]

def external(mod):
    "The top-level names of every outside package that `mod` imports, anywhere in its source"
    res = set()
    for node in ast.walk(ast.parse((PKG/f'{mod}.py').read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level: res.add((node.module or '').split('.')[0])
        elif isinstance(node, ast.Import): res |= {a.name.split('.')[0] for a in node.names}
    return res

def test_matplotlib_only_in_bench_code():
    users = sorted(m for m in modules() if 'matplotlib' in external(m))
    assert set(users) <= BENCH, users

def test_cli_counts_without_the_web_app(tmp_path):
    "`cdemo stats` and `cdemo enqueue` load only the store (and the prompt check): no web app, no LLM client"
    db = tmp_path/'jobs.db'
    run = lambda *a: f"from concurrency_demo.cli import main; main({list(a)!r})"
    assert loaded(run('enqueue', '--db', str(db), 'hello')) == set()
    assert loaded(run('stats', '--db', str(db), '--json')) == set()

@pytest.mark.timeout(600)
def test_lean_install(tmp_path):
    "`pip install .` without extras: the core's packages only, under 45 MB of site-packages with pip and setuptools"
    venv.create(tmp_path/'v', with_pip=True)
    py = tmp_path/'v'/'bin'/'python'
    pip = subprocess.run([py, '-m', 'pip', 'install', '-q', '--disable-pip-version-check', str(ROOT)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    site = next((tmp_path/'v'/'lib').glob('python*/site-packages'))
    mb = sum(p.stat().st_size for p in site.rglob('*') if p.is_file())/2**20
    assert mb < 45, f'{mb:.1f} MB'
    # the venv's own view of what is installed (not `pip list`, which prints nothing under CI's PIP_QUIET=1)
    dists = "import importlib.metadata as m, json; print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"
    names = subprocess.run([py, '-c', dists], capture_output=True, text=True)
    assert names.returncode == 0, names.stderr[-2000:]
    names = {n.lower() for n in json.loads(names.stdout)}
    assert 'concurrency-demo' in names or 'concurrency_demo' in names, names
    assert not names & {'matplotlib', 'numpy', 'openai', 'psycopg', 'python-fasthtml', 'uvicorn', 'aiohttp'}, names
    code = "import concurrency_demo as c, tempfile, os; q = c.open_queue(os.path.join(tempfile.mkdtemp(), 'q.db')); q.enqueue(1); print(q.counts())"
    out = subprocess.run([py, '-c', code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and "'queued': 1" in out.stdout, out.stderr[-2000:]
