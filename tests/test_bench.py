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
