"""The console and `cdemo` under faults (issue "Faults"): a PostgreSQL server that restarts or is away, a file that is
not a SQLite database or is read-only, and cancel/retry of a job on any of the console's queues.

The restart tests use a throwaway server of this module's own (`pg_tmp_cluster`), never the shared `CDEMO_PG_DSN` one.
"""
import os, socket, subprocess, sys
import pytest
from helpers import wait_until, cdemo
from starlette.testclient import TestClient
from concurrency_demo.app import make_app
from concurrency_demo.store import open_queue
from concurrency_demo.pgqueue import pg_database, pg_tmp_cluster
from concurrency_demo.fakeai import FakeAI

pytestmark = pytest.mark.timeout(180)
HX = {'HX-Request': 'true'}

@pytest.fixture(scope='module')
def fake():
    with FakeAI(latency=0.05) as url: yield url

def status(c, path='/stats.json'):
    try: return c.get(path, headers=HX).status_code
    except Exception as e: return repr(e)

def test_cancel_and_retry_a_job_of_each_queue(store):
    "The console changes a job through the job's own queue: a CPU job cancels and retries like an LLM job"
    with TestClient(make_app(store, workers=False)) as c:
        c.post('/llm', data={'prompts': 'a'}, headers=HX); c.post('/cpu', data={'fn': 'fib', 'arg': '20', 'count': '1'}, headers=HX)
        for id,queue in ((1, 'llm'), (2, 'cpu')):
            r = c.post(f'/jobs/{id}/cancel', headers=HX)
            assert r.status_code == 200 and 'cancelled' in r.text, (queue, r.text)
            assert c.get('/stats.json').json()[queue]['cancelled'] == 1
            r = c.post(f'/jobs/{id}/retry', headers=HX)
            assert r.status_code == 200 and 'queued' in r.text, (queue, r.text)
            assert c.get('/stats.json').json()[queue] == dict(queued=1, running=0, done=0, dead=0, cancelled=0)

def test_console_rides_out_a_postgres_restart(cluster, fake):
    "Server stopped under the console: 503 with one line, no traceback; back by itself once it starts; every job ends done"
    with pg_database(cluster, 'cdemo_console') as url, \
         TestClient(make_app(url, base_url=fake, concurrency=5, cpu_workers=1, poll=0.1)) as c:
        assert c.post('/llm', data={'prompts': '\n'.join(f'p{i}' for i in range(40))}, headers=HX).status_code == 200
        assert c.post('/cpu', data={'fn': 'fib', 'arg': '20', 'count': '3'}, headers=HX).status_code == 200
        wait_until(lambda: c.get('/stats.json').json()['llm']['done'] >= 5)
        cluster.stop()
        try:
            for path in ('/stats.json', '/', '/jobs', '/jobs/1'):
                r = c.get(path, headers=HX)
                assert r.status_code == 503, (path, r.status_code, r.text[:300])
                assert 'PostgreSQL' in r.text and 'unavailable' in r.text and 'Traceback' not in r.text and r.text.strip().count("\n") == 0, r.text
            r = c.post('/llm', data={'prompts': 'while away'}, headers=HX)
            assert r.status_code == 503 and 'unavailable' in r.text
        finally: cluster.start()
        wait_until(lambda: status(c) == 200, timeout=30)
        assert c.get('/', headers=HX).status_code == 200
        assert c.post('/llm', data={'prompts': 'after'}, headers=HX).status_code == 200
        wait_until(lambda: c.get('/stats.json').json() == {'llm': dict(queued=0, running=0, done=41, dead=0, cancelled=0),
                                                           'cpu': dict(queued=0, running=0, done=3, dead=0, cancelled=0)}, timeout=60)
        # the connections are killed under it, too: the next call reconnects
        import psycopg
        with psycopg.connect(url, autocommit=True) as k:
            k.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname=current_database() AND pid<>pg_backend_pid()")
        wait_until(lambda: status(c) == 200, timeout=30)

# ---- cdemo: one-line errors ---------------------------------------------------------------------------------------------

def closed_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

CMDS = dict(stats=(), enqueue=('hello',), serve=('--port', '0'), worker=())

def one_line_error(r, cmd, *words):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith(f'cdemo: error: {cmd}: '), (r.returncode, r.stderr[-2000:])
    for w in words: assert w in lines[0], lines[0]
    return lines[0]

@pytest.mark.parametrize('cmd', list(CMDS))
def test_cdemo_unreachable_postgres(cmd):
    r = cdemo(cmd, *CMDS[cmd], '--db', f'postgresql://app:secret@127.0.0.1:{closed_port()}/jobs')
    line = one_line_error(r, cmd, 'PostgreSQL', 'unavailable')
    assert 'secret' not in line

def test_cdemo_restarting_postgres(cluster):
    "While the server is down: one line from each command; once it is back, the command works"
    with pg_database(cluster, 'cdemo_cli') as url:
        cluster.stop()
        try:
            for cmd in CMDS: one_line_error(cdemo(cmd, *CMDS[cmd], '--db', url), cmd, 'unavailable')
        finally: cluster.start()
        r = cdemo('enqueue', 'back', '--db', url)
        assert r.returncode == 0 and r.stdout.strip() == '1', r.stderr

@pytest.mark.parametrize('cmd', list(CMDS))
def test_cdemo_not_a_database(cmd, tmp_path):
    p = tmp_path/'notes.txt'; p.write_text('not a database ' * 100)
    one_line_error(cdemo(cmd, *CMDS[cmd], '--db', p), cmd, 'not a SQLite database')
    assert p.read_text() == 'not a database ' * 100

@pytest.fixture
def read_only(tmp_path):
    "A folder holding a queue database with one queued job, bind-mounted read-only (needs root on Linux)"
    d, m = tmp_path/'d', tmp_path/'ro'; d.mkdir(); m.mkdir()
    with open_queue(str(d/'q.db')) as q: q.enqueue(1)
    if os.geteuid() or subprocess.run(['mount', '--bind', str(d), str(m)], capture_output=True).returncode: pytest.skip('no bind mounts here')
    try:
        if subprocess.run(['mount', '-o', 'remount,bind,ro', str(m)], capture_output=True).returncode: pytest.skip('no read-only remount here')
        yield m/'q.db'
    finally:
        if subprocess.run(['umount', str(m)], capture_output=True).returncode: subprocess.run(['umount', '-l', str(m)], capture_output=True)
    with open_queue(str(d/'q.db')) as q: assert q.stats()['queued'] == 1

@pytest.mark.parametrize('cmd', list(CMDS))
def test_cdemo_read_only_file(cmd, read_only):
    one_line_error(cdemo(cmd, *CMDS[cmd], '--db', read_only), cmd, 'read-only')
