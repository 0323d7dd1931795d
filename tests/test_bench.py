"`cdemo bench --quick` runs every benchmark and writes one JSON with every section and the machine; it asserts no speed"
import json, subprocess, sys
from pathlib import Path
import pytest
from concurrency_demo.bench import bench_sections, load_bench, run_all

@pytest.mark.timeout(120)
def test_quick_run_writes_every_section(tmp_path):
    out = tmp_path/'results.json'
    p = subprocess.run([sys.executable, '-m', 'concurrency_demo.bench', '--quick', '--out', str(out)],
                       capture_output=True, text=True, timeout=110, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads(out.read_text())
    assert set(res) == {'machine', *bench_sections}
    assert {'cpus', 'cpu', 'load', 'date', 'python'} <= set(res['machine'])
    for k in bench_sections:
        d = res[k]
        assert d['section'] == k and d['quick'] is True and 'machine' in d
        assert ('results' in d) != ('skipped' in d), f"{k}: exactly one of results or skipped, got {sorted(d)}"
        assert load_bench(k, tmp_path) == d  # the per-section file is what was merged
    q = res['queue']['results']
    assert {'rates', 'backlog', 'procs', 'pragmas', 'targets', 'fsync_ms'} <= set(q)
    assert {'raw SQLite', 'Queue', 'Queue durable'} <= set(q['rates'])
    assert (tmp_path/'queue.png').exists()

def test_help():
    p = subprocess.run([sys.executable, '-m', 'concurrency_demo.bench', '--help'], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and '--quick' in p.stdout and '--sections' in p.stdout

def test_unknown_section_changes_nothing(tmp_path):
    with pytest.raises(ValueError, match='gpu'): run_all(['queue', 'gpu'], quick=True, out=tmp_path/'r.json')
    assert list(tmp_path.iterdir()) == []

def test_quick_default_out_is_not_the_repo():
    "A quick run without --out writes to a temporary folder, never over the stored results"
    from concurrency_demo.bench import default_out, bench_dir
    assert default_out(quick=True).parent != bench_dir()
    assert default_out().parent == bench_dir()

def test_sections_live_in_the_bench_modules():
    "Every section's benchmark is in `bench` or `bench_runtimes`, never in a lesson's module"
    from concurrency_demo.bench import find_bench
    for k,(mods,fn,plot) in bench_sections.items():
        assert set(mods) <= {'bench', 'bench_runtimes'}, k
        f = find_bench(k)
        assert isinstance(f, str) or f.__module__ in ('concurrency_demo.bench', 'concurrency_demo.bench_runtimes'), k

def test_child_functions_are_importable_by_name():
    "What a spawned or forkserver child runs must be importable from the module, not defined in a notebook"
    import concurrency_demo.bench_runtimes as br
    for n in ('_bench_worker', '_lib_worker', '_fanout_child', '_burn', '_nap', '_ping'):
        assert getattr(br, n).__module__ == 'concurrency_demo.bench_runtimes', n

def test_importing_the_bench_modules_loads_no_plotting():
    "matplotlib, fastprogress and the extras load only when a section or a plot runs"
    code = ("import sys, concurrency_demo.bench, concurrency_demo.bench_runtimes; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'fastprogress', 'openai', 'fasthtml', 'psycopg', 'uvicorn'}))")
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == '[]', p.stdout + p.stderr

class _ListQueue:
    "A benchmark adapter over a list, to count what `bench_backlog` leaves waiting"
    def __init__(self, path): self.jobs = []
    def put_many(self, xs): self.jobs += list(xs)
    def take(self): self.jobs.pop(0)
    def take_many(self, n):
        k = min(n, len(self.jobs)); del self.jobs[:k]
        return k
    def checkpoint(self): pass
    def close(self): pass

def test_backlog_keeps_its_size():
    "Each timed drain takes `m` jobs, one at a time or in batches, and the top-up restores the backlog it was measured with"
    from concurrency_demo.bench import bench_backlog
    made = []
    def mk(path): made.append(o := _ListQueue(path)); return o
    bench_backlog(mk, sizes=(100, 1000), m=50, batch=20, repeats=2)
    assert [len(o.jobs) for o in made] == [100, 1000]

def test_drain_takes_exactly_n(tmp_path):
    from concurrency_demo.bench import QueueImpl, _drain
    o = QueueImpl(tmp_path/'q'); o.put_many(range(300))
    _drain(o, 130, 50)()
    s = o.q.stats()
    o.close()
    assert (s['queued'], s['done']) == (170, 130)
