"The job console in a real browser (Debian's chromium, driven by playwright), offline: jobs reach `done` without a reload, input shows as text"
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
    counts_tables = page.locator('table:has(th:text-is("queued"))')
    assert counts_tables.count() == 1 and page.locator('#counts').count() == 1
    assert page.locator('#jobs table, #jobs #counts').count() == 0

ODD = [{'fn': 'fib', 'n': 'thirty'}, {'fn': 'count_primes'}, {'prompt': ['a', 'list']}, 'a string', [1, 2], None, {'task': 1, 'args': 'x'}]

def test_odd_data_every_page_200(page, console):
    "Jobs with data the demo doesn't expect (enqueued through the public API) leave every page at 200 and the forms working"
    url,db = console
    ids = enqueue_elsewhere(db, 'cpu', ODD) + enqueue_elsewhere(db, 'weird', [{'anything': 'goes'}])
    for path in ['/', '/jobs', *[f'/jobs/{i}' for i in ids], '/counts', '/stats.json']:
        assert page.request.get(url + path).status == 200, path
    assert page.goto(url).status == 200
    page.wait_for_function('window.htmx !== undefined', timeout=10_000)
    for i in ids: assert page.locator(f'#job-{i}').count() == 1
    assert "fib(n='thirty')" in page.locator(f'#job-{ids[0]}').inner_text()
    page.fill('textarea[name=prompts]', 'after the odd ones')
    page.click('text=Ask the LLM')
    page.wait_for_function("document.querySelector('#msg').innerText.includes('Enqueued 1 job')", timeout=10_000)
    assert page.locator('#msg .error').count() == 0 and page.errors == []
