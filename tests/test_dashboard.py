"""The dashboard's requests in-process (Starlette's TestClient) on both stores: pages under odd data, filters, actions, bulk retry, purge,
Host/Origin checks, auth on every route, /metrics, and the dashboard mounted in FastAPI at /admin/jobs"""
import base64, re, time
import pytest
from starlette.testclient import TestClient
from concurrency_demo.dashboard import dashboard, console_app, parse_age
from concurrency_demo.store import open_queue

OK = {'Origin': 'http://testserver'}  # what a browser sends with a form posted from the page itself

@pytest.fixture
def db(store): return store

@pytest.fixture
def cli(db):
    with TestClient(dashboard(db, hosts=['testserver'])) as c: yield c

@pytest.fixture
def console(db):
    with TestClient(console_app(db, workers=False, hosts=['testserver'])) as c: yield c

def ids_on(html): return [int(i) for i in re.findall(r'<tr [^>]*id="job-(\d+)"', html)]

def total(db): return sum(sum(c.values()) for c in open_queue(db).counts().values())

def test_pages_with_odd_data(cli, db):
    "Any JSON in a job leaves every page at 200"
    odd = [{'fn': 'fib', 'n': 'thirty'}, {'task': 7}, {'task': 'x', 'args': 'notalist'}, 'a string', [1, [2]], None, 1e300, {'prompt': None}]
    ids = open_queue(db, name='odd').enqueue_many(odd)
    for path in ['/', '/?queue=odd', '/?q=thirty', '/?task=x', '/?order=oldest', *[f'/job/{i}' for i in ids], *[f'/jobs/{i}' for i in ids], '/metrics', '/stats.json']:
        assert cli.get(path).status_code == 200, path
    assert ids_on(cli.get('/').text) == ids[::-1]

def test_bad_filters(cli):
    for path in ['/?status=lost', '/?before=abc', '/?after=1;drop']: assert cli.get(path).status_code == 400, path
    assert cli.get('/job/abc').status_code == 404 and cli.get('/job/999').status_code == 200  # the page says there's no such job

def test_filters_and_pages(cli, db):
    q = open_queue(db, name='a')
    q.enqueue_many([{'i': i} for i in range(120)])
    open_queue(db, name='b').enqueue({'task': 'resize', 'args': [1], 'kwargs': {}})
    assert ids_on(cli.get('/?queue=b').text) == [121] and ids_on(cli.get('/?task=resize').text) == [121]
    p1 = ids_on(cli.get('/?queue=a').text)
    assert p1 == list(range(120, 70, -1))
    p2 = ids_on(cli.get(f'/?queue=a&before={p1[-1]}').text)
    assert p2 == list(range(70, 20, -1))
    assert ids_on(cli.get(f'/?queue=a&after={p2[0]}').text) == p1  # back to the newer page
    assert ids_on(cli.get('/?queue=a&order=oldest').text) == list(range(1, 51))
    assert ids_on(cli.get('/?q=%22i%22%3A 7%7D').text) == [8]
    page = cli.get('/?queue=a').text
    assert f'href="/?queue=a&amp;before={p1[-1]}"' in page  # the pager keeps the filter

def test_actions(cli, db):
    q = open_queue(db, name='a')
    i = q.enqueue('x')
    r = cli.post(f'/jobs/{i}/cancel', headers=OK)
    assert r.status_code == 200 and 'status cancelled' in r.text and q.get(i).status == 'cancelled'
    r = cli.post(f'/jobs/{i}/retry?view=page', headers=OK)
    assert r.status_code == 200 and 'id="job-detail"' in r.text and q.get(i).status == 'queued'
    assert cli.post(f'/jobs/{i}/retry', headers=OK).status_code == 409
    assert cli.post('/jobs/999/retry', headers=OK).status_code == 404
    assert cli.post(f'/jobs/{i}/explode', headers=OK).status_code == 404
    j = q.dequeue()
    assert cli.post(f'/jobs/{j.id}/cancel', headers=OK).status_code == 200 and q.get(j.id).status == 'cancelled'  # running, too

def test_bulk_retry_and_purge(cli, db):
    a,b = open_queue(db, name='a'),open_queue(db, name='b')
    for q in (a, a, b):
        q.enqueue('boom'); q.fail(q.dequeue(), 'boom', retry=False)
    a.enqueue('fine'); a.ack(a.dequeue(), 'ok')
    r = cli.post('/retry-dead', data={'queue': 'a'}, headers=OK)
    assert 'Retried 2 dead jobs' in r.text and a.stats()['dead'] == 0 and b.stats()['dead'] == 1
    assert cli.post('/purge', data={'older_than': 'soon'}, headers=OK).status_code == 400
    assert 'Deleted 0 finished jobs' in cli.post('/purge', data={'older_than': '1h'}, headers=OK).text
    time.sleep(0.05)
    assert 'Deleted 2 finished jobs' in cli.post('/purge', data={'older_than': '0.01'}, headers=OK).text  # a's done job and b's dead one
    assert a.stats()['done'] == 0 and b.stats()['dead'] == 0 and a.stats()['queued'] == 2

def test_parse_age():
    assert [parse_age(s) for s in ('10', '1.5m', '2h', '7d')] == [10, 90, 7200, 604800]
    for s in ('', 'week', '-1', '5y'): pytest.raises(ValueError, parse_age, s)

@pytest.mark.parametrize('headers', [{'Origin': 'https://evil.example'}, {'Origin': 'null'}, {'Sec-Fetch-Site': 'cross-site'},
                                     {'Sec-Fetch-Site': 'same-site'}, {'Origin': 'http://testserver.evil.example'}])
def test_cross_site_post_refused(console, db, headers):
    "A form another site makes the browser post is refused, and nothing is enqueued or changed"
    for path,data in (('/llm', {'prompts': 'spend money'}), ('/cpu', {'fn': 'fib', 'arg': '5', 'count': '3'}), ('/purge', {'older_than': '0'}),
                      ('/retry-dead', {}), ('/jobs/1/cancel', {}), ('/concurrency', {'concurrency': '1'})):
        r = console.post(path, data=data, headers=headers)
        assert r.status_code == 403 and 'Cross-site request refused' in r.text, path
    assert total(db) == 0
    assert console.post('/llm', data={'prompts': 'from the page'}, headers={**OK, 'Sec-Fetch-Site': 'same-origin'}).status_code == 200
    assert total(db) == 1

@pytest.mark.parametrize('host', ['evil.example', 'evil.example:80', '127.0.0.1.nip.io', '10.0.0.1'])
def test_foreign_host_refused(db, host):
    "A request naming another host (DNS rebinding) is refused; loopback names are served by default"
    c = TestClient(dashboard(db))
    for path in ('/', '/stream', '/job/1', '/metrics', '/stats.json'):
        assert c.get(path, headers={'Host': host}).status_code == 400, path
    assert c.post('/purge', data={'older_than': '0'}, headers={'Host': host}).status_code == 400
    for ok in ('127.0.0.1:5001', 'localhost', '[::1]:8000'): assert c.get('/', headers={'Host': ok}).status_code == 200, ok

def test_auth_everywhere(db, monkeypatch):
    "With a token, nothing answers without it, the stream included; Bearer and basic auth (the browser's prompt) both work"
    open_queue(db, name='a').enqueue('x')
    c = TestClient(console_app(db, workers=False, hosts=['testserver'], token='s3cret'))
    paths = ['/', '/?status=dead', '/stream', '/job/1', '/jobs/1', '/metrics', '/stats.json', '/static/dashboard.css', '/static/htmx.min.js']
    for p in paths:
        r = c.get(p)
        assert r.status_code == 401 and r.headers['www-authenticate'].startswith('Basic'), p
        assert c.get(p, headers={'Authorization': 'Bearer wrong'}).status_code == 401
    for p,data in (('/llm', {'prompts': 'x'}), ('/jobs/1/cancel', {}), ('/purge', {'older_than': '0'})):
        assert c.post(p, data=data, headers=OK).status_code == 401
    assert total(db) == 1
    basic = 'Basic ' + base64.b64encode(b'anyone:s3cret').decode()
    for auth in ('Bearer s3cret', basic):
        assert c.get('/', headers={'Authorization': auth}).status_code == 200
    assert c.get('/', headers={'Authorization': 'Basic !!notbase64'}).status_code == 401
    monkeypatch.setenv('CDEMO_DASHBOARD_TOKEN', 'from-env')
    c2 = TestClient(dashboard(db, hosts=['testserver']))
    assert c2.get('/').status_code == 401 and c2.get('/', headers={'Authorization': 'Bearer from-env'}).status_code == 200

def test_metrics(cli, db):
    q = open_queue(db, name='m')
    assert 'cdemo_jobs{queue="m"' not in cli.get('/metrics').text  # the first scrape starts the counters
    q.enqueue_many(['a', 'b', 'c'])
    q.ack(q.dequeue(), 'ok'); q.fail(q.dequeue(), 'no', retry=False)
    text = cli.get('/metrics').text
    assert 'cdemo_jobs{queue="m",status="queued"} 1.0' in text and 'cdemo_jobs{queue="m",status="done"} 1.0' in text
    assert 'cdemo_jobs_finished_total{outcome="done",queue="m"} 1.0' in text and 'cdemo_jobs_finished_total{outcome="dead",queue="m"} 1.0' in text
    for k in ('run', 'wait'):  # both attempts ran (one to done, one to dead): kept by the store, so a new dashboard reads the same
        assert f'cdemo_job_{k}_seconds_count{{queue="m"}} 2.0' in text and f'cdemo_job_{k}_seconds_bucket{{le="+Inf",queue="m"}} 2.0' in text
    assert 'cdemo_job_run_seconds_count{queue="m"} 2.0' in TestClient(dashboard(db, hosts=['testserver'])).get('/metrics').text

def test_job_page_times(cli, db):
    "The job page shows when the attempt started, how long it waited and how long it ran, as a user reads them"
    from concurrency_demo.store import FakeClock
    clk = FakeClock(time.time() - 100)
    q = open_queue(db, name='t', clock=clk); jid = q.enqueue('x')
    clk.tick(3); j = q.dequeue(); clk.tick(90); q.ack(j)
    txt = re.sub(r'<[^>]+>', '|', cli.get(f'/job/{jid}').text)
    assert re.search(r'waited\|+3\.0 s', txt) and re.search(r'ran\|+1\.5 min', txt) and 'started|' in txt

def test_mounted_in_fastapi(db):
    "Mounted at /admin/jobs in a FastAPI app: every link, form and the stream's URL carry the prefix, and they answer"
    fastapi = pytest.importorskip('fastapi')
    app = fastapi.FastAPI()
    @app.get('/')
    def home(): return {'app': 'mine'}
    app.mount('/admin/jobs', dashboard(db, hosts=['testserver']))
    i = open_queue(db, name='a').enqueue('x')
    c = TestClient(app)
    assert c.get('/').json() == {'app': 'mine'}
    page = c.get('/admin/jobs/').text
    urls = re.findall(r'(?:href|src|action|hx-post|data-stream)="(/[^"]*)"', page)
    assert urls and all(u.startswith('/admin/jobs/') for u in urls), [u for u in urls if not u.startswith('/admin/jobs/')]
    for u in {u.replace('&amp;', '&') for u in re.findall(r'(?:href|src)="(/[^"]*)"', page)}:
        assert c.get(u).status_code == 200, u
    assert f'href="/admin/jobs/job/{i}"' in page
    assert 'href="/admin/jobs/?queue=a"' in c.get(f'/admin/jobs/job/{i}').text
    assert c.post(f'/admin/jobs/jobs/{i}/cancel', headers={'Origin': 'https://evil.example'}).status_code == 403
    r = c.post(f'/admin/jobs/jobs/{i}/cancel', headers=OK)
    assert r.status_code == 200 and 'href="/admin/jobs/job/' in r.text

def test_job_page_every_error(cli, db):
    "A job that failed three times shows three errors on its page, oldest first, and `cdemo show` prints them too"
    import subprocess, sys
    q = open_queue(db, name='e', backoff=0.001, backoff_cap=0.001); jid = q.enqueue('x')
    for i in range(3):
        time.sleep(0.01); q.fail(q.dequeue(), f'boom number {i}')
    txt = cli.get(f'/job/{jid}').text
    assert txt.count('class="attempt-error"') == 3 and txt.index('boom number 0') < txt.index('boom number 1') < txt.index('boom number 2')
    out = subprocess.run([sys.executable, '-c', 'from concurrency_demo.cli import main; main()', 'show', str(jid), '--db', db], capture_output=True, text=True).stdout
    assert [l for l in out.splitlines() if l.startswith('boom number')] == ['boom number 0', 'boom number 1', 'boom number 2'] and 'error of attempt 3' in out
