// Typesets every formula with the KaTeX that the site hosts itself.
// pymdownx.arithmatex (generic mode) and the annotation hook wrap formulas as
// <span|div class="arithmatex">\( inline \)</span> or \[ display \].
(function () {
  function typeset(root) {
    root.querySelectorAll('.arithmatex').forEach(function (el) {
      if (el.dataset.typeset) return;
      var tex = el.textContent.trim();
      var display = tex.startsWith('\\[');
      if (tex.startsWith('\\(') || display) tex = tex.slice(2, -2);
      katex.render(tex, el, {displayMode: display, throwOnError: false});
      el.dataset.typeset = 'true';
    });
  }
  // With Material's instant navigation, pages arrive through document$
  if (typeof document$ !== 'undefined') {
    document$.subscribe(function () { typeset(document); });
  } else {
    document.addEventListener('DOMContentLoaded', function () { typeset(document); });
  }
})();
