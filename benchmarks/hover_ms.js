// In the page: point at query i (the event a mouse sends), then time until its weights are
// drawn and the next frame has been laid out and painted. Read by benchmarks/page_open.py and
// tests/test_page.py, and handed to playwright's page.evaluate(script, i).
i => new Promise(done => {
  const t = document.querySelectorAll('.queries .tok')[i];
  const start = performance.now();
  t.dispatchEvent(new PointerEvent('pointerover', {bubbles: true}));
  const drawn = () => t.classList.contains('on')
    ? requestAnimationFrame(() => setTimeout(() => done(performance.now() - start)))
    : requestAnimationFrame(drawn);
  drawn();
})
