"""The store's schema over time (issues 16 and 19): a database made by an older version opens, is migrated in place
(indexes, columns, counts), and every semantic holds afterwards. Old schemas are written out here as they shipped."""
import apsw, time
import pytest
from concurrency_demo.store import open_queue, statuses

old_sqlite = """
CREATE TABLE IF NOT EXISTS job (
  id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL DEFAULT 'default', data TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'queued',
  priority INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL DEFAULT 3,
  run_at REAL NOT NULL, lease_until REAL, worker TEXT, token TEXT, key TEXT, result TEXT, error TEXT,
  created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS job_claim ON job (queue, priority DESC, run_at, id) WHERE status='queued';
CREATE INDEX IF NOT EXISTS job_lease ON job (lease_until) WHERE status='running';
CREATE INDEX IF NOT EXISTS job_finished ON job (updated_at) WHERE status IN ('done','dead','cancelled');
CREATE UNIQUE INDEX IF NOT EXISTS job_key ON job (queue, key) WHERE key IS NOT NULL AND status IN ('queued','running');
"""

def _old_file(path):
    "A SQLite file as an older version left it: its indexes, no `progress`/`note`/`started_at`, jobs in every status, one lease expired"
    c = apsw.Connection(str(path)); c.execute("PRAGMA journal_mode=wal").fetchall(); c.execute(old_sqlite)
    now = time.time()
    rows = [('a', '"q1"', 'queued', 0, None), ('a', '"q2"', 'queued', 5, None), ('a', '"r"', 'running', 0, now + 300),
            ('a', '"stale"', 'running', 0, now - 5), ('a', '"d"', 'done', 0, None), ('b', '"x"', 'dead', 0, None)]
    for q,d,st,p,lu in rows:
        c.execute("INSERT INTO job (queue, data, status, priority, attempts, run_at, lease_until, token, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                  (q, d, st, p, 1 if st == 'running' else 0, now - 10, lu, 't' if st == 'running' else None, now - 10, now - 10))
    c.close()

def test_old_sqlite_file_opens_and_migrates(tmp_path):
    path = tmp_path/'old.db'; _old_file(path)
    q = open_queue(path, name='a')
    names = {r[0] for r in q.conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert 'job_ready' in names and not names & {'job_claim', 'job_lease', 'job_finished'}
    assert {'started_at', 'progress', 'note'} <= {r[1] for r in q.conn.execute('PRAGMA table_info(job)')}
    assert q.counts() == {'a': dict(queued=2, running=2, done=1, dead=0, cancelled=0), 'b': dict(queued=0, running=0, done=0, dead=1, cancelled=0)}
    j = q.dequeue()  # the expired lease is reclaimed first; the claim keeps priority order
    assert j.data == 'q2' and j.started_at is not None
    assert q.stats() == dict(queued=2, running=2, done=1, dead=0, cancelled=0)
    assert [o.data for o in q.dequeue_many(5)] == ['q1', 'stale']
    q.close(); q2 = open_queue(path, name='a')  # opening again changes nothing
    assert q2.stats() == dict(queued=0, running=4, done=1, dead=0, cancelled=0)

def _recount(q):
    "Counts by a full recount of the table, as `counts` once did"
    res = {}
    for name,st,n in q._all("SELECT queue, status, count(*) FROM job GROUP BY queue, status", ()):
        res.setdefault(name, dict.fromkeys(statuses, 0))[st] = n
    return res

def test_kept_counts_match_a_recount(store):
    "Every way a job's status changes, and plain SQL on the table too, keeps the store's counts equal to a recount"
    from concurrency_demo.store import FakeClock
    clk = FakeClock(); q, o = open_queue(store, name='a', lease=10, clock=clk), open_queue(store, name='b', clock=clk)
    ids = q.enqueue_many(list(range(20))) + [q.enqueue('k', key='k1'), q.enqueue('k again', key='k1'), q.enqueue('later', delay=60)]
    o.enqueue_many(['x', 'y'])
    js = q.dequeue_many(8)
    q.ack(js[0]); q.ack_many(js[1:3]); q.ack_each(js[3:4]); q.fail(js[4], 'boom'); q.fail(js[5], 'fatal', retry=False); q.release(js[6])
    q.cancel(ids[10]); q.cancel(js[7].id); q.retry(js[5].id); q.retry(ids[10])
    clk.tick(11); q.dequeue_many(2); clk.tick(11); q.dequeue()  # two leases expire and are reclaimed
    assert q.counts() == _recount(q) and q.stats() == _recount(q)['a']
    p = '?' if '://' not in store else '%s'
    q._run(f"UPDATE job SET status='done' WHERE id IN ({p}, {p})", (ids[12], ids[13]))  # by hand, as an operator might
    q._run(f"DELETE FROM job WHERE id = {p}", (ids[14],))
    q._run(f"UPDATE job SET queue='c' WHERE id = {p}", (ids[15],))
    clk.tick(100); q.ack(q.dequeue()); q.prune(0)
    assert q.counts() == _recount(q)
    if hasattr(q, '_fold_stats'): q._fold_stats(); assert q.counts() == _recount(q)
    done = {r[1]: r[2] for r in q._all(q.sql['job_stats'], {}) if r[0] == 'a'}
    assert done['done'] >= 5 and sum(n for k,n in done.items() if k.startswith('run ')) >= 5  # outcomes and run times, kept past the prune

def test_old_postgres_database_gets_its_counts(pg_server):
    "A PostgreSQL database made before the counts were kept: the first open counts once, in the same transaction as the triggers"
    from concurrency_demo.pgqueue import pg_database
    import psycopg
    with pg_database(pg_server, 'cdemo_test') as url:
        q = open_queue(url, name='a'); q.enqueue_many(list(range(5))); q.ack(q.dequeue()); q.close()
        with psycopg.connect(url, autocommit=True) as c:  # back to before: no stats tables, no triggers
            c.execute("DROP TABLE job_stat, job_stat_delta; DROP TRIGGER job_stat_update ON job; DROP TRIGGER job_stat_insert ON job; DROP TRIGGER job_stat_delete ON job")
            c.execute("INSERT INTO job (queue, data, run_at, created_at, updated_at) VALUES ('b', '1', 0, 0, 0)")
        q = open_queue(url, name='a')
        assert q.counts() == _recount(q) == {'a': dict(queued=4, running=0, done=1, dead=0, cancelled=0), 'b': dict(queued=1, running=0, done=0, dead=0, cancelled=0)}
        q.ack(q.dequeue()); assert q.counts() == _recount(q); q.close()

def test_every_attempts_error_is_kept(store):
    "Each failed attempt's error (fail, an expired lease) is kept, the last 20 per job, gone with the job; the old last-error column is unchanged"
    from concurrency_demo.store import FakeClock, errors_kept
    clk = FakeClock(); q = open_queue(store, lease=10, clock=clk, backoff=0.001, backoff_cap=0.5)
    jid = q.enqueue('x', max_attempts=30)
    for i in range(errors_kept + 3):
        j = q.dequeue()
        if i == errors_kept: clk.tick(11); continue  # this attempt's lease runs out
        q.fail(j, f'boom {i}'); clk.tick(1)
    es = q.errors(jid)
    assert len(es) == errors_kept and [a for a,_,_ in es] == list(range(4, errors_kept + 4))
    assert es[-1][2] == q.get(jid).error == f'boom {errors_kept + 2}' and es[-3][2].startswith('lease expired')
    q.cancel(jid); assert len(q.errors(jid)) == errors_kept  # a cancel is no attempt's error
    clk.tick(5); assert q.prune(1) == 1 and q.errors(jid) == []
    with pytest.raises(ValueError): q.errors('1')
    assert q.errors(10**9) == []

def _as_before_deferred(path):
    "Turn a current file back into one the release before deferred counts left: its `job_ready`, its count triggers, no `lazy` column"
    from concurrency_demo.dbqueue import Queue
    q = Queue(path); q.fold(); q.close()
    c = apsw.Connection(str(path))
    unf = "('queued','running')"
    into = lambda s: f"CASE WHEN {s} IN {unf} THEN 'unfinished' ELSE {s} END"
    out = lambda s: f"CASE WHEN {s} IN {unf} THEN 'unfinished' ELSE 'left ' || {s} END"
    outn = lambda s: f"CASE WHEN {s} IN {unf} THEN -1 ELSE 1 END"
    c.execute(f"""DROP INDEX job_ready; DROP TRIGGER job_stat_insert; DROP TRIGGER job_stat_update; DROP TRIGGER job_stat_delete;
ALTER TABLE job DROP COLUMN lazy;
CREATE TRIGGER job_stat_insert AFTER INSERT ON job BEGIN
  INSERT INTO job_stat (queue, stat, n) VALUES (NEW.queue, {into('NEW.status')}, 1) ON CONFLICT DO UPDATE SET n=n+1; END;
CREATE INDEX job_ready ON job (queue, status DESC, priority DESC, run_at, id) WHERE status IN ('queued','running');
CREATE TRIGGER job_stat_delete AFTER DELETE ON job BEGIN
  INSERT INTO job_stat (queue, stat, n) VALUES (OLD.queue, {out('OLD.status')}, {outn('OLD.status')}) ON CONFLICT DO UPDATE SET n=n+excluded.n; END;
CREATE TRIGGER job_stat_update AFTER UPDATE OF queue, status ON job
  WHEN OLD.queue IS NOT NEW.queue OR {into('OLD.status')} IS NOT {into('NEW.status')} BEGIN
  INSERT INTO job_stat (queue, stat, n) SELECT OLD.queue, {out('OLD.status')}, {outn('OLD.status')} UNION ALL SELECT NEW.queue, {into('NEW.status')}, 1
    ON CONFLICT DO UPDATE SET n=n+excluded.n; END;""")
    c.execute("UPDATE job SET status='done' WHERE id=(SELECT min(id) FROM job WHERE status='running')")  # an ack by the old version
    c.close()

def test_file_from_before_deferred_counts_migrates(tmp_path):
    "A file from the release that counted each ack at once opens: the old triggers and index are replaced, counts stay true, acks defer"
    path = tmp_path/'prev.db'
    q = open_queue(path, name='a'); q.enqueue_many(list(range(6))); js = q.dequeue_many(3); q.ack(js[0]); q.close()
    _as_before_deferred(path)
    q = open_queue(path, name='a')
    assert 'lazy' in {r[1] for r in q.conn.execute('PRAGMA table_info(job)')}
    (sql,), = q.conn.execute("SELECT sql FROM sqlite_master WHERE name='job_ready'").fetchall()
    assert "status='queued'" in sql and 'lazy' in sql
    assert q.counts() == _recount(q) == {'a': dict(queued=3, running=1, done=2, dead=0, cancelled=0)}
    q.ack(q.dequeue()); q.ack(js[2])
    assert q.counts() == _recount(q) and q.fold() == 2 and q.counts() == _recount(q)
    q.close(); q = open_queue(path, name='a')  # opening again changes nothing
    assert q.counts() == _recount(q) == {'a': dict(queued=2, running=0, done=4, dead=0, cancelled=0)}

def test_deferred_counts_are_exact_before_and_after_the_fold(tmp_path):
    "An ack's count is deferred (`lazy`), yet every reader, on any connection, sees exact counts and histograms; the fold changes none of them"
    from concurrency_demo.store import FakeClock
    clk = FakeClock(); path = tmp_path/'d.db'
    q, o = open_queue(path, name='a', lease=10, clock=clk), open_queue(path, name='b', clock=clk)
    q.enqueue_many(list(range(12))); o.enqueue_many(['x', 'y']); o.ack(o.dequeue())
    js = q.dequeue_many(10); clk.tick(2)  # this first dequeue of `q` folds `o`'s ack (a fold counts every queue's)
    for j in js[:4]: q.ack(j)
    q.ack_many(js[4:6]); q.ack_each(js[6:7]); q.fail(js[7], 'boom', retry=False)
    other = open_queue(path, name='a', clock=clk)  # another connection reads what the first deferred
    lazy = q._all("SELECT count(*) FROM job WHERE lazy IS NOT NULL", ())[0][0]
    assert lazy == 7
    want = {'a': dict(queued=2, running=2, done=7, dead=1, cancelled=0), 'b': dict(queued=1, running=0, done=1, dead=0, cancelled=0)}
    assert q.counts() == other.counts() == _recount(q) == want
    assert other.stats() == want['a'] and o.stats() == want['b']
    st = other.job_stats()
    assert st['a']['finished'] == dict(done=7, dead=1, cancelled=0) and st['b']['finished']['done'] == 1
    assert sum(n for n,_ in st['a']['run'].values()) == 8 and sum(n for n,_ in st['a']['wait'].values()) == 8
    assert abs(sum(s for _,s in st['a']['run'].values()) - 16) < 1e-6  # each of the 8 ran 2 s
    # a deferred job deleted, or moved, before the fold is never counted as finished in its old place
    q._run("DELETE FROM job WHERE id=?", (js[0].id,)); q._run("UPDATE job SET queue='c' WHERE id=?", (js[1].id,))
    assert q.counts() == other.counts() == _recount(q)
    before = (other.counts(), other.job_stats())
    assert q.fold() == 6 and q.fold() == 0
    assert q._all("SELECT count(*) FROM job WHERE lazy IS NOT NULL", ())[0][0] == 0
    assert (other.counts(), other.job_stats()) == before and q.counts() == _recount(q)
    q._run("DELETE FROM job WHERE status='done'", ()); q.fold()  # deleting counted jobs keeps the outcomes' totals, as before
    assert q.counts() == _recount(q) and other.job_stats()['a']['finished']['done'] == 5

def test_a_dequeue_folds_the_deferred_counts(tmp_path):
    "Workers fold as they go: a `dequeue` after `reclaim_every` seconds counts what acks deferred, so few rows wait in `job_ready`"
    from concurrency_demo.store import FakeClock
    clk = FakeClock(); q = open_queue(tmp_path/'f.db', clock=clk, reclaim_every=1)
    q.enqueue_many(list(range(10)))
    for _ in range(5): q.ack(q.dequeue())
    assert q._all("SELECT count(*) FROM job WHERE lazy IS NOT NULL", ())[0][0] == 5  # the first dequeue had nothing to fold
    clk.tick(1.5); q.ack(q.dequeue())
    assert q._all("SELECT count(*) FROM job WHERE lazy IS NOT NULL", ())[0][0] == 1
    assert q._all("SELECT n FROM job_stat WHERE queue='default' AND stat='done'", ())[0][0] == 5 and q.stats()['done'] == 6
