"""Measure the dashboard (figures reported in lesson 06c; never asserted): `python tools/measure_dashboard.py million [DB_URL]` fills a database
with 1,000,000 jobs (or N from the environment) and times counts and pages; `python tools/measure_dashboard.py live` runs `cdemo serve` and counts an
idle tab's requests with 50 unfinished jobs (60 s, headless Chromium), then times `GET /` while 200 LLM jobs run. Run it under the suite's lock."""
import sys
if __name__ == '__main__':
    which = sys.argv.pop(1) if len(sys.argv) > 1 else ''
    if which == 'million':
        import json, os, sys, tempfile, time, statistics
        from pathlib import Path
        from starlette.testclient import TestClient
        from concurrency_demo.store import open_queue
        from concurrency_demo.dashboard import dashboard

        def pct(xs, p): xs = sorted(xs); return xs[min(len(xs)-1, int(round(p/100*(len(xs)-1))))]
        def ms(f, n):
            out = []
            for _ in range(n):
                t = time.perf_counter(); f(); out.append((time.perf_counter()-t)*1000)
            return dict(p50=round(pct(out, 50), 1), p99=round(pct(out, 99), 1), max=round(max(out), 1), n=n)

        url = sys.argv[1] if len(sys.argv) > 1 else str(Path(tempfile.mkdtemp(prefix='cdemo-1m-'))/'jobs.db')
        N = int(os.environ.get('N', 1_000_000))
        q = open_queue(url, name='bulk')
        res = dict(url=url.split('@')[-1] if '://' in url else 'sqlite', jobs=N, load_before=os.getloadavg())
        if not q.counts():
            t = time.perf_counter()
            for i in range(0, N, 20_000): q.enqueue_many([{'n': k} for k in range(i, min(N, i+20_000))])
            res['fill_s'] = round(time.perf_counter()-t, 1)
            q._run("UPDATE job SET status='done' WHERE id <= %d" % (N - 1000) if '://' not in url else "UPDATE job SET status='done' WHERE id <= %s" % (N-1000), {} if '://' not in url else None)
            for i in (17, 500_000, 900_001): q._run(f"UPDATE job SET status='dead', error='boom {i}' WHERE id = {i}", {} if '://' not in url else None)
        res['counts'] = q.counts()
        res['counts_ms'] = ms(q.counts, 5)
        app = dashboard(url, hosts=['testserver'])
        c = TestClient(app)
        res['GET / cold (counts inline)_ms'] = ms(lambda: c.get('/'), 1)
        time.sleep(3)  # the watcher (started by the first GET) counts once
        res['GET / with watcher_ms'] = ms(lambda: c.get('/'), 100)
        res['GET /?status=dead_ms'] = ms(lambda: c.get('/?status=dead'), 10)
        res['GET /?queue=bulk&status=queued_ms'] = ms(lambda: c.get('/?queue=bulk&status=queued'), 10)
        res['GET /?q=boom_ms'] = ms(lambda: c.get('/?q=boom'), 3)
        res['GET /?before=10_ms'] = ms(lambda: c.get('/?before=500000'), 20)
        res['GET /job/17_ms'] = ms(lambda: c.get('/job/17'), 20)
        res['dead found'] = len(q.find(status='dead'))
        res['load_after'] = os.getloadavg()
        print(json.dumps(res, indent=1))
    elif which == 'live':
        import json, os, re, signal, subprocess, sys, tempfile, time, urllib.request, urllib.parse
        from pathlib import Path
        from concurrency_demo.store import open_queue

        def pct(xs, p): xs = sorted(xs); return xs[min(len(xs)-1, int(round(p/100*(len(xs)-1))))]
        tmp = Path(tempfile.mkdtemp(prefix='cdemo-live-')); db = tmp/'jobs.db'
        p = subprocess.Popen([sys.executable, '-c', 'from concurrency_demo.cli import main; main()', 'serve', '--db', str(db), '--port', '0',
                              '--latency', '4', '--cpu-workers', '0', '--concurrency', '200'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp)
        url = re.search(r'http://127\.0\.0\.1:\d+', p.stdout.readline())[0]
        res = dict(load_before=os.getloadavg())
        try:
            open_queue(db, name='waiting').enqueue_many([{'n': i} for i in range(50)])  # nobody runs this queue: 50 unfinished rows
            from playwright.sync_api import sync_playwright
            with sync_playwright() as pw:
                b = pw.chromium.launch(executable_path='/usr/bin/chromium', args=['--no-sandbox', '--disable-gpu'])
                pg = b.new_page()
                pg.goto(url); pg.wait_for_function('window.cdemoStream && window.cdemoStream.readyState === 1')
                reqs = []
                pg.on('request', lambda r: reqs.append(r.url))
                pg.wait_for_timeout(60_000)
                res['idle_tab'] = dict(seconds=60, unfinished_rows=pg.locator('#jobs td.status.queued').count(), requests=len(reqs),
                                       requests_per_s=round(len(reqs)/60, 3), urls=sorted({urllib.parse.urlsplit(u).path for u in reqs}))
                b.close()
            data = urllib.parse.urlencode({'prompts': '\n'.join(f'load {i}' for i in range(200))}).encode()
            urllib.request.urlopen(urllib.request.Request(url + '/llm', data=data, headers={'Origin': url}), timeout=10).read()
            time.sleep(0.5)
            lat,running = [],[]
            end = time.monotonic() + 3
            while time.monotonic() < end or len(lat) < 100:
                t = time.perf_counter(); urllib.request.urlopen(url + '/', timeout=10).read(); lat.append((time.perf_counter()-t)*1000)
                if len(lat) % 20 == 0: running.append(json.loads(urllib.request.urlopen(url + '/stats.json').read())['llm']['running'])
                if len(lat) >= 100: break
            res['page_while_200_run'] = dict(n=len(lat), p50_ms=round(pct(lat, 50), 1), p99_ms=round(pct(lat, 99), 1), max_ms=round(max(lat), 1), running_seen=running)
            res['load_after'] = os.getloadavg()
        finally:
            p.send_signal(signal.SIGTERM); p.wait(60)
            import shutil; shutil.rmtree(tmp, ignore_errors=True)
        print(json.dumps(res, indent=1))
    else: sys.exit('usage: python tools/measure_dashboard.py million [DB_URL] | live')
