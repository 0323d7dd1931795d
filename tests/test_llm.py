"""The fake OpenAI server (`fakeai`) and the LLM helpers (`llm`), through the official `openai` client, offline.

Every server binds 127.0.0.1 on a free port. Timings are only checked with loose bounds: the machine is shared.
"""
import asyncio, json, os, socket, subprocess, sys, time, urllib.request
from collections import Counter

import pytest
from openai import OpenAI, AsyncOpenAI, APIConnectionError, APITimeoutError, InternalServerError, RateLimitError, BadRequestError
from concurrency_demo.fakeai import FakeAI, FakeState, fake_app, fake_reply, fake_stats, running_url, prompt_of
from concurrency_demo.llm import AskJob, LLMConfig, aask, aclient, ask, ask_all, aask_all, astream, client, compare, llm_config

pytestmark = pytest.mark.timeout(60)
MSG = [{'role': 'user', 'content': 'hi'}]

@pytest.fixture
def fake():
    "A fast fake server in a thread, stopped after the test"
    with FakeAI(latency=0) as url: yield url

def create(url, **kw):
    cli_kw = {k: kw.pop(k) for k in ('max_retries', 'timeout') if k in kw}
    return OpenAI(base_url=url, api_key='sk-test', **cli_kw).chat.completions.create(model='gpt-4o-mini', messages=MSG, **kw)

# ---- fakeai ------------------------------------------------------------------------------------------------------

def test_reply_is_deterministic_and_shaped_like_the_api(fake):
    r = create(fake)
    assert r.object == 'chat.completion' and r.model == 'gpt-4o-mini' and r.choices[0].finish_reason == 'stop'
    assert r.choices[0].message.content == fake_reply('hi', seed=0, model='gpt-4o-mini') == create(fake).choices[0].message.content
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    with FakeAI(latency=0, seed=1) as other: assert create(other).choices[0].message.content != r.choices[0].message.content

def test_stream_and_models(fake):
    cli = OpenAI(base_url=fake, api_key='sk-test')
    chunks = list(cli.chat.completions.create(model='gpt-4o-mini', messages=MSG, stream=True))
    assert ''.join(c.choices[0].delta.content or '' for c in chunks) == fake_reply('hi', model='gpt-4o-mini')
    assert chunks[-1].choices[0].finish_reason == 'stop'
    assert 'gpt-4o-mini' in [m.id for m in cli.models.list()]

def test_bad_requests_are_refused_like_the_api(fake):
    req = lambda body, hdrs: urllib.request.Request(fake + '/chat/completions', data=body, method='POST', headers=hdrs)
    for body,hdrs,status in ((b'{}', {'authorization': 'Bearer x'}, 400), (b'not json', {'authorization': 'Bearer x'}, 400),
                             (json.dumps(dict(model='m', messages=MSG)).encode(), {}, 401)):
        with pytest.raises(urllib.error.HTTPError) as e: urllib.request.urlopen(req(body, hdrs))
        assert e.value.code == status and 'message' in json.loads(e.value.read())['error']
    assert fake_stats(fake)['bad_requests'] == 3

def test_settings_are_checked_before_anything_changes():
    for kw,msg in ((dict(error_rate=1.5), 'error_rate'), (dict(latency=-1), 'latency'), (dict(rpm=0), 'rpm'),
                   (dict(error_rate=0.5, rate_429=0.4, hang_rate=0.2), 'at most 1')):
        with pytest.raises(ValueError, match=msg): FakeState(**kw)
    st = FakeState(latency=0.2)
    with pytest.raises(ValueError, match='nope'): st.configure(nope=1)
    with pytest.raises(TypeError, match='nope'): FakeAI(nope=1)
    with pytest.raises(ValueError): st.configure(latency=0.1, error_rate=2)
    assert st.latency == 0.2 and st.error_rate == 0
    with pytest.raises(ValueError, match='hang_rate'): FakeAI(hang_rate=-0.1)

def test_configure_and_reset_over_http(fake):
    fa = FakeAI.at(fake)
    assert fa.configure(error_rate=1)['error_rate'] == 1
    with pytest.raises(InternalServerError): create(fake, max_retries=0)
    with pytest.raises(ValueError, match='error_rate'): fa.configure(error_rate=3)
    assert fa.reset()['calls'] == 0

def test_sdk_retries_500s_and_the_server_counts_each_try(fake):
    fa = FakeAI.at(fake)
    fa.configure(error_rate=1)
    with pytest.raises(InternalServerError): create(fake, max_retries=2)
    s = fake_stats(fake)
    assert s['calls'] == s['errors'] == 3 and s['by_retry'] == {'0': 1, '1': 1, '2': 1}

def test_429_carries_retry_after_and_the_sdk_honours_it():
    with FakeAI(latency=0, rate_429=1, retry_after=1) as url:
        with pytest.raises(RateLimitError) as e: create(url, max_retries=0)
        assert e.value.response.headers['retry-after'] == '1' and e.value.code == 'rate_limit_exceeded'
        t = time.monotonic()
        with pytest.raises(RateLimitError): create(url, max_retries=1)
        assert time.monotonic() - t >= 0.9  # waited the Retry-After second, not the default half second

def test_rpm_limit_answers_429_like_the_real_api():
    with FakeAI(latency=0, rpm=5) as url:
        out = []
        for _ in range(7):
            try: create(url, max_retries=0); out.append('ok')
            except RateLimitError as e: out.append(e)
        assert out[:5] == ['ok']*5
        e = out[5]
        assert e.code == 'rate_limit_exceeded' and 'RPM' in e.message
        h = e.response.headers
        assert h['x-ratelimit-limit-requests'] == '5' and h['x-ratelimit-remaining-requests'] == '0'
        assert 0 < float(h['retry-after']) <= 60
        assert fake_stats(url)['rpm_limited'] == 2

def test_rpm_window_slides():
    st = FakeState(rpm=120, rpm_window=1)  # 2 per second
    assert [st.rpm_wait(t) for t in (0, 0.1, 0.2)] == [0, 0, pytest.approx(0.8)]
    assert st.rpm_wait(1.0) == 0 and st.rpm_wait(1.05) > 0 and st.rpm_wait(1.11) == 0

def test_hang_ends_at_the_client_timeout_and_the_server_lets_go():
    with FakeAI(latency=0, hang_rate=1) as url:
        t = time.monotonic()
        with pytest.raises(APITimeoutError): create(url, max_retries=0, timeout=0.3)
        assert 0.3 <= time.monotonic() - t < 3
        deadline = time.monotonic() + 3
        while fake_stats(url)['in_flight'] and time.monotonic() < deadline: time.sleep(0.05)
        assert fake_stats(url)['in_flight'] == 0 and fake_stats(url)['hangs'] == 1

def test_stop_wakes_hung_calls_and_frees_the_port():
    fa = FakeAI(latency=0, hang_rate=1).start()
    port = fa.port
    cli = OpenAI(base_url=fa.url, api_key='sk-test', max_retries=0, timeout=30)
    import threading
    def call():
        try: cli.chat.completions.create(model='m', messages=MSG)
        except Exception: pass  # the server went away: whatever the client says, it must not wait 30 s
    th = threading.Thread(target=call); th.start(); time.sleep(0.3)
    t = time.monotonic(); fa.stop()
    assert time.monotonic() - t < 5 and not fa.thread.is_alive() and running_url() != f'http://127.0.0.1:{port}/v1'
    th.join(10); assert not th.is_alive()
    with FakeAI(latency=0, port=port) as url: assert create(url).choices[0].message.content

def test_faults_are_drawn_from_the_seed():
    a,b = FakeState(error_rate=0.1, rate_429=0.05, hang_rate=0.02, seed=5), FakeState(error_rate=0.1, rate_429=0.05, hang_rate=0.02, seed=5)
    da,db = [a.draw() for _ in range(2000)], [b.draw() for _ in range(2000)]
    assert da == db
    c = Counter(f for f,_ in da)
    assert 140 < c['error'] < 260 and 60 < c['429'] < 150 and 15 < c['hang'] < 70

def test_latency_and_jitter():
    st = FakeState(latency=0.1, jitter=0.05)
    ds = [st.draw()[1] for _ in range(500)]
    assert min(ds) >= 0.1 and max(ds) <= 0.15 and max(ds) - min(ds) > 0.04

def test_prompt_of_takes_the_last_user_message():
    assert prompt_of([{'role': 'user', 'content': 'a'}, {'role': 'assistant', 'content': 'b'}, {'role': 'user', 'content': [{'type': 'text', 'text': 'c'}]}]) == 'c'
    assert prompt_of([]) == ''

def test_process_mode_and_cli():
    fp = FakeAI(latency=0, seed=3, process=True)
    with fp as url:
        assert create(url).choices[0].message.content == fake_reply('hi', seed=3, model='gpt-4o-mini')
        assert fp.stats()['ok'] == 1
        proc = fp.proc
    assert proc.poll() is not None and fp.proc is None
    FakeAI.at(url).stop()  # a handle doesn't own the server: stopping it is a no-op
    out = subprocess.run([sys.executable, '-m', 'concurrency_demo.fakeai', '--help'], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and '--error-rate' in out.stdout and '--hang-rate' in out.stdout and '--rpm' in out.stdout

def test_in_process_with_asgi_transport():
    import httpx2
    app = fake_app(latency=0)
    async def go():
        async with AsyncOpenAI(base_url='http://fake/v1', api_key='sk-test', http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app))) as cli:
            return await aask('hello', cli, 'fake-gpt')
    assert asyncio.run(go()) == fake_reply('hello', model='fake-gpt')

# ---- llm ---------------------------------------------------------------------------------------------------------

def test_config_defaults_to_the_fake(fake, monkeypatch):
    for k in ('CDEMO_LLM', 'CDEMO_MODEL', 'CDEMO_LLM_BASE_URL'): monkeypatch.delenv(k, raising=False)
    cfg = llm_config()
    assert (cfg.llm, cfg.base_url, cfg.model, cfg.max_retries) == ('fake', fake, 'gpt-4o-mini', 2)
    monkeypatch.setenv('CDEMO_MODEL', 'fake-gpt'); monkeypatch.setenv('CDEMO_LLM_BASE_URL', 'http://127.0.0.1:1/v1')
    cfg = llm_config()
    assert (cfg.model, cfg.base_url) == ('fake-gpt', 'http://127.0.0.1:1/v1')

def test_config_errors_and_no_key_in_repr(monkeypatch):
    monkeypatch.delenv('OPENAI_API_KEY', raising=False); monkeypatch.delenv('CDEMO_LLM_BASE_URL', raising=False)
    with pytest.raises(ValueError, match='OPENAI_API_KEY'): llm_config('openai')
    with pytest.raises(ValueError, match="'fake' or 'openai'"): llm_config('gemini')
    monkeypatch.setenv('CDEMO_LLM', 'openai'); monkeypatch.setenv('OPENAI_API_KEY', 'sk-very-secret')
    cfg = llm_config()
    assert cfg.llm == 'openai' and cfg.api_key == 'sk-very-secret' and 'very-secret' not in repr(cfg) and 'very-secret' not in str(cfg)
    monkeypatch.setenv('CDEMO_LLM', 'fake')
    if running_url() is None:
        with pytest.raises(ValueError, match='No fake LLM server'): llm_config()
    for kw in (dict(timeout=0), dict(timeout='1'), dict(max_retries=-1), dict(max_retries=True)):
        with pytest.raises(ValueError): llm_config('fake', 'http://x/v1', **kw)

def test_ask_and_aask(fake):
    cfg = llm_config('fake', fake)
    with client(cfg) as cli:
        assert ask('q', cli, cfg.model) == fake_reply('q', model=cfg.model)
        assert ask_all(['a', 'b'], cli, 'fake-gpt') == [fake_reply('a', model='fake-gpt'), fake_reply('b', model='fake-gpt')]
    assert ask('q') == fake_reply('q', model=cfg.model)  # a client of its own, closed after
    async def go():
        async with aclient(cfg) as cli:
            one = await aask('q', cli, cfg.model)
            many = await aask_all([f'p{i}' for i in range(20)], cli, cfg.model, concurrency=5)
            streamed = ''.join([p async for p in astream('q', cli, cfg.model)])
        return one, many, streamed, await aask('q')
    one,many,streamed,own = asyncio.run(go())
    assert one == streamed == own == fake_reply('q', model=cfg.model)
    assert many == [fake_reply(f'p{i}', model=cfg.model) for i in range(20)]

@pytest.mark.parametrize('http', ['aiohttp', 'httpx2'])
def test_async_transports_keep_the_sdk_policy(http):
    "On either transport `aclient` can use: the same replies and stream, 500s retried `max_retries` times, Retry-After honoured, a hang ended at the timeout"
    async def call(url, stream=False, **kw):
        cfg = llm_config('fake', url, http=http, **kw)
        async with aclient(cfg) as cli:
            if stream: return ''.join([p async for p in astream('q', cli, cfg.model)])
            return await aask('q', cli, cfg.model)
    with FakeAI(latency=0) as url:
        fa = FakeAI.at(url)
        assert asyncio.run(call(url)) == asyncio.run(call(url, stream=True)) == fake_reply('q', model='gpt-4o-mini')
        fa.configure(error_rate=1); fa.reset()
        with pytest.raises(InternalServerError): asyncio.run(call(url, max_retries=2))
        assert fake_stats(url)['by_retry'] == {'0': 1, '1': 1, '2': 1}
        fa.configure(error_rate=0, rate_429=1, retry_after=1); fa.reset()
        t = time.monotonic()
        with pytest.raises(RateLimitError): asyncio.run(call(url, max_retries=1))
        assert time.monotonic() - t >= 0.9 and fake_stats(url)['calls'] == 2
        fa.configure(rate_429=0, hang_rate=1)
        t = time.monotonic()
        with pytest.raises(APITimeoutError): asyncio.run(call(url, max_retries=0, timeout=0.3))
        assert 0.3 <= time.monotonic() - t < 3
    with socket.socket() as sk:
        sk.bind(('127.0.0.1', 0)); port = sk.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(APIConnectionError): asyncio.run(call(f'http://127.0.0.1:{port}/v1', max_retries=0))

def test_config_http_transport(monkeypatch):
    monkeypatch.delenv('CDEMO_LLM_HTTP', raising=False)
    assert llm_config('fake', 'http://x/v1').http == 'aiohttp'
    monkeypatch.setenv('CDEMO_LLM_HTTP', 'httpx2')
    assert llm_config('fake', 'http://x/v1').http == 'httpx2'
    with pytest.raises(ValueError, match="'aiohttp' or 'httpx2'"): llm_config('fake', 'http://x/v1', http='urllib')

def test_aask_all_respects_its_cap():
    with FakeAI(latency=0.05) as url:
        async def go():
            async with aclient(llm_config('fake', url)) as cli: return await aask_all([str(i) for i in range(30)], cli, concurrency=4)
        assert len(asyncio.run(go())) == 30
        assert fake_stats(url)['max_in_flight'] <= 4

def test_aclient_must_be_made_on_a_loop(fake):
    with pytest.raises(RuntimeError, match='inside a coroutine'): aclient(llm_config('fake', fake))

def test_per_call_timeout_overrides_the_clients():
    with FakeAI(latency=0, hang_rate=1) as url:
        with client(llm_config('fake', url, timeout=30, max_retries=0)) as cli:
            t = time.monotonic()
            with pytest.raises(APITimeoutError): ask('q', cli, timeout=0.2)
            assert time.monotonic() - t < 3

def test_no_stacked_retries(fake):
    "One question is at most 1 + max_retries calls: the helpers add no retry loop of their own"
    fa = FakeAI.at(fake)
    fa.configure(error_rate=1)
    for n in (0, 1, 2):
        fa.reset()
        with client(llm_config('fake', fake, max_retries=n)) as cli:
            with pytest.raises(InternalServerError): ask('q', cli)
        assert fake_stats(fake)['calls'] == n + 1

def test_askjob(fake):
    cfg = llm_config('fake', fake)
    async def go():
        job = AskJob(cfg)
        with pytest.raises(RuntimeError, match='async with'): await job('q')
        async with job:
            r = await job({'prompt': 'q', 'model': 'fake-gpt'}), await job('q')
            with pytest.raises(ValueError, match='prompt'): await job({'text': 'q'})
            with pytest.raises(ValueError, match='prompt'): await job('')
        assert job.cli is None
        return r
    assert asyncio.run(go()) == (fake_reply('q', model='fake-gpt'), fake_reply('q', model=cfg.model))

def test_compare_reports_a_speedup():
    with FakeAI(latency=0.05) as url:
        r = asyncio.run(compare([f'p{i}' for i in range(10)], llm_config('fake', url)))
    assert r['same_replies'] and r['n'] == 10 and r['sync_s'] >= 0.5 and r['speedup'] > 2
