"The Workers panel and pause/resume in a real browser (Debian's chromium, playwright) on `cdemo serve` under uvicorn: the console's own pools alive, a killed pool greyed, a queue paused and resumed from the page"
import json, signal, subprocess, sys, textwrap, time, urllib.request
import pytest
from test_console_browser import ROOT, CHROMIUM, console, browser, page, stats, enqueue_elsewhere

pytestmark = pytest.mark.skipif(not __import__('pathlib').Path(CHROMIUM).exists(), reason='needs Debian chromium at /usr/bin/chromium')

SIDE = textwrap.dedent("""
    import sys, time
    from concurrency_demo import ThreadWorkers
    def h(x): return x
    w = ThreadWorkers(sys.argv[1], h, n=1, queue='side', worker='side-pool')
    w.beat_every = 0.3
    w.start()
    print('ready', flush=True)
    time.sleep(600)
""")

def pools_text(pg): return pg.locator('#pools').inner_text()

def test_workers_panel(page, console):
    "The console's two pools (the LLM queue's async one, the CPU queue's processes) are alive in the panel; a pool killed elsewhere turns grey"
    url,db = console
    page.wait_for_function("document.querySelectorAll('#pools tr.pool:not(.dead)').length >= 2", timeout=15_000)
    rows = page.locator('#pools tr.pool:not(.dead)')
    got = sorted((rows.nth(i).locator('td').nth(2).inner_text(), rows.nth(i).locator('td').nth(3).inner_text()) for i in range(rows.count()))
    assert got == [('async', 'llm'), ('processes', 'cpu')]
    side = subprocess.Popen([sys.executable, '-c', SIDE, str(db)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert side.stdout.readline().strip() == 'ready'
        row = page.locator('#pools tr[data-pool="side-pool"]')
        row.wait_for(timeout=10_000)  # came by the stream, no reload
        assert row.get_attribute('class') == 'pool'
        side.send_signal(signal.SIGKILL); side.wait(5)
        page.wait_for_function("document.querySelector('#pools tr[data-pool=\"side-pool\"]')?.className === 'pool dead'", timeout=10_000)
        assert row.locator('td.state').inner_text() == 'dead'
        out = ROOT/'artifacts'; out.mkdir(exist_ok=True)
        page.locator('#pools').screenshot(path=str(out/'workers-panel.png'))
    finally:
        if side.poll() is None: side.kill()
    assert (page.blocked, page.errors) == ([], [])

def test_pause_resume_from_page(page, console):
    "Pause the LLM queue from its counts row: a job enqueued elsewhere stays queued; Resume, and it runs"
    url,db = console
    first, = enqueue_elsewhere(db, 'llm', [{'prompt': 'warm up'}])
    page.locator(f'#job-{first}').wait_for(timeout=5_000)
    llm = page.locator('#counts tr:has(th a:text-is("llm"))')
    llm.locator('button:text-is("Pause")').click()
    page.wait_for_function("document.querySelector('#msg').innerText.includes('Queue llm paused')", timeout=5_000)
    llm.locator('.badge.paused').wait_for(timeout=5_000)  # the counts came again by the stream, with the badge and a Resume button
    time.sleep(0.6)  # the workers' copy of the paused set is at most 0.5 s old
    i, = enqueue_elsewhere(db, 'llm', [{'prompt': 'held while paused'}])
    page.locator(f'#job-{i}').wait_for(timeout=5_000)
    time.sleep(2)
    assert page.locator(f'#job-{i} td.status').inner_text() == 'queued' and stats(url)['llm']['queued'] == 1
    llm.locator('button:text-is("Resume")').click()
    page.wait_for_function("document.querySelector('#msg').innerText.includes('Queue llm resumed')", timeout=5_000)
    page.wait_for_function(f"document.querySelector('#job-{i} td.status').innerText === 'done'", timeout=10_000)
    llm.locator('.badge.paused').wait_for(state='detached', timeout=3_000)  # the watcher's next look (0.2 s) takes the badge away:
    assert llm.locator('button:text-is("Pause")').count() == 1           # the job, run at once, may show `done` a moment before
    assert (page.blocked, page.errors, page.dialogs) == ([], [], [])
