"""Measure the SQLite claim path's alternatives (figures reported in lesson 00's *Performance*; never asserted): one-at-a-time
`dequeue`+`ack` of `Queue` with the schema of before (job_claim, job_lease, job_finished; plans re-prepared at each call), the
same with the query planner's stability guarantee (QPSG), the one `job_ready` index without kept counts, with counts written at
each ack (the release before), and as shipped (each ack's count deferred and folded once a second), against raw SQLite in the
same run; and the WAL frames (pages written) per job. Blocks of 500 jobs take turns, so a burst of load from elsewhere hits every variant alike; each figure is the median block.
`python tools/measure_indexes.py [N] [--save]` (N jobs per variant, default 15,000; `--save` stores the result as the `indexes`
section in `nbs/bench/indexes.json`, which lesson 00's *Performance* renders). Run it under the suite's lock, on an idle machine."""
import json, os, statistics, sys, tempfile, time
from pathlib import Path
import apsw
from concurrency_demo.dbqueue import Queue, _ready
from concurrency_demo.bench import RawSQLite, machine

R = f"INDEXED BY job_ready WHERE queue=:queue AND {_ready()} AND (status='queued')=1"
old_indexes = """DROP INDEX job_ready;
CREATE INDEX job_claim ON job (queue, priority DESC, run_at, id) WHERE status='queued';
CREATE INDEX job_lease ON job (lease_until) WHERE status='running';
CREATE INDEX job_finished ON job (updated_at) WHERE status IN ('done','dead','cancelled');"""
triggers = ('job_stat_insert', 'job_stat_update', 'job_stat_delete', 'job_error_add', 'job_error_gone')

def before(q, qpsg=False):
    "The schema and statements of before: three partial indexes, no kept counts"
    for t in triggers: q.conn.execute(f"DROP TRIGGER {t}")
    q.conn.execute(old_indexes)
    claim = Queue.sql['claim'].replace(R, "WHERE queue=:queue AND status='queued'")
    assert claim != Queue.sql['claim']
    q.sql = dict(Queue.sql, claim=claim, ack=at_once(q),
                 reclaim=Queue.sql['reclaim'].split('WHERE id IN')[0] + "WHERE status='running' AND lease_until<:now")
    if not qpsg: q.conn.config(apsw.SQLITE_DBCONFIG_ENABLE_QPSG, 0)
    q.fold = lambda: 0  # nothing deferred: its ack counts at once (and its triggers are gone)

def at_once(q):
    "The ack of the release before: it counts its job at once (no `lazy` mark), so the trigger writes `job_stat`"
    a = Queue.sql['ack'].replace(', lazy=1', ''); assert a != Queue.sql['ack']; return a

def counted_at_ack(q): q.sql = dict(Queue.sql, ack=at_once(q))

variants = {'before: 3 partial indexes, plans re-prepared': before,
            'before, with QPSG': lambda q: before(q, qpsg=True),
            'job_ready, QPSG, no kept counts': lambda q: [counted_at_ack(q), *[q.conn.execute(f"DROP TRIGGER {t}") for t in triggers]],
            'job_ready, QPSG, counts written at each ack': counted_at_ack,
            'job_ready, QPSG, counts deferred (shipped)': lambda q: None}

def queue(n, patch, d):
    q = Queue(Path(d)/f'{len(os.listdir(d))}.db'); patch(q)
    q.enqueue_many([{'n': i} for i in range(n)]); q.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return q, lambda: (j := q.dequeue()) and q.ack(j)

def raw(n, d):
    o = RawSQLite(Path(d)/'raw.db'); o.put_many([{'n': i} for i in range(n)]); o.checkpoint()
    return o, o.take

def frames(n, patch, d):
    "WAL frames written per dequeue+ack, and per job by the fold of their deferred counts (checkpoints off while it runs)"
    q,take = queue(n, patch, d)
    q.conn.execute("PRAGMA wal_autocheckpoint=0")
    for _ in range(n): take()
    q.fold()  # the deferred counts' pages count too
    f = (os.path.getsize(q.conn.filename + '-wal') - 32) / (4096 + 24) / n
    q.close(); return round(f, 2)

def main(n=15_000, block=500):
    with tempfile.TemporaryDirectory(prefix='cdemo-idx-') as d:
        takes = {'raw SQLite': raw(n, d)[1], **{k: queue(n, p, d)[1] for k,p in variants.items()}}
        us = {k: [] for k in takes}
        load = os.getloadavg()
        for _ in range(n // block):
            for k,take in takes.items():
                t = time.perf_counter()
                for _ in range(block): take()
                us[k].append((time.perf_counter() - t) / block * 1e6)
        fr = {k: frames(3000, p, d) for k,p in variants.items()}
    med = {k: statistics.median(v) for k,v in us.items()}
    r0 = med['raw SQLite']
    res = dict(jobs=n, block=block, load_before=[round(x, 2) for x in load], load_after=[round(x, 2) for x in os.getloadavg()],
               rows=[dict(variant=k, us_per_job=round(m, 1), jobs_s=round(1e6/m), ratio=round(r0/m, 2), wal_frames_per_job=fr.get(k)) for k,m in med.items()])
    print(json.dumps(res, indent=1))
    return res

if __name__ == '__main__':
    args = [a for a in sys.argv[1:] if a != '--save']
    if any(a in ('-h', '--help') for a in args): print(__doc__); sys.exit(0)
    if args and not args[0].isdigit(): sys.exit(f"measure_indexes: N (jobs per variant) must be a whole number, got {args[0]!r}")
    res = main(*map(int, args[:1]))
    if '--save' in sys.argv:
        out = Path(__file__).parent.parent/'nbs'/'bench'/'indexes.json'
        out.write_text(json.dumps(dict(section='indexes', machine=machine(), results=res), indent=1) + '\n')
        print(f"saved {out}")
