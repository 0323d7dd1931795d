"The job console (`cdemo serve`: the dashboard with the demo's forms) in a real browser (Debian's chromium, driven by playwright), offline: live over one stream, filters, job pages, actions, screenshots"
import json, os, re, signal, subprocess, sys, time, urllib.request
from pathlib import Path
from urllib.parse import urlsplit
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = '/usr/bin/chromium'
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason='needs Debian chromium at /usr/bin/chromium (.ci/run installs it)')

@pytest.fixture(scope='module')
def console(tmp_path_factory):
    "`cdemo serve` on a free port with a fast fake LLM; yields (base URL, database path); stops it with SIGTERM"
    db = tmp_path_factory.mktemp('browser')/'jobs.db'
    p = subprocess.Popen([sys.executable, '-c', 'from concurrency_demo.cli import main; main()', 'serve', '--db', str(db), '--port', '0',
                          '--latency', '0.05', '--cpu-workers', '1', '--concurrency', '10'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=db.parent)
    try:
        line = p.stdout.readline()
        m = re.search(r'http://127\.0\.0\.1:\d+', line)
        assert m, f'no URL in {line!r}; stderr: {p.stderr.read() if p.poll() is not None else ""}'
        yield m[0],db
    finally:
        p.send_signal(signal.SIGTERM)
        try: p.wait(30)
        except subprocess.TimeoutExpired: p.kill(); p.wait()

@pytest.fixture(scope='module')
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox', '--disable-gpu', '--disable-background-networking',
                               '--disable-component-update', '--disable-sync', '--no-first-run'])
        yield b
        b.close()

@pytest.fixture
def page(browser, console):
    "A page on the console that can reach only the console: every other request is aborted and recorded"
    url,_ = console
    ctx = browser.new_context(viewport=dict(width=1280, height=900))
    pg = ctx.new_page()
    pg.blocked,pg.dialogs,pg.errors = [],[],[]
    def route(r):
        if urlsplit(r.request.url).hostname in ('127.0.0.1', 'localhost'): return r.continue_()
        pg.blocked.append(r.request.url); r.abort()
    pg.route('**/*', route)
    pg.on('dialog', lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.on('pageerror', lambda e: pg.errors.append(str(e)))
    pg.goto(url)
    pg.wait_for_function('window.htmx !== undefined', timeout=10_000)
    yield pg
    ctx.close()

def stats(url): return json.loads(urllib.request.urlopen(url + '/stats.json', timeout=10).read())

def n_rows(pg, status=None): return pg.locator('#jobs tr' + (f':has(td.status.{status})' if status else '')).count()

def test_twenty_prompts_done_without_reload(page, console):
    page.evaluate('window.__no_reload = 42')
    page.fill('textarea[name=prompts]', '\n'.join(f'Browser prompt {i}' for i in range(20)))
    page.click('text=Ask the LLM')
    page.wait_for_function("document.querySelectorAll('#jobs tr td.status.done').length >= 20", timeout=60_000)
    assert page.evaluate('window.__no_reload') == 42, 'the page was reloaded'
    polls = []
    page.on('request', lambda r: polls.append(r.url) if '/jobs/' in r.url else None)
    page.wait_for_timeout(1500)
    assert polls == [], f'finished rows still polling: {polls[:3]}'
    done = page.locator('#jobs tr:has(td.status.done) td.what').all_inner_texts()
    assert {f'Browser prompt {i}' for i in range(20)} <= set(done)
    assert page.input_value('textarea[name=prompts]') == '', 'the form was not reset after a successful submit'
    page.wait_for_function("document.querySelector('#counts').innerText.includes('20')", timeout=10_000)
    assert (page.blocked, page.errors) == ([], [])

def test_script_prompt_is_text(page, console):
    xss = '<script>alert(1)</script>'
    page.fill('textarea[name=prompts]', xss)
    page.click('text=Ask the LLM')
    row = page.locator('#jobs tr', has=page.locator('td.what', has_text='alert(1)')).first
    row.locator('td.status.done').wait_for(timeout=30_000)
    assert row.locator('td.what').inner_text() == xss
    assert page.locator('#jobs script').count() == 0
    assert page.dialogs == []

def test_bad_input_shows_message(page, console):
    url,_ = console
    before = stats(url)
    page.fill('textarea[name=prompts]', '   ')
    page.click('text=Ask the LLM')
    page.wait_for_selector('#msg .error', timeout=10_000)
    assert 'empty' in page.inner_text('#msg')
    page.fill('input[name=count]', 'lots')
    page.click('text=Run CPU jobs')
    page.wait_for_function("document.querySelector('#msg').innerText.includes('count must be a whole number')", timeout=10_000)
    assert stats(url) == before
    page.fill('input[name=count]', '2'); page.fill('input[name=arg]', '20'); page.select_option('select[name=fn]', 'fib')
    page.click('text=Run CPU jobs')
    page.wait_for_function("document.querySelector('#msg').innerText.includes('Enqueued 2 jobs')", timeout=10_000)
    page.wait_for_function("document.querySelectorAll('#jobs tr td.status.done').length >= 2 && document.body.innerText.includes('fib(n=20)')", timeout=30_000)

def test_screenshot(page, console):
    "Keep a screenshot of a busy console as a test artifact (artifacts/console.png)"
    page.fill('textarea[name=prompts]', '\n'.join(['Tell me a joke', "What's the capital of France?", 'Explain quantum computing', '<b>not bold</b>']))
    page.click('text=Ask the LLM')
    page.wait_for_function("document.querySelector('#jobs td.what').innerText === '<b>not bold</b>' && "
                           "document.querySelectorAll('#jobs td.status.queued, #jobs td.status.running').length === 0", timeout=30_000)
    out = ROOT/'artifacts'; out.mkdir(exist_ok=True)
    page.screenshot(path=str(out/'console.png'), full_page=False)
    assert (out/'console.png').stat().st_size > 10_000

def enqueue_elsewhere(db, queue, datas):
    "Enqueue `datas` from another process, as another app or `cdemo enqueue` would"
    code = f"from concurrency_demo.store import open_queue; import json, sys; q = open_queue({str(db)!r}, name={queue!r}); print(json.dumps(q.enqueue_many(json.loads(sys.argv[1]))))"
    return json.loads(subprocess.run([sys.executable, '-c', code, json.dumps(datas)], capture_output=True, text=True, check=True, cwd=ROOT).stdout)

def test_one_counts_table_after_ten_submissions(page, console):
    "However many forms are sent, the page has one counts table (each answer's copy is swapped out of band, not left in the jobs table)"
    for i in range(10):
        with page.expect_response(lambda r: r.url.endswith('/llm') and r.request.method == 'POST'): 
            page.fill('textarea[name=prompts]', f'submission {i}')
            page.click('text=Ask the LLM')
    page.wait_for_function("document.querySelector('#msg').innerText.includes('Enqueued 1 job')", timeout=10_000)
    page.wait_for_timeout(300)
    n_counts = page.evaluate("[...document.querySelectorAll('table')].filter(t => t.tHead && /\\bqueued\\b/.test(t.tHead.innerText)).length")
    assert n_counts == 1 and page.locator('#counts').count() == 1
    assert page.locator('#jobs table, #jobs #counts').count() == 0

ODD = [{'fn': 'fib', 'n': 'thirty'}, {'fn': 'count_primes'}, {'prompt': ['a', 'list']}, 'a string', [1, 2], None, {'task': 1, 'args': 'x'}]

def test_odd_data_every_page_200(page, console):
    "Jobs with data the demo doesn't expect (enqueued through the public API) leave every page at 200 and the forms working"
    url,db = console
    ids = enqueue_elsewhere(db, 'cpu', ODD) + enqueue_elsewhere(db, 'weird', [{'anything': 'goes'}])
    for path in ['/', '/?queue=cpu', '/?q=thirty', '/?status=queued&order=oldest', *[f'/job/{i}' for i in ids], *[f'/jobs/{i}' for i in ids], '/stats.json', '/metrics']:
        assert page.request.get(url + path).status == 200, path
    assert page.goto(url).status == 200
    page.wait_for_function('window.htmx !== undefined', timeout=10_000)
    for i in ids: assert page.locator(f'#job-{i}').count() == 1
    assert "fib(n='thirty')" in page.locator(f'#job-{ids[0]}').inner_text()
    page.fill('textarea[name=prompts]', 'after the odd ones')
    page.click('text=Ask the LLM')
    page.wait_for_function("document.querySelector('#msg').innerText.includes('Enqueued 1 job')", timeout=10_000)
    assert page.locator('#msg .error').count() == 0 and page.errors == []

def test_enqueued_elsewhere_appears_within_a_second(page, console):
    "A job enqueued by another process shows up on an open page without a reload, over the page's one stream"
    url,db = console
    page.evaluate('window.__no_reload = 1')
    page.wait_for_timeout(500)  # the stream is open
    t = time.monotonic()
    i, = enqueue_elsewhere(db, 'elsewhere', [{'from': 'another process'}])
    page.locator(f'#job-{i}').wait_for(timeout=5_000)
    took = time.monotonic() - t
    assert took < 1.0 + 0.5, f'appeared after {took:.2f}s'  # the subprocess itself takes a few hundred ms to start
    assert page.evaluate('window.__no_reload') == 1 and 'another process' in page.locator(f'#job-{i}').inner_text()

def test_one_connection_no_polling(page, console):
    "An idle tab makes no requests: the page's only live connection is its stream"
    reqs = []
    page.on('request', lambda r: reqs.append(r.url))
    page.wait_for_timeout(3000)
    assert reqs == [], reqs[:5]
    assert page.evaluate('window.cdemoStream.readyState') == 1  # open

def dead_job(db, queue='flaky', error='Traceback (most recent call last):\n  File "job.py", line 1\nValueError: the flaky thing broke'):
    code = (f"from concurrency_demo.store import open_queue; q = open_queue({str(db)!r}, name={queue!r}); i = q.enqueue({{'flaky': True}}); "
            f"j = q.dequeue(); q.fail(j, {error!r}, retry=False); print(i)")
    return int(subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True, cwd=ROOT).stdout)

def test_open_traceback_stays_open(page, console):
    "A traceback opened on the page stays open while other rows change for 5 s (rows are replaced only when they change)"
    url,db = console
    i = dead_job(db)
    row = page.locator(f'#job-{i}')
    row.wait_for(timeout=5_000)
    row.locator('summary').click()
    assert row.locator('details').evaluate('d => d.open')
    end = time.monotonic() + 5
    while time.monotonic() < end:
        page.fill('textarea[name=prompts]', 'keep the page busy\nand another')
        page.click('text=Ask the LLM')
        page.wait_for_timeout(400)
    assert page.locator(f'#job-{i} details').evaluate('d => d.open'), 'the open traceback was closed by an update'
    assert 'ValueError: the flaky thing broke' in page.locator(f'#job-{i} details pre').inner_text()

def test_filters_search_paging(page, console):
    "Counts are links to filters; search finds a job by text; keyset pages reach old jobs"
    url,db = console
    i = dead_job(db, queue='findme', error='KeyError: needle-in-haystack')
    enqueue_elsewhere(db, 'bulk', [{'n': k} for k in range(120)])
    page.goto(url)
    page.click('#counts a[href*="queue=findme"][href*="status=dead"]')
    page.wait_for_url('**/?queue=findme&status=dead')
    assert page.locator('#jobs tr').count() == 1 and page.locator(f'#job-{i}').count() == 1
    page.goto(url)
    page.fill('input[name=q]', 'needle-in')
    page.click('text=Filter')
    page.wait_for_url('**q=needle-in**')
    assert [r.get_attribute('id') for r in page.locator('#jobs tr').all()] == [f'job-{i}']
    page.goto(url + '/?queue=bulk')
    first = page.locator('#jobs tr').evaluate_all('rs => rs.map(r => +r.id.slice(4))')
    assert len(first) == 50 and first == sorted(first, reverse=True)
    page.click('text=Older →')
    page.wait_for_url('**before=*')
    page.wait_for_load_state()
    second = page.locator('#jobs tr').evaluate_all('rs => rs.map(r => +r.id.slice(4))')
    assert len(second) == 50 and max(second) == min(first) - 1
    page.click('text=← Newer')
    page.wait_for_url('**after=*')
    page.wait_for_load_state()
    assert page.locator('#jobs tr').evaluate_all('rs => rs.map(r => +r.id.slice(4))') == first
    page.goto(url + '/?queue=bulk&order=oldest')
    oldest = page.locator('#jobs tr').evaluate_all('rs => rs.map(r => +r.id.slice(4))')
    assert oldest == sorted(oldest) and len(oldest) == 50

def test_job_page_cancel_retry(page, console):
    "A job's page (its permalink) shows it in full, and cancels and retries it"
    url,db = console
    long = 'x' * 500 + ' THE END'
    i, = enqueue_elsewhere(db, 'nobody-runs-this', [{'text': long}])
    page.goto(url)
    page.locator(f'#job-{i} a[href$="/job/{i}"]').click()
    page.wait_for_url(f'**/job/{i}')
    assert 'THE END' in page.inner_text('#job-detail pre')  # full data, not cut short
    page.click('#job-detail button:text("Cancel")')
    page.wait_for_function("document.querySelector('#job-detail .status').innerText === 'cancelled'", timeout=5_000)
    page.click('#job-detail button:text("Retry")')
    page.wait_for_function("document.querySelector('#job-detail .status').innerText === 'queued'", timeout=5_000)
    out = ROOT/'artifacts'; out.mkdir(exist_ok=True)
    page.screenshot(path=str(out/'dashboard-job.png'), full_page=True)

def test_cancel_retry_from_table(page, console):
    url,db = console
    i, = enqueue_elsewhere(db, 'nobody-runs-this', [{'row': 'action'}])
    page.goto(url)
    page.click(f'#job-{i} button:text("Cancel")')
    page.wait_for_function(f"document.querySelector('#job-{i} td.status').innerText.trim() === 'cancelled'", timeout=5_000)
    page.click(f'#job-{i} button:text("Retry")')
    page.wait_for_function(f"document.querySelector('#job-{i} td.status').innerText.trim() === 'queued'", timeout=5_000)

@pytest.mark.parametrize('name,kw', [('dashboard-dark.png', dict(color_scheme='dark', viewport=dict(width=1280, height=900))),
                                     ('dashboard-375.png', dict(viewport=dict(width=375, height=800), device_scale_factor=2, is_mobile=True, has_touch=True))])
def test_dark_and_narrow(browser, console, name, kw):
    "Dark mode follows the system's setting; at 375 px the page doesn't scroll sideways"
    url,db = console
    dead_job(db, queue='looks')
    ctx = browser.new_context(**kw)
    pg = ctx.new_page()
    pg.goto(url)
    pg.wait_for_function('window.htmx !== undefined', timeout=10_000)
    bg = pg.evaluate('getComputedStyle(document.body).backgroundColor')
    if 'dark' in name: assert bg != 'rgb(255, 255, 255)', bg
    else:
        assert pg.evaluate('document.documentElement.scrollWidth') <= 375
        broken = pg.evaluate("""[...document.querySelectorAll('#counts thead th')].filter(th => {
            const cs = getComputedStyle(th), lh = parseFloat(cs.lineHeight) || 1.3*parseFloat(cs.fontSize);
            return th.getBoundingClientRect().height - parseFloat(cs.paddingTop) - parseFloat(cs.paddingBottom) > 1.5*lh
        }).map(th => th.textContent)""")
        assert broken == [], f'count headings broken over two lines at 375 px: {broken}'  # "queue|d", "runni|ng" once
    out = ROOT/'artifacts'; out.mkdir(exist_ok=True)
    pg.screenshot(path=str(out/name), full_page='375' in name)
    ctx.close()

MOUNTED = """
import sys, uvicorn
from fastapi import FastAPI
from concurrency_demo.dashboard import dashboard
app = FastAPI()
@app.get('/')
def home(): return {'app': 'mine'}
app.mount('/admin/jobs', dashboard(sys.argv[1]))
cfg = uvicorn.Config(app, host='127.0.0.1', port=0, log_level='warning')
srv = uvicorn.Server(cfg)
import threading, time
def tell():
    while not srv.started: time.sleep(0.02)
    print(f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}", flush=True)
threading.Thread(target=tell, daemon=True).start()
srv.run()
"""

@pytest.fixture(scope='module')
def mounted(tmp_path_factory):
    "A FastAPI app with the dashboard mounted at /admin/jobs, under uvicorn; yields (base URL, database path)"
    pytest.importorskip('fastapi')
    db = tmp_path_factory.mktemp('mounted')/'jobs.db'
    from concurrency_demo.store import open_queue
    open_queue(db).close()
    p = subprocess.Popen([sys.executable, '-c', MOUNTED, str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=db.parent)
    try:
        line = p.stdout.readline()
        assert line.startswith('http://'), f'no URL in {line!r}; stderr: {p.stderr.read() if p.poll() is not None else ""}'
        yield line.strip(),db
    finally:
        p.send_signal(signal.SIGTERM)
        try: p.wait(30)
        except subprocess.TimeoutExpired: p.kill(); p.wait()

def test_mounted_at_admin_jobs(browser, mounted):
    "Mounted at /admin/jobs in FastAPI: the page, its links and its stream work under the prefix"
    url,db = mounted
    ctx = browser.new_context()
    pg = ctx.new_page()
    errors = []
    pg.on('pageerror', lambda e: errors.append(str(e)))
    bad = []
    pg.on('response', lambda r: bad.append((r.status, r.url)) if r.status >= 400 else None)
    assert pg.goto(url + '/admin/jobs/').status == 200
    pg.wait_for_function('window.htmx !== undefined && window.cdemoStream && window.cdemoStream.readyState === 1', timeout=10_000)
    i, = enqueue_elsewhere(db, 'mine', [{'report': 'q3'}])
    pg.locator(f'#job-{i}').wait_for(timeout=5_000)  # came by the stream, under the prefix
    pg.wait_for_function("document.querySelector('#counts').innerText.includes('mine')", timeout=5_000)
    pg.click('#counts a[href$="?queue=mine"]')
    pg.wait_for_url('**/admin/jobs/?queue=mine')
    pg.click(f'#job-{i} a')
    pg.wait_for_url(f'**/admin/jobs/job/{i}')
    pg.wait_for_function('window.cdemoStream && window.cdemoStream.readyState === 1', timeout=10_000)
    pg.click('#job-detail button:text("Cancel")')
    pg.wait_for_function("document.querySelector('#job-detail .status').innerText === 'cancelled'", timeout=5_000)
    pg.click('h1 a')
    pg.wait_for_url('**/admin/jobs/')
    assert (bad, errors) == ([], [])
    ctx.close()
