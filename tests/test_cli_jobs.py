"cdemo jobs / show / retry / cancel / prune / stats --by-queue on both stores, and every error in one line"
import json, os, stat
import pytest
from helpers import cdemo
from concurrency_demo.store import open_queue

@pytest.fixture
def db(store):
    m = open_queue(store, name='mail')
    m.enqueue_many([{'to': f'user{i}@example.com'} for i in range(5)])
    m.fail(m.dequeue(), 'SMTP 550: mailbox full', retry=False)
    m.ack(m.dequeue(), {'sent': True})
    open_queue(store, name='img').enqueue({'task': 'resize', 'args': ['a.png'], 'kwargs': {}}, key='a')
    yield store

def ok(*args):
    r = cdemo(*args)
    assert r.returncode == 0 and r.stderr == '', r.stderr
    return r.stdout

def one_line_error(*args, has=''):
    r = cdemo(*args)
    assert r.returncode == 2 and r.stdout == '' and r.stderr.count('\n') == 1 and r.stderr.startswith('cdemo: error: '), r.stderr
    assert has in r.stderr, r.stderr
    return r.stderr

def test_jobs(db):
    lines = ok('jobs', '--db', db).splitlines()
    assert lines[0].split()[:4] == ['id', 'queue', 'status', 'tries'] and [l.split()[0] for l in lines[1:]] == ['6', '5', '4', '3', '2', '1']
    js = json.loads(ok('jobs', '--db', db, '--json'))
    assert [j['id'] for j in js] == [6, 5, 4, 3, 2, 1] and js[-1]['error'] == 'SMTP 550: mailbox full'
    ids = lambda *a: [j['id'] for j in json.loads(ok('jobs', '--db', db, '--json', *a))]
    assert ids('--status', 'dead') == [1] and ids('--queue', 'img') == [6] and ids('--task', 'resize') == [6]
    assert ids('--q', 'user3@') == [4] and ids('--limit', '2') == [6, 5] and ids('--limit', '2', '--before', '5') == [4, 3]
    assert ids('--oldest', '--limit', '2') == [1, 2]
    one_line_error('jobs', '--db', db, '--status', 'lost', has='Unknown status')
    one_line_error('jobs', '--db', db, '--limit', '0', has='n must be')

def test_show(db):
    out = ok('show', '--db', db, '1')
    assert 'dead' in out and 'SMTP 550: mailbox full' in out and 'user0@example.com' in out
    assert json.loads(ok('show', '--db', db, '2', '--json'))['result'] == {'sent': True}
    assert json.loads(ok('show', '--db', db, '6', '--json'))['key'] == 'a'
    one_line_error('show', '--db', db, '99', has='no job 99')
    one_line_error('show', '--db', db, 'abc', has='invalid int')

def test_retry_cancel(db):
    assert ok('retry', '--db', db, '1') == 'job 1: queued\n'
    assert ok('cancel', '--db', db, '1') == 'job 1: cancelled\n'
    assert ok('cancel', '--db', db, '6') == 'job 6: cancelled\n'  # in its own queue, img
    one_line_error('retry', '--db', db, '2', has='is done, not dead or cancelled')
    one_line_error('cancel', '--db', db, '2', has='is done, not queued or running')
    one_line_error('retry', '--db', db, '42', has='no job 42')
    running = open_queue(db, name='mail').dequeue()
    assert ok('cancel', '--db', db, str(running.id)) == f'job {running.id}: cancelled\n'

def test_prune_and_stats(db):
    assert ok('prune', '--db', db, '--older-than', '1h') == 'deleted 0 finished jobs older than 1h\n'
    assert ok('prune', '--db', db, '--older-than', '0', '--queue', 'img') == 'deleted 0 finished jobs older than 0\n'
    assert ok('prune', '--db', db, '--older-than', '0') == 'deleted 2 finished jobs older than 0\n'
    one_line_error('prune', '--db', db, has='give --older-than')
    one_line_error('prune', '--db', db, '--older-than', 'a week', has='30m, 12h, 7d')
    per = json.loads(ok('stats', '--db', db, '--json', '--by-queue'))
    assert per == {'img': dict(queued=1, running=0, done=0, dead=0, cancelled=0), 'mail': dict(queued=3, running=0, done=0, dead=0, cancelled=0)}

@pytest.mark.parametrize('port', ['99999', '-1', '65536'])
def test_bad_port_one_line(tmp_path, port):
    one_line_error('serve', '--db', tmp_path/'j.db', '--port', port, '--no-workers', has='--port must be from 0 to 65535')

def test_non_loopback_needs_token(tmp_path):
    one_line_error('serve', '--db', tmp_path/'j.db', '--host', '0.0.0.0', '--port', '0', '--no-workers', has='needs --token')

@pytest.mark.parametrize('cmd', [['jobs'], ['show', '1'], ['retry', '1'], ['cancel', '1'], ['prune', '--older-than', '1d'], ['stats']])
def test_store_errors_one_line(tmp_path, cmd):
    "An unreachable PostgreSQL, a missing file, a file that isn't SQLite: one line each"
    one_line_error(*cmd, '--db', 'postgresql://nobody@127.0.0.1:1/x', has='unavailable')
    one_line_error(*cmd, '--db', tmp_path/'nope.db', has='No database at')
    bad = tmp_path/'not.db'; bad.write_text('hello, not a database')
    one_line_error(*cmd, '--db', bad, has='not a SQLite database')

@pytest.mark.skipif(os.geteuid() == 0, reason='root writes read-only files anyway')
def test_read_only_file_one_line(db, tmp_path):
    if '://' in db and not db.startswith('sqlite'): pytest.skip('a file')
    os.chmod(db, stat.S_IRUSR)
    one_line_error('retry', '--db', db, '1')
