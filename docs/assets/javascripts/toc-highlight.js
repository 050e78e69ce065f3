// On a side-by-side page, the table of contents marks where the reader is, as Material does
// on the other pages: the entries of the headings the reader has scrolled past are "passed",
// and the last of them is "active".
//
// Material's own version is switched off on these pages (docs/hooks/annotate.py says why).
// This one waits until the page is laid out whole (lazy-layout.js marks the html element
// `annotated-laid-out`): until then a heading's place is only an estimate, and asking for it
// would make the browser lay out the sections the page is leaving for later.
(function () {
  var list = document.querySelector('[data-annotated-toc]');
  if (!list) return;
  var root = document.documentElement;

  var entries = [].slice.call(list.querySelectorAll('a.md-nav__link')).map(function (link) {
    var id = decodeURIComponent(link.hash.slice(1));
    return {link: link, heading: id ? document.getElementById(id) : null};
  }).filter(function (entry) { return entry.heading; });

  // A heading counts as passed once its top is above this line: the bottom of the header
  // and a little more, so that a heading a link has just scrolled to (under the header,
  // at its scroll-margin) counts
  function line() {
    var header = document.querySelector('.md-header');
    return (header ? header.getBoundingClientRect().bottom : 0) + 24;
  }

  function mark() {
    var limit = line();
    // At the very bottom the last headings may never reach the line: all count as passed
    var atEnd = window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 2;
    var passed = entries.filter(function (entry) {
      return atEnd || entry.heading.getBoundingClientRect().top < limit;
    });
    entries.forEach(function (entry) {
      var isPassed = passed.indexOf(entry) >= 0;
      entry.link.classList.toggle('md-nav__link--passed', isPassed);
      entry.link.classList.toggle('md-nav__link--active', entry === passed[passed.length - 1]);
    });
  }

  var queued = false;
  function queue() {
    if (queued) return;
    queued = true;
    requestAnimationFrame(function () { queued = false; mark(); });
  }

  function start() {
    mark();
    window.addEventListener('scroll', queue, {passive: true});
    window.addEventListener('resize', queue, {passive: true});
  }

  if (!root.classList.contains('annotated-lazy') || root.classList.contains('annotated-laid-out')) {
    start();
  } else {
    new MutationObserver(function (changes, observer) {
      if (root.classList.contains('annotated-laid-out')) {
        observer.disconnect();
        start();
      }
    }).observe(root, {attributes: true, attributeFilter: ['class']});
  }
})();
