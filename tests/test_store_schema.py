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
