"""Storage faults (issue 17): a lost PostgreSQL server, a second SQLite library, files deleted or replaced, bad settings,
another queue's jobs, a clock stepped backwards. Each test runs on both stores where both apply."""
import json, math, os, subprocess, sys, textwrap, threading, time
import psycopg, pytest
from concurrency_demo.store import FakeClock, LeaseLost, StoreUnavailable, open_queue
from concurrency_demo.pgqueue import PgQueue, pg_database, pg_tmp_cluster

def _retry(f, timeout=20):
    "Call `f` until it stops raising `StoreUnavailable`, as a worker would (with a short pause)"
    end = time.monotonic() + timeout
    while True:
        try: return f()
        except StoreUnavailable:
            if time.monotonic() > end: raise
            time.sleep(0.05)

# ---------------------------------------------------------------------------------------------------------------------
# PostgreSQL: restarts, crashes, killed backends

def test_pg_restart_and_crash_under_a_draining_queue(cluster):
    "A queue enqueueing and draining through a restart and a crash: StoreUnavailable during the outage, then it serves again; every job done"
    with pg_database(cluster, 'faults') as url:
        q = PgQueue(url, busy_timeout=2)
        ids = set(q.enqueue_many(range(50)))
        for mode in ('fast', 'immediate'):
            for _ in range(10): (j := q.dequeue()) and q.ack(j, j.data)
            q.wait(0)
            cluster.restart(mode=mode)
            with pytest.raises(StoreUnavailable, match='is unavailable'): q.stats()
            ids.add(_retry(lambda: q.enqueue('after ' + mode)))
            PgQueue(url).enqueue('wake')  # sent after the reconnect, so `wait` hears it
            assert q.wait(5)
        ids.add(PgQueue(url).enqueue('last'))
        while (js := _retry(lambda: q.dequeue_many(20))): _retry(lambda: q.ack_many(js))
        st = q.stats()
        assert st == dict(queued=0, running=0, done=len(ids)+2, dead=0, cancelled=0)

def test_pg_killed_backend_mid_ack(cluster):
    "pg_terminate_backend between claim and ack: that ack raises StoreUnavailable, the job comes back by its lease, nothing lost"
    with pg_database(cluster, 'faults') as url:
        clk = FakeClock()
        q = PgQueue(url, lease=10, clock=clk)
        jid = q.enqueue('x')
        j = q.dequeue()
        with psycopg.connect(url, autocommit=True) as a: a.execute("SELECT pg_terminate_backend(%s)", (q.conn.info.backend_pid,))
        with pytest.raises(StoreUnavailable): q.ack(j, 'lost ack')
        clk.tick(11)
        j2 = _retry(q.dequeue)
        assert (j2.id, j2.attempts) == (jid, 2)
        q.ack(j2, 'ok')
        assert q.get(jid).result == 'ok'

def test_pg_reconnect_backs_off(cluster):
    "While the server is down, calls raise at once without a connection attempt each time, and it reconnects when it is back"
    with pg_database(cluster, 'faults') as url:
        q = PgQueue(url, busy_timeout=1)
        cluster.stop()
        try:
            tries, t = 0, time.monotonic()
            real = q._connect
            def counting(): nonlocal tries; tries += 1; return real()
            q._connect = counting
            while time.monotonic() - t < 1.5:
                with pytest.raises(StoreUnavailable): q.stats()
            assert 2 <= tries <= 8, tries  # backoff 0.1, 0.2, 0.4, 0.8 s: not one attempt per call
            assert not q.wait(0.2)  # wait sleeps the outage out, it doesn't raise
        finally: cluster.start()
        assert _retry(q.stats)['queued'] == 0

def test_pg_unreachable_is_one_line():
    "A server nobody listens on: StoreUnavailable with one line, naming the server without its password"
    from concurrency_demo.pgqueue import _free_port
    url = f'postgresql://me:secret@127.0.0.1:{_free_port()}/db'
    with pytest.raises(StoreUnavailable) as e: open_queue(url, busy_timeout=1)
    assert '\n' not in str(e.value) and 'secret' not in str(e.value) and 'is unavailable' in str(e.value)

def test_pg_durable_by_default(store):
    "PostgreSQL: synchronous_commit=on unless durable=False; SQLite keeps synchronous=NORMAL unless durable=True"
    if not store.startswith('postgresql://'):
        q = open_queue(store)
        assert (q.durable, q.conn.execute("PRAGMA synchronous").fetchall()[0][0]) == (False, 1)
        return
    def sc(**kw): return open_queue(store, **kw).conn.execute("SHOW synchronous_commit").fetchone()[0]
    assert (sc(), sc(durable=False), sc(durable=True)) == ('on', 'off', 'on')

# ---------------------------------------------------------------------------------------------------------------------
# A second copy of SQLite in the process

_naive = r'''
import apsw, sqlite3, subprocess, sys
f, guard = sys.argv[1], sys.argv[2] == 'guard'
if guard: from concurrency_demo.dbqueue import Queue; q = Queue(f); a = q.conn
else: a = apsw.Connection(f); a.execute("PRAGMA journal_mode=wal").fetchall(); a.execute("CREATE TABLE job(id INTEGER PRIMARY KEY, x)")
a.setbusytimeout(5000)
other = """import apsw, sys
c = apsw.Connection(sys.argv[1]); c.setbusytimeout(5000)
c.execute('CREATE TABLE IF NOT EXISTS t2(x)'); c.execute('BEGIN IMMEDIATE')
for i in range(500): c.execute('INSERT INTO t2 VALUES (randomblob(200))')
c.execute('COMMIT')"""
a.execute("CREATE TABLE IF NOT EXISTS t1(x)")
a.execute("BEGIN IMMEDIATE")                      # the queue holds the write lock...
for i in range(500): a.execute("INSERT INTO t1 VALUES (randomblob(200))")
try:                                              # ...while the app reads the same file with the stdlib, and closes it
    s = sqlite3.connect(f); s.execute("SELECT count(*) FROM sqlite_master").fetchall(); s.close(); print('stdlib opened it')
except ValueError as e: print('refused:', e)
p = subprocess.Popen([sys.executable, '-c', other, f])  # another process writes: it must wait for the queue's lock
import time; time.sleep(1)
a.execute("COMMIT"); p.wait(30)
c = apsw.Connection(f)
print('rows', c.execute("SELECT (SELECT count(*) FROM t1), (SELECT count(*) FROM t2)").fetchall()[0])
print('check', c.execute("PRAGMA integrity_check").fetchall()[0][0])
'''

def _naive_run(tmp_path, mode):
    r = subprocess.run([sys.executable, '-c', _naive, str(tmp_path/f'{mode}.db'), mode], capture_output=True, text=True, timeout=60)
    return r.stdout + r.stderr

def test_second_sqlite_naive_setup_loses_commits(tmp_path):
    "Without the guard, the stdlib's close() drops apsw's locks: two writers commit at once and one's commit is lost (or the file breaks)"
    out = _naive_run(tmp_path, 'naive')
    assert 'stdlib opened it' in out
    assert 'rows (500, 500)' not in out or 'check ok' not in out, out

def test_second_sqlite_guard_prevents_it(tmp_path):
    "With a Queue on the file, the stdlib's sqlite3.connect is refused with one line, and both writers' rows survive"
    out = _naive_run(tmp_path, 'guard')
    assert 'refused: sqlite3 refused to open' in out and 'howtocorrupt' in out
    assert 'rows (500, 500)' in out and 'check ok' in out, out

def test_queue_refuses_a_file_sqlite3_has_open(tmp_path):
    import sqlite3
    s = sqlite3.connect(tmp_path/'app.db'); s.execute("CREATE TABLE t(x)")
    with pytest.raises(ValueError, match='something else in this process'): open_queue(str(tmp_path/'app.db'))
    s.close()
    assert open_queue(str(tmp_path/'app.db')).stats()['queued'] == 0

def test_queues_opened_at_once_in_threads_are_not_refused(tmp_path):
    "The guard's check, open and count happen under one lock: threads opening the same file together all succeed"
    f = str(tmp_path/'q.db'); open_queue(f).close()
    for _ in range(20):
        got, errs, go = [], [], threading.Barrier(8)
        def opener():
            go.wait()
            try: got.append(open_queue(f))
            except Exception as e: errs.append(e)
        ts = [threading.Thread(target=opener) for _ in range(8)]
        for t in ts: t.start()
        for t in ts: t.join()
        assert not errs and len(got) == 8, errs[:1]
        for q in got: q.close()

def test_a_reopen_is_not_refused_while_the_watcher_reads(tmp_path, monkeypatch):
    "The file watcher's own apsw connection, busy in its thread (so it can't say its file), isn't taken for the stdlib's sqlite3"
    from concurrency_demo import dbqueue
    f = str(tmp_path/'w.db'); q = open_queue(f); q._listen(); q.close()  # the watcher keeps the file open for the process's life
    monkeypatch.setattr(dbqueue, '_filename', lambda c: None)  # as if every apsw connection were busy in another thread right now
    open_queue(f).close()

def test_no_count_left_by_a_queue_dropped_unclosed(tmp_path):
    "A Queue collected without close() leaves no count of its file, and a count left anyway (its file gone, the inode number "
    "reused) doesn't refuse the stdlib's sqlite3 on a file no queue holds (lesson 08's huey bench was refused so in nbdev-test)"
    import gc, sqlite3
    from concurrency_demo import dbqueue
    f = tmp_path/'d.db'; q = open_queue(str(f)); ino = dbqueue._inode(f)
    assert dbqueue._queue_files.get(ino) == 1
    del q; gc.collect()
    assert ino not in dbqueue._queue_files
    dbqueue._queue_files[ino] = 1  # as a count left by a path that forgot it
    sqlite3.connect(f).close()
    assert ino not in dbqueue._queue_files
    q = open_queue(str(f))  # and a queue that does hold it still refuses sqlite3
    with pytest.raises(ValueError, match='sqlite3 refused to open'): sqlite3.connect(f)
    q.close()

# ---------------------------------------------------------------------------------------------------------------------
# Settings and results

@pytest.mark.parametrize('kw', [dict(lease=math.inf), dict(reclaim_every=math.nan), dict(backoff=math.inf), dict(busy_timeout=math.nan),
                                dict(backoff_cap=-1), dict(lease=1e12), dict(max_size=2**70)])
def test_bad_settings_refused(store, kw):
    with pytest.raises(ValueError, match=list(kw)[0]): open_queue(store, **kw)

def test_bad_numbers_in_calls_refused(store):
    q = open_queue(store)
    for f in (lambda: q.enqueue(1, delay=math.inf), lambda: q.enqueue(1, delay=math.nan), lambda: q.enqueue_many([1], delay=1e12),
              lambda: q.dequeue(lease=math.inf), lambda: q.wait(math.inf), lambda: q.prune(math.nan), lambda: q.enqueue(1, max_attempts=2**70)):
        with pytest.raises(ValueError): f()
    j = (q.enqueue(1), q.dequeue())[1]
    with pytest.raises(ValueError): q.extend(j, lease=math.inf)
    assert q.stats() == dict(queued=0, running=1, done=0, dead=0, cancelled=0)

def test_unstorable_result_is_a_value_error(store):
    "A result nested too deep raises ValueError (not RecursionError) from ack, before the database is touched"
    q = open_queue(store)
    q.enqueue(1); j = q.dequeue()
    deep = []
    for _ in range(100_000): deep = [deep]
    with pytest.raises(ValueError, match='nested too deeply'): q.ack(j, deep)
    with pytest.raises(ValueError, match='nested too deeply'): q.ack_many([j], [deep])
    with pytest.raises(TypeError, match='JSON-serializable'): q.ack(j, {1, 2})
    assert q.get(j.id).status == 'running'
    q.fail(j, 'unstorable'); assert q.get(j.id).status == 'queued'

# ---------------------------------------------------------------------------------------------------------------------
# Another queue's jobs, retry after the key was taken, ids

def test_other_queues_jobs_refused(store):
    a, b = open_queue(store, name='A'), open_queue(store, name='B')
    b.enqueue('b1'); b.enqueue('b2'); jb = b.dequeue()
    for f in (lambda: a.ack(jb), lambda: a.fail(jb, 'x'), lambda: a.extend(jb), lambda: a.release(jb), lambda: a.ack_many([jb])):
        with pytest.raises(ValueError, match="belongs to queue 'B', not 'A'"): f()
    with pytest.raises(ValueError, match="belongs to queue 'B', not 'A'"): a.cancel(jb.id + 1)
    b.release(jb)
    d = b.enqueue('doomed', max_attempts=1, priority=9); b.fail(b.dequeue(), 'boom')
    with pytest.raises(ValueError, match="belongs to queue 'B', not 'A'"): a.retry(d)
    assert a.stats() == dict(queued=0, running=0, done=0, dead=0, cancelled=0)

def test_retry_when_key_is_taken(store):
    q = open_queue(store, clock=FakeClock())
    old = q.enqueue('x', key='k', max_attempts=1)
    q.fail(q.dequeue(), 'boom')
    new = q.enqueue('y', key='k')
    with pytest.raises(ValueError, match=f"key 'k' is held by unfinished job {new}"): q.retry(old)
    assert q.get(old).status == 'dead'
    q.ack(q.dequeue())
    q.retry(old); assert q.get(old).status == 'queued'

def test_ids_never_reused_after_prune(store):
    q = open_queue(store, clock=FakeClock())
    a = q.enqueue('a'); q.ack(q.dequeue()); q.clock.tick(1); assert q.prune(0) == 1
    assert q.enqueue('b') > a

# ---------------------------------------------------------------------------------------------------------------------
# A clock stepped backwards (and forwards)

def test_clock_stepped_back_doesnt_freeze_immediate_jobs(store):
    clk = FakeClock()
    q = open_queue(store, clock=clk)
    now_job = q.enqueue('now'); later = q.enqueue('later', delay=60)
    clk.tick(-3600)  # the wall clock is stepped back an hour
    j = q.dequeue()
    assert j is not None and j.id == now_job; q.ack(j)
    assert q.dequeue() is None  # a delayed job still waits for its time
    clk.tick(3600 + 61)
    assert q.dequeue().id == later

def test_clock_stepped_back_doesnt_stall_reclaim(store):
    "After a backward step, reclaim runs every `reclaim_every` s of the new time, not once the old time comes round again"
    clk = FakeClock()
    q = open_queue(store, clock=clk, lease=10, reclaim_every=5)
    assert q.dequeue() is None            # reclaim ran at t: the next is due at t+5
    clk.tick(-1000)                       # the wall clock is stepped back
    q.enqueue('x'); held = q.dequeue(worker='dead worker')
    clk.tick(11)                          # its lease has ended, by the new time
    j = q.dequeue()
    assert j is not None and (j.id, j.attempts) == (held.id, 2)

def test_leases_when_the_clock_jumps(store):
    "Back: a lease lasts longer by the step, never shorter, and the holder can ack. Forward past the lease: another worker takes it, the holder gets LeaseLost"
    clk = FakeClock()
    q = open_queue(store, clock=clk, lease=10)
    q.enqueue('a'); a = q.dequeue(worker='w1')
    clk.tick(-100); clk.tick(50)          # back then partly forward: still before the lease's end
    assert q.dequeue() is None; q.ack(a, 'ok')
    q.enqueue('b'); b = q.dequeue(worker='w1')
    clk.tick(3600)                        # forward an hour
    b2 = q.dequeue(worker='w2'); assert b2.id == b.id
    with pytest.raises(LeaseLost): q.ack(b)
    q.ack(b2, 'ok'); assert q.get(b.id).result == 'ok'

# ---------------------------------------------------------------------------------------------------------------------
# SQLite: a file deleted or replaced under an open queue; bad files

def test_sqlite_file_replaced_under_queue(tmp_path):
    p = tmp_path/'q.db'
    w = open_queue(str(p)); w.enqueue('old')
    for f in tmp_path.glob('q.db*'): f.unlink()
    time.sleep(1.05)
    with pytest.raises(StoreUnavailable, match='was deleted'): w.dequeue()
    with pytest.raises(StoreUnavailable): w.dequeue()      # still gone: raised at once, every call
    open_queue(str(p)).enqueue('new')                       # a producer creates the database again at the path
    j = w.dequeue(); assert j.data == 'new'; w.ack(j)
    assert open_queue(str(p)).stats()['done'] == 1
    os.replace(p, tmp_path/'moved.db'); open_queue(str(p)).enqueue('replaced')   # replaced by another file
    time.sleep(1.05)
    assert w.dequeue().data == 'replaced'

def test_not_a_database(tmp_path):
    p = tmp_path/'notes.txt'; p.write_text('hello ' * 200)
    with pytest.raises(ValueError, match='is not a SQLite database') as e: open_queue(str(p))
    assert '\n' not in str(e.value) and p.read_text() == 'hello ' * 200

def test_read_only_file(tmp_path):
    "A database on a read-only mount: PermissionError, one line (needs a bind mount: root on Linux)"
    d, m = tmp_path/'d', tmp_path/'ro'; d.mkdir(); m.mkdir()
    q = open_queue(str(d/'q.db')); q.enqueue(1); q.close()
    if subprocess.run(['mount', '--bind', '-o', 'ro', str(d), str(m)], capture_output=True).returncode: pytest.skip('no bind mounts here')
    try:
        subprocess.run(['mount', '-o', 'remount,bind,ro', str(m)], capture_output=True)
        with pytest.raises(PermissionError, match='read-only') as e: open_queue(str(m/'q.db'))
        assert '\n' not in str(e.value)
    finally:
        import gc; gc.collect()
        if subprocess.run(['umount', str(m)], capture_output=True).returncode: subprocess.run(['umount', '-l', str(m)], capture_output=True)
    assert open_queue(str(d/'q.db')).stats()['queued'] == 1
