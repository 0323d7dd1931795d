"Store.find, the dashboard's query: filters, text search, keyset pages, on both stores"
import pytest
from concurrency_demo.store import open_queue

@pytest.fixture
def jobs(store):
    q = open_queue(store, name='mail')
    q.enqueue_many([{'to': f'user{i}@example.com', 'note': '100% sure_x' if i == 3 else 'ok'} for i in range(30)])
    t = open_queue(store, name='tasks')
    t.enqueue({'task': 'resize', 'args': [640], 'kwargs': {}}, key='img-1')
    t.enqueue_many(['a string', [1, 2], None, 7])
    d = q.dequeue(); q.fail(d, 'SMTP 550: Mailbox FULL', retry=False)
    yield q
    q.close(); t.close()

def ids(js): return [j.id for j in js]

def test_filters(jobs):
    q = jobs
    assert ids(q.find(n=3)) == [35, 34, 33]
    assert ids(q.find(status='dead')) == [1]
    assert ids(q.find(queue='tasks')) == [35, 34, 33, 32, 31]
    assert ids(q.find(queue='mail', status='queued', n=2)) == [30, 29]
    assert ids(q.find(task='resize')) == [31]
    assert ids(q.find(task='nothing')) == []

def test_search(jobs):
    q = jobs
    assert ids(q.find(q='mailbox full')) == [1]  # the error, any case
    assert ids(q.find(q='USER12@')) == [13]
    assert ids(q.find(q='img-1')) == [31]  # the key
    assert ids(q.find(q='7')) == sorted({35, 7, *[i+1 for i in range(30) if '7' in f'user{i}@example.com']}, reverse=True)
    assert ids(q.find(q='100%')) == [4] and ids(q.find(q='sure_x')) == [4] and ids(q.find(q='%')) == [4] and ids(q.find(q='_x')) == [4]
    assert q.find(q="' OR 1=1 --") == []
    assert ids(q.find(q='  ')) == ids(q.find())

def test_keyset_pages(jobs):
    q = jobs
    seen,before = [],None
    while page := q.find(n=7, before=before): seen += ids(page); before = page[-1].id
    assert seen == list(range(35, 0, -1))
    assert ids(q.find(oldest=True, n=3)) == [1, 2, 3]
    assert ids(q.find(oldest=True, n=3, after=3)) == [4, 5, 6]
    assert ids(q.find(queue='mail', before=3)) == [2, 1]

@pytest.mark.parametrize('kw,msg', [(dict(status='lost'), 'Unknown status'), (dict(n=0), 'n must be'), (dict(n=10**6), 'n must be'),
                                    (dict(before='5; DROP TABLE job'), 'before must be'), (dict(after=1.5), 'after must be')])
def test_bad_args(jobs, kw, msg):
    with pytest.raises(ValueError, match=msg): jobs.find(**kw)
    assert len(jobs.find(n=100)) == 35

def test_change_token(store):
    "The dashboard's cheap question: the token changes after another connection writes, and not while nobody does"
    a,b = open_queue(store, name='a'),open_queue(store, name='b')
    quiet = '://' not in str(store)  # a PostgreSQL server may be shared: others' writes move its snapshot too (a wasted look, not a wrong one)
    t0 = a.change_token()
    assert t0 is not None
    a.find(); a.counts()  # reading changes nothing
    if quiet: assert a.change_token() == t0
    b.enqueue('news')
    t1 = a.change_token()
    assert t1 != t0
    if quiet: assert a.change_token() == t1
    a.close(); b.close()

def test_finished_since(store):
    q = open_queue(store, name='m')
    q.enqueue_many(['a', 'b', 'c'])
    t = q.clock() - 1
    q.ack(q.dequeue(), 'ok'); q.fail(q.dequeue(), 'no', retry=False)
    rows = q.finished_since(t)
    assert [(r[0], r[1]) for r in rows] == [('m', 'done'), ('m', 'dead')] and rows[0][3] <= rows[1][3]
    assert q.finished_since(rows[-1][3]) == [] and len(q.finished_since(t, n=1)) == 1
    with pytest.raises(ValueError): q.finished_since(t, n=0)
    q.close()
