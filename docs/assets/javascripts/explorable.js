// What the live figures share. A page places an empty
// <div class="explorable" data-explorable="NAME"> under a static figure; the build
// (docs/hooks/explorables.py) puts the figure's numbers inside it as
// <script type="application/json">, and the script of that figure, which registers itself
// here under NAME, builds its controls and drawing into the div. No request leaves the page,
// and without JavaScript the div stays empty (and hidden), leaving the static figure.
(function () {
  var figures = {};
  var count = 0;

  // An HTML element: attributes (`text` sets its text) and children
  function h(tag, attrs, children) {
    return build(document.createElement(tag), attrs, children);
  }

  // An SVG element, the same way
  function s(tag, attrs, children) {
    var el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    return build(el, attrs, children);
  }

  function build(el, attrs, children) {
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === 'text') el.textContent = attrs[key];
      else el.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) {
      if (typeof child === 'string') child = document.createTextNode(child);
      el.appendChild(child);
    });
    return el;
  }

  // A number as the static figures print it: fixed decimals, a real minus sign, no "−0.000"
  function fmt(v, digits) {
    if (typeof v !== 'number' || !isFinite(v)) return '—';
    var text = v.toFixed(digits === undefined ? 3 : digits);
    if (/^-0\.?0*$/.test(text)) text = text.slice(1);
    return text.replace('-', '\u2212');
  }

  // Shows a value and keeps it at full precision in data-value, where the browser test
  // compares it with what the Python module computes
  function show(el, v, digits) {
    el.textContent = fmt(v, digits);
    var known = typeof v === 'number' && isFinite(v);
    el.setAttribute('data-value', known ? String(v) : '');
  }

  // A number field's value; NaN (and the field marked invalid) when it is not a number
  function read(input) {
    var v = input.value.trim() === '' ? NaN : Number(input.value);
    input.setAttribute('aria-invalid', isFinite(v) ? 'false' : 'true');
    return v;
  }

  // An id unique on the page, for <label for=...>
  function uid(prefix) {
    count += 1;
    return 'xp-' + prefix + '-' + count;
  }

  function start(root) {
    root.querySelectorAll('.explorable[data-explorable]').forEach(function (el) {
      var init = figures[el.getAttribute('data-explorable')];
      if (!init || el.hasAttribute('data-ready')) return;
      var script = el.querySelector('script.explorable-data');
      init(el, JSON.parse(script.textContent));
      el.setAttribute('data-ready', 'true');
    });
  }

  // Each figure's script calls this when it loads; figures whose page is already parsed
  // start at once, the others when it is
  function register(name, init) {
    figures[name] = init;
    if (document.readyState !== 'loading') start(document);
  }

  document.addEventListener('DOMContentLoaded', function () { start(document); });
  // With Material's instant navigation, later pages arrive through document$
  if (typeof document$ !== 'undefined') {
    document$.subscribe(function () { start(document); });
  }

  window.Explorable = {register: register, h: h, s: s, fmt: fmt, show: show, read: read,
                       uid: uid};
})();
