"""Measure the SQLite claim path's alternatives (figures reported in lesson 00's *Performance*; never asserted): one-at-a-time
`dequeue`+`ack` of `Queue` with the schema of before (job_claim, job_lease, job_finished; plans re-prepared at each call), the
same with the query planner's stability guarantee (QPSG), the one `job_ready` index without kept counts, and as shipped (with
`job_stat`'s triggers), against raw SQLite in the same run; and the WAL frames (pages written) per job. Blocks of 500 jobs
take turns, so a burst of load from elsewhere hits every variant alike; each figure is the median block.
`python tools/measure_indexes.py [N]` (N jobs per variant, default 15,000). Run it under the suite's lock."""
import json, os, statistics, sys, tempfile, time
from pathlib import Path
import apsw
from concurrency_demo.dbqueue import Queue
from concurrency_demo.bench import RawSQLite

R = "status IN ('queued','running')"
old_indexes = """DROP INDEX job_ready;
CREATE INDEX job_claim ON job (queue, priority DESC, run_at, id) WHERE status='queued';
CREATE INDEX job_lease ON job (lease_until) WHERE status='running';
CREATE INDEX job_finished ON job (updated_at) WHERE status IN ('done','dead','cancelled');"""
triggers = ('job_stat_insert', 'job_stat_update', 'job_stat_delete', 'job_error_add', 'job_error_gone')

def before(q, qpsg=False):
    "The schema and statements of before: three partial indexes, no kept counts"
    for t in triggers: q.conn.execute(f"DROP TRIGGER {t}")
    q.conn.execute(old_indexes)
    q.sql = dict(Queue.sql, claim=Queue.sql['claim'].replace(f"{R} AND status='queued'", "status='queued'"),
                 reclaim=Queue.sql['reclaim'].split('WHERE id IN')[0] + "WHERE status='running' AND lease_until<:now")
    if not qpsg: q.conn.config(apsw.SQLITE_DBCONFIG_ENABLE_QPSG, 0)

variants = {'before: 3 partial indexes, plans re-prepared': before,
            'before, with QPSG': lambda q: before(q, qpsg=True),
            'job_ready, QPSG, no kept counts': lambda q: [q.conn.execute(f"DROP TRIGGER {t}") for t in triggers],
            'job_ready, QPSG, kept counts (shipped)': lambda q: None}

def queue(n, patch, d):
    q = Queue(Path(d)/f'{len(os.listdir(d))}.db'); patch(q)
    q.enqueue_many([{'n': i} for i in range(n)]); q.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return q, lambda: (j := q.dequeue()) and q.ack(j)

def raw(n, d):
    o = RawSQLite(Path(d)/'raw.db'); o.put_many([{'n': i} for i in range(n)]); o.checkpoint()
    return o, o.take

def frames(n, patch, d):
    "WAL frames written per dequeue+ack (checkpoints off while it runs)"
    q,take = queue(n, patch, d)
    q.conn.execute("PRAGMA wal_autocheckpoint=0")
    for _ in range(n): take()
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

if __name__ == '__main__': main(*map(int, sys.argv[1:2]))
