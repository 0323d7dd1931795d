"`cdemo`, run as a user runs it: help, one-line errors, enqueue and stats, serve and worker started and stopped by signals"
import json, os, re, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from helpers import wait_until, cdemo, TASKS_APP
from concurrency_demo.store import open_queue
from concurrency_demo.fakeai import FakeAI

CMDS = ['serve', 'worker', 'enqueue', 'stats', 'fakeai', 'bench']

def start(*args, env=None):
    "Start a long-running `cdemo` command; return the process and its first line of output"
    p = subprocess.Popen([sys.executable, '-c', 'from concurrency_demo.cli import main; main()', *map(str, args)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = p.stdout.readline()
    if not line: p.wait(10); err = p.stderr.read(); print(err); pytest.fail(f'cdemo {args[0]} exited {p.returncode}: {err[-3000:]}', pytrace=False)
    return p,line

def stop(p, sig=signal.SIGTERM, timeout=30):
    p.send_signal(sig)
    out,err = p.communicate(timeout=timeout)
    return p.returncode,out,err

def url_of(line): return re.search(r'http://127\.0\.0\.1:\d+', line)[0]
def get(url, path='/'): return urllib.request.urlopen(url + path, timeout=10).read().decode()

def test_console_script_installed():
    "The `cdemo` console script (pyproject's [project.scripts]) runs"
    r = subprocess.run(['cdemo', '--help'], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and all(c in r.stdout for c in CMDS)

@pytest.mark.parametrize('cmd', CMDS)
def test_help(cmd):
    r = cdemo(cmd, '--help')
    assert r.returncode == 0 and r.stdout.startswith(f'usage: cdemo {cmd}') and r.stderr == ''

@pytest.mark.parametrize('args', [[], ['frobnicate'], ['serve', '--port', 'eighty'], ['serve', '--bogus'], ['worker', '--concurrency', 'lots'],
                                  ['stats', '--db', 'no/such/dir/jobs.db'], ['stats', '--db', 'missing.db'], ['enqueue', '--db', 'x.db'],
                                  ['enqueue', '--db', 'x.db', '  '], ['serve', '--llm', 'claude', '--port', '0'], ['serve', '--concurrency', '0', '--port', '0'],
                                  ['worker', '--cpu-workers', '-1', '--llm', 'fake', '--base-url', 'http://127.0.0.1:9/v1']])
def test_bad_argument(args, tmp_path):
    "One line on stderr, exit code 2, nothing created"
    r = cdemo(*args, cwd=tmp_path)
    assert r.returncode == 2, r
    assert r.stderr.startswith('cdemo: error: ') and r.stderr.count('\n') == 1, r.stderr
    assert r.stdout == '' and list(tmp_path.iterdir()) == []

def test_enqueue_stats(tmp_path):
    db = tmp_path/'jobs.db'
    r = cdemo('enqueue', '--db', db, 'Tell me a joke', 'What is the capital of France?', '<script>')
    assert (r.returncode, r.stdout, r.stderr) == (0, '1\n2\n3\n', '')
    q = open_queue(db, name='llm')
    assert [q.get(i).data for i in (1, 2, 3)] == [{'prompt': 'Tell me a joke'}, {'prompt': 'What is the capital of France?'}, {'prompt': '<script>'}]
    q.ack(q.dequeue(), 'ok')
    r = cdemo('stats', '--db', db, '--json')
    assert r.returncode == 0 and json.loads(r.stdout) == dict(queued=2, running=0, done=1, dead=0, cancelled=0) and r.stdout.count('\n') == 1
    r = cdemo('stats', '--db', db)
    assert r.returncode == 0 and re.search(r'llm\s+2\s+0\s+1\s+0', r.stdout)

def test_enqueue_refuses_all_on_one_bad(tmp_path):
    db = tmp_path/'jobs.db'
    r = cdemo('enqueue', '--db', db, 'fine', 'x'*(32*1024+1))
    assert r.returncode == 2 and '32 KiB' in r.stderr
    r = cdemo('enqueue', '--db', db, 'fine')
    assert r.stdout == '1\n', r

def test_serve_and_sigterm(tmp_path):
    "`cdemo serve` answers on a free port; SIGTERM with jobs in flight stops it and leaves no job running"
    db = tmp_path/'jobs.db'
    p,line = start('serve', '--db', db, '--port', 0, '--latency', 30, '--cpu-workers', 0, '--stop-timeout', 0.5)
    try:
        url = url_of(line)
        assert 'Job console' in get(url)
        assert cdemo('enqueue', '--db', db, 'slow one', 'slow two').returncode == 0
        q = open_queue(db, name='llm')
        wait_until(lambda: q.stats()['running'] == 2)
    finally: code,out,err = stop(p)
    assert code == 0 and out.strip() == 'Stopped.' and err == '', (code, out, err)
    assert q.stats() == dict(queued=2, running=0, done=0, dead=0, cancelled=0)
    assert q.get(1).attempts == 0

def test_serve_sigint_drains_fast_jobs(tmp_path):
    db = tmp_path/'jobs.db'
    p,line = start('serve', '--db', db, '--port', 0, '--latency', 0.01, '--cpu-workers', 1)
    try:
        url = url_of(line)
        urllib.request.urlopen(urllib.request.Request(url + '/cpu', data=b'fn=fib&arg=18&count=2', method='POST'), timeout=10)
        assert cdemo('enqueue', '--db', db, 'a', 'b', 'c').returncode == 0
        wait_until(lambda: json.loads(get(url, '/stats.json')) == {'llm': dict(queued=0, running=0, done=3, dead=0, cancelled=0), 'cpu': dict(queued=0, running=0, done=2, dead=0, cancelled=0)})
    finally: code,out,err = stop(p, signal.SIGINT)
    assert (code, err) == (0, ''), (code, out, err)

def test_port_in_use(tmp_path):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); s.listen()
        r = cdemo('serve', '--db', tmp_path/'jobs.db', '--port', s.getsockname()[1])
    assert r.returncode == 2 and "can't listen on 127.0.0.1" in r.stderr and r.stderr.count('\n') == 1

def test_no_api_key_printed(tmp_path):
    "With the real API's settings (against a local fake here), nothing printed shows the key"
    key = 'sk-test-very-secret-key-1234'
    with FakeAI(latency=0.01) as base:
        env = dict(os.environ, OPENAI_API_KEY=key)
        p,line = start('serve', '--db', tmp_path/'jobs.db', '--port', 0, '--llm', 'openai', '--base-url', base, '--cpu-workers', 0, env=env)
        try:
            url = url_of(line)
            assert cdemo('enqueue', '--db', tmp_path/'jobs.db', 'hi').returncode == 0
            wait_until(lambda: json.loads(get(url, '/stats.json'))['llm']['done'] == 1)
            page = get(url)
        finally: code,out,err = stop(p)
    assert code == 0
    for text in (line, out, err, page): assert key not in text and 'very-secret' not in text

def test_worker_apart(tmp_path):
    "`cdemo serve --no-workers` takes jobs; a separate `cdemo worker` on the same database runs them, and stops on SIGINT"
    db = tmp_path/'jobs.db'
    srv,line = start('serve', '--db', db, '--port', 0, '--no-workers')
    wrk = None
    try:
        url = url_of(line)
        assert 'no workers' in line
        assert cdemo('enqueue', '--db', db, *[f'prompt {i}' for i in range(10)]).returncode == 0
        time.sleep(0.3)
        assert json.loads(get(url, '/stats.json'))['llm']['queued'] == 10
        wrk,wline = start('worker', '--db', db, '--latency', 0.01, '--concurrency', 4, '--cpu-workers', 0)
        assert 'Workers on' in wline
        wait_until(lambda: json.loads(get(url, '/stats.json'))['llm']['done'] == 10)
        code,out,err = stop(wrk, signal.SIGINT); wrk = None
        assert code == 0 and '10 LLM jobs' in out and err == '', (code, out, err)
    finally:
        if wrk: stop(wrk)
        assert stop(srv)[0] == 0
    q = open_queue(db, name='llm')
    assert q.stats() == dict(queued=0, running=0, done=10, dead=0, cancelled=0)

def test_worker_runs_your_tasks(tmp_path):
    "`cdemo worker --tasks app:tasks`, in the app's folder, runs the registry's pools (threads and the event loop); SIGTERM stops it, releasing what runs"
    (tmp_path/'app.py').write_text(TASKS_APP)
    p = subprocess.Popen([sys.executable, '-c', 'from concurrency_demo.cli import main; main()', 'worker', '--tasks', 'app:tasks', '--threads', '2',
                          '--stop-timeout', '1'],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line.startswith('Workers of app:tasks on jobs.db: queue default on threads, queue io on async, queue slow on threads'), (line, p.stderr.read() if not line else '')
    sys.path.insert(0, str(tmp_path)); cwd = os.getcwd(); os.chdir(tmp_path)
    try:
        import importlib, app; importlib.reload(app)
        hs = [app.double.enqueue(i) for i in range(5)] + [app.adouble.enqueue(21)]
        assert [h.result(timeout=30) for h in hs] == [0, 2, 4, 6, 8, 42]
        slow = app.nap.enqueue(30)
        wait_until(lambda: slow.status == 'running', timeout=20)
        code,out,err = stop(p)
        assert code == 0 and out.strip().endswith('Stopped.') and slow.status == 'queued', (code, out, err)
    finally:
        os.chdir(cwd); sys.path.remove(str(tmp_path)); sys.modules.pop('app', None)
        if p.poll() is None: p.kill()

@pytest.mark.parametrize('spec', ['app', 'nope:tasks', 'app:double', 'app:missing'])
def test_worker_tasks_bad_spec(spec, tmp_path):
    "A --tasks that doesn't name a Tasks registry is a one-line error, exit 2"
    (tmp_path/'app.py').write_text(TASKS_APP)
    r = subprocess.run([sys.executable, '-c', 'from concurrency_demo.cli import main; main()', 'worker', '--tasks', spec], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith('cdemo: error: worker: --tasks') and r.stderr.count('\n') == 1, r.stderr

def test_serve_sigterm_to_the_group(tmp_path):
    "SIGTERM to the whole process group (systemd, `timeout`, a container's init) stops `cdemo serve` cleanly: its worker processes leave the shutdown to it, none is restarted or reported crashed, no job is left running"
    db = tmp_path/'jobs.db'
    p = subprocess.Popen([sys.executable, '-c', 'from concurrency_demo.cli import main; main()', 'serve', '--db', str(db), '--port', '0', '--cpu-workers', '2',
                          '--stop-timeout', '0.5'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        url = url_of(p.stdout.readline())
        urllib.request.urlopen(urllib.request.Request(url + '/cpu', data=b'fn=busy&arg=20000&count=2', method='POST'), timeout=10)
        q = open_queue(db, name='cpu')
        wait_until(lambda: q.stats()['running'] == 2)
        os.killpg(p.pid, signal.SIGTERM)
        out,err = p.communicate(timeout=60)
    finally:
        if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 0 and out.strip() == 'Stopped.' and 'exited with code' not in err and 'Traceback' not in err, (p.returncode, out, err)
    assert q.stats() == dict(queued=2, running=0, done=0, dead=0, cancelled=0)
