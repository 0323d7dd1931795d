// The dashboard's live parts: one EventSource per tab (the URL is the body's data-stream). Each event carries an element's HTML:
// an element already on the page (same id) is replaced, unless what it shows (data-sig) is unchanged, so an open <details> stays open;
// a new job's row goes on top of a live first page (or at the end of an oldest-first one), and the table keeps its length.
(() => {
  const url = document.body.dataset.stream;
  if (!url || !window.EventSource) return;
  const es = new EventSource(url);
  const put = html => {
    const t = document.createElement('template');
    t.innerHTML = html.trim();
    const el = t.content.firstElementChild;
    if (!el || !el.id) return;
    const old = document.getElementById(el.id);
    if (old) {
      if (old.dataset.sig && old.dataset.sig === el.dataset.sig) return;
      old.replaceWith(el);
    } else {
      const body = document.getElementById('jobs');
      if (el.tagName !== 'TR' || !body || body.dataset.live !== '1') return;
      const limit = +body.dataset.limit || 50;
      if (body.dataset.order === 'oldest') { if (body.rows.length >= limit) return; body.append(el); }
      else { body.prepend(el); while (body.rows.length > limit) body.lastElementChild.remove(); }
      const empty = document.querySelector('.empty'); if (empty) empty.textContent = '';
    }
    if (window.htmx) htmx.process(el);
  };
  for (const ev of ['counts', 'pools', 'row', 'job']) es.addEventListener(ev, e => put(e.data));
  window.cdemoStream = es;
})();
