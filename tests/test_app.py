"The job console's routes, in-process with Starlette's TestClient: submit, bad input, retry/cancel, counts, escaping, workers in the lifespan"
import re, time
import pytest
from helpers import wait_until
from starlette.testclient import TestClient
from concurrency_demo.app import make_app, max_prompt, Queues, ConsoleWorkers, offline_app
from concurrency_demo.store import open_queue
from concurrency_demo.fakeai import FakeAI, fake_reply
from concurrency_demo.llm import llm_config

HX = {'HX-Request': 'true'}

@pytest.fixture
def db(store): return store

@pytest.fixture
def cli(db):
    with TestClient(make_app(db, workers=False)) as c: yield c

@pytest.fixture(scope='module')
def fake():
    with FakeAI(latency=0.02) as url: yield url

def counts(c): return c.get('/stats.json').json()

def test_page_offline(cli):
    "The page loads htmx from the app itself and nothing from elsewhere"
    r = cli.get('/')
    assert r.status_code == 200
    srcs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert '/static/htmx.min.js' in srcs and not [s for s in srcs if '//' in s]
    js = cli.get('/static/htmx.min.js')
    assert js.status_code == 200 and 'htmx' in js.text[:200]

def test_only_package_files_served(cli, tmp_path, monkeypatch):
    "No files from the working directory: fast_app's default static route is gone"
    monkeypatch.chdir(tmp_path)
    (tmp_path/'secret.txt').write_text('secret')
    assert cli.get('/secret.txt').status_code == 404
    assert cli.get('/static/secret.txt').status_code == 404
    assert cli.get('/static/..%2F__init__.py').status_code == 404

def test_submit_many(cli, db):
    r = cli.post('/llm', data={'prompts': 'one\n\n  two  \nthree\n'}, headers=HX)
    assert r.status_code == 200
    assert counts(cli)['llm']['queued'] == 3
    q = open_queue(db, name='llm')
    assert [j.data for j in q.recent()] == [{'prompt': 'three'}, {'prompt': 'two'}, {'prompt': 'one'}]
    assert 'id="jobs"' in r.text and 'hx-swap-oob' in r.text  # the table, and the message area cleared

def test_submit_cpu(cli, db):
    r = cli.post('/cpu', data={'fn': 'fib', 'arg': '20', 'count': '3'}, headers=HX)
    assert r.status_code == 200
    assert [j.data for j in open_queue(db, name='cpu').recent()] == [{'fn': 'fib', 'n': 20}]*3
    assert counts(cli) == {'cpu': dict(queued=3, running=0, done=0, dead=0, cancelled=0)}

@pytest.mark.parametrize('url,data,msg', [
    ('/llm', {'prompts': ''}, 'empty'),
    ('/llm', {'prompts': ' \n \n'}, 'empty'),
    ('/llm', {}, 'empty'),
    ('/llm', {'prompts': 'fine\n' + 'x'*(max_prompt+1)}, '32 KiB'),
    ('/llm', {'prompts': '\n'.join(['p']*1001)}, 'too many'),
    ('/cpu', {'fn': 'fib', 'arg': '20', 'count': 'ten'}, "count must be a whole number, got 'ten'"),
    ('/cpu', {'fn': 'fib', 'arg': '20', 'count': '0'}, 'count must be from 1'),
    ('/cpu', {'fn': 'fib', 'arg': '1e3', 'count': '1'}, 'fib(n) must be a whole number'),
    ('/cpu', {'fn': 'fib', 'arg': '99', 'count': '1'}, 'fib(n) must be from 0 to 32'),
    ('/cpu', {'fn': 'os.system', 'arg': '1', 'count': '1'}, 'Unknown CPU function'),
    ('/concurrency', {'concurrency': 'fast'}, "concurrency must be a whole number, got 'fast'"),
    ('/concurrency', {'concurrency': '0'}, 'concurrency must be from 1')])
def test_bad_input(cli, url, data, msg):
    "400, the message for the page's message area, and nothing enqueued"
    r = cli.post(url, data=data, headers=HX)
    assert r.status_code == 400
    assert msg in r.text and r.headers['hx-retarget'] == '#msg' and r.headers['hx-reswap'] == 'innerHTML'
    assert counts(cli) == {}

def test_prompt_at_limit(cli):
    assert cli.post('/llm', data={'prompts': 'x'*max_prompt}, headers=HX).status_code == 200
    assert cli.post('/llm', data={'prompts': 'é'*(max_prompt//2)}, headers=HX).status_code == 200
    assert cli.post('/llm', data={'prompts': 'é'*(max_prompt//2+1)}, headers=HX).status_code == 400

def test_escaped(cli):
    "What users type is shown as text, never as markup"
    xss = '<script>alert(1)</script><img src=x onerror=alert(2)>'
    cli.post('/llm', data={'prompts': xss}, headers=HX)
    for r in (cli.get('/'), cli.get('/jobs/1', headers=HX), cli.get('/jobs', headers=HX)):
        assert '<script>alert' not in r.text and '<img src=x' not in r.text
        assert '&lt;script&gt;alert(1)&lt;/script&gt;' in r.text
    r = cli.post('/cpu', data={'fn': '<b>x</b>', 'arg': '1', 'count': '1'}, headers=HX)
    assert r.status_code == 400 and '<b>x</b>' not in r.text

def test_cancel_retry(cli, db):
    cli.post('/llm', data={'prompts': 'a\nb'}, headers=HX)
    r = cli.post('/jobs/1/cancel', headers=HX)
    assert r.status_code == 200 and 'status cancelled' in r.text and 'hx-trigger' not in r.text and 'Retry' in r.text
    assert counts(cli)['llm'] == dict(queued=1, running=0, done=0, dead=0, cancelled=1)
    r = cli.post('/jobs/1/retry', headers=HX)
    assert r.status_code == 200 and 'queued' in r.text and 'every 500ms' in r.text
    assert counts(cli)['llm'] == dict(queued=2, running=0, done=0, dead=0, cancelled=0)
    r = cli.post('/jobs/1/retry', headers=HX)
    assert r.status_code == 409 and 'not dead or cancelled' in r.text
    q = open_queue(db, name='llm')
    j = q.dequeue()
    r = cli.post(f'/jobs/{j.id}/cancel', headers=HX)  # a running job can be cancelled too: its worker is told
    assert r.status_code == 200 and 'status cancelled' in r.text
    r = cli.get(f'/jobs/{j.id}', headers=HX)
    assert 'Retry' in r.text and 'hx-trigger' not in r.text
    r = cli.post(f'/jobs/{j.id}/cancel', headers=HX)
    assert r.status_code == 409 and 'not queued or running' in r.text
    assert cli.post('/jobs/99/cancel', headers=HX).status_code == 404
    assert cli.post('/jobs/1/explode', headers=HX).status_code == 404
    assert cli.get('/jobs/99', headers=HX).status_code == 404

def test_counts(cli, db):
    cli.post('/llm', data={'prompts': 'a\nb\nc'}, headers=HX)
    cli.post('/cpu', data={'fn': 'fib', 'arg': '5', 'count': '2'}, headers=HX)
    q = open_queue(db, name='llm')
    q.ack(q.dequeue(), 'done!')
    assert counts(cli) == {'llm': dict(queued=2, running=0, done=1, dead=0, cancelled=0), 'cpu': dict(queued=2, running=0, done=0, dead=0, cancelled=0)}
    r = cli.get('/counts', headers=HX)
    assert 'hx-trigger="every 1s"' in r.text and '>llm<' in r.text and '>cpu<' in r.text

def test_row_polling_stops(cli, db):
    "An unfinished job's row polls itself; a finished one comes back without the trigger"
    cli.post('/llm', data={'prompts': 'x'}, headers=HX)
    assert 'hx-trigger="every 500ms"' in cli.get('/jobs/1', headers=HX).text
    q = open_queue(db, name='llm')
    q.ack(q.dequeue(), 'the reply')
    r = cli.get('/jobs/1', headers=HX).text
    assert 'hx-trigger' not in r and 'the reply' in r and 'done' in r

def test_bad_settings(db):
    for kw in (dict(concurrency=0), dict(concurrency='lots'), dict(cpu_workers=-1), dict(llm='claude')):
        with pytest.raises(ValueError): make_app(db, **kw)
    with pytest.raises(FileNotFoundError): make_app('/nonexistent/dir/jobs.db', workers=False)

def test_workers_in_lifespan(db, fake):
    "With workers: LLM and CPU jobs reach done; shutdown leaves nothing running"
    with TestClient(make_app(db, base_url=fake, concurrency=5, cpu_workers=1)) as c:
        c.post('/llm', data={'prompts': '\n'.join(f'p{i}' for i in range(12))}, headers=HX)
        c.post('/cpu', data={'fn': 'fib', 'arg': '22', 'count': '2'}, headers=HX)
        wait_until(lambda: counts(c) == {'llm': dict(queued=0, running=0, done=12, dead=0, cancelled=0), 'cpu': dict(queued=0, running=0, done=2, dead=0, cancelled=0)})
        assert fake_reply('p7', model=llm_config('fake', fake).model) in c.get('/jobs/8', headers=HX).text
        assert '17711' in c.get('/jobs/13', headers=HX).text

def test_set_concurrency(db, fake):
    "The page's form changes the LLM workers' cap; without workers in this process it says where to set it"
    with TestClient(make_app(db, base_url=fake, concurrency=5, cpu_workers=0)) as c:
        assert 'name="concurrency" value="5"' in c.get('/').text
        r = c.post('/concurrency', data={'concurrency': '12'}, headers=HX)
        assert r.status_code == 200 and '12' in r.text and c.app.state.workers[0].concurrency == 12
        c.post('/llm', data={'prompts': '\n'.join(f'p{i}' for i in range(20))}, headers=HX)
        wait_until(lambda: counts(c)['llm']['done'] == 20)
    with TestClient(make_app(db, workers=False)) as c:
        r = c.post('/concurrency', data={'concurrency': '3'}, headers=HX)
        assert r.status_code == 409 and 'cdemo worker' in r.text

def test_shutdown_releases(db):
    "Jobs still running at shutdown go back to the queue, unspent"
    with FakeAI(latency=10) as url:
        with TestClient(make_app(db, base_url=url, concurrency=4, cpu_workers=0, stop_timeout=0.2)) as c:
            c.post('/llm', data={'prompts': 'a\nb\nc'}, headers=HX)
            wait_until(lambda: counts(c)['llm']['running'] == 3)
        q = open_queue(db, name='llm')
        assert q.stats() == dict(queued=3, running=0, done=0, dead=0, cancelled=0)
        assert {q.get(i).attempts for i in (1, 2, 3)} == {0}

def test_workers_apart(db, fake):
    "A console without workers, and ConsoleWorkers on the same database"
    with TestClient(make_app(db, workers=False)) as c:
        c.post('/llm', data={'prompts': 'a\nb'}, headers=HX)
        with ConsoleWorkers(db, llm_config('fake', fake), concurrency=2, cpu_workers=0) as w:
            wait_until(lambda: counts(c).get('llm', {}).get('done') == 2)
        assert w.stats()['llm']['processed'] == 2

def test_queues_per_thread(db):
    import threading
    qs = Queues(db)
    got = []
    ts = [threading.Thread(target=lambda: got.append(qs('llm'))) for _ in range(3)]
    for t in ts: t.start()
    for t in ts: t.join()
    assert len({id(q) for q in got}) == 3 and len(qs.opened) == 3
    qs.close()
    assert qs.opened == []

def test_submit_counts_oob(cli):
    "A submission's answer carries exactly one counts table, swapped out of band (else htmx leaves a copy inside the jobs table)"
    r = cli.post('/llm', data={'prompts': 'a'}, headers=HX)
    assert len(re.findall(r'id="counts"', r.text)) == 1
    assert re.search(r'<div hx-get="/counts"[^>]*hx-swap-oob="true"[^>]*id="counts"', r.text)
    assert 'Enqueued 1 job (1).' in r.text

@pytest.mark.parametrize('data', [{'fn': 'fib', 'n': 'thirty'}, {'fn': 'fib'}, {'fn': 'count_primes', 'n': None, 'x': [1, {'y': 2}]},
                                  {'prompt': 12}, {'prompt': None}, 'just a string', [1, 2, 3], None, 3.5, {'task': 7}])
def test_odd_data_renders(cli, db, data):
    "Any JSON enqueued through the public API leaves every page at 200"
    jid = open_queue(db, name='cpu').enqueue(data)
    for r in (cli.get('/'), cli.get('/jobs', headers=HX), cli.get(f'/jobs/{jid}', headers=HX),
              cli.post('/llm', data={'prompts': 'after'}, headers=HX), cli.post('/cpu', data={'fn': 'fib', 'arg': '3', 'count': '1'}, headers=HX)):
        assert r.status_code == 200, r.text[:300]
    assert f'id="job-{jid}"' in cli.get('/jobs', headers=HX).text

def test_unrenderable_row_shows_raw(cli, db, monkeypatch):
    "A row that can't be rendered at all shows its raw JSON, and the page still loads"
    import concurrency_demo.app as app_mod
    jid = open_queue(db, name='llm').enqueue({'prompt': 'boom'})
    def bad(j, poll=0.5): raise TypeError('cannot render')
    monkeypatch.setattr(app_mod, 'job_row', bad)
    r = cli.get('/')
    assert r.status_code == 200 and 'class="what raw"' in r.text and '"prompt": "boom"' in r.text

def test_enqueued_says_so_when_table_fails(cli, db, monkeypatch):
    "A POST that enqueued says so even if showing the table after it fails (htmx told not to swap the table away)"
    import concurrency_demo.app as app_mod
    def bad(*a, **kw): raise RuntimeError('counts broke')
    monkeypatch.setattr(app_mod, 'counts_view', bad)
    r = cli.post('/llm', data={'prompts': 'x\ny'}, headers=HX)
    assert r.status_code == 200 and 'Enqueued 2 jobs' in r.text and 'counts broke' in r.text and r.headers['hx-reswap'] == 'none'
    assert open_queue(db, name='llm').stats()['queued'] == 2
