// The long annotated pages open fast, and then behave as if they had been laid out whole.
//
// With JavaScript, the page's head marks it `annotated-lazy` (overrides/annotated.html), and
// annotated.css then lets the browser skip the sections far from the screen
// (`content-visibility: auto`), counting each as 300px tall. That is most of what makes the
// BatchNorm page open fast (benchmarks/page_load.py). Two things remain to do here:
//
// * Lay out the rest in the background: once the page has loaded, a few sections at a time
//   in slices of about 50 ms, top to bottom, until none is skipped. From then on the page
//   is exactly the page without the trick: heights are real, so find-in-page, links to
//   headings and the scroll bar are right. The html element then gets
//   `annotated-laid-out` (the tests wait for it).
// * Keep what the reader looks at still meanwhile. A section above the screen that goes
//   from its estimate to its real height would push the text on the screen down; before
//   each frame we put the element the reader is looking at back where it was (after a link
//   to a heading, that heading; else the section at the top of the screen). When the reader
//   scrolls, what they look at changes, and we follow.
(function () {
  var root = document.documentElement;
  if (!root.classList.contains('annotated-lazy')) return;

  var LAID_OUT = 'annotated-section--laid-out';
  var pending = [].slice.call(document.querySelectorAll('.annotated-section'));
  var reference = null;  // the element to keep still, its top on the screen and scrollY
  var referenceTop = 0;
  var lastScrollY = -1;

  function target() {
    var id = decodeURIComponent(location.hash.slice(1));
    return id ? document.getElementById(id) : null;
  }

  // The first section that reaches below the top of the screen
  function sectionOnScreen() {
    var all = document.querySelectorAll('.annotated-section');
    for (var i = 0; i < all.length; i++) {
      if (all[i].getBoundingClientRect().bottom > 0) return all[i];
    }
    return null;
  }

  function look(element) {
    reference = element;
    referenceTop = element ? element.getBoundingClientRect().top : 0;
    lastScrollY = window.scrollY;
  }

  // Puts the reference back where it was, unless the reader has scrolled since
  function hold() {
    if (window.scrollY !== lastScrollY || !reference) {
      look(sectionOnScreen());
      return;
    }
    var moved = reference.getBoundingClientRect().top - referenceTop;
    if (Math.abs(moved) >= 0.5) window.scrollBy({top: moved, behavior: 'instant'});
    lastScrollY = window.scrollY;
  }

  function jumpToTarget() {
    var element = target();
    if (!element) return;
    element.scrollIntoView();  // with its scroll-margin, under the header
    look(element);
  }

  function eachFrame() {
    hold();
    if (pending.length) {
      requestAnimationFrame(eachFrame);
    } else {
      root.classList.add('annotated-laid-out');
    }
  }

  // Work in slices of about 50 ms, so that the page still answers the reader within a
  // few frames while it is laid out; a few sections at a time, since each time the browser
  // restyles and lays out, it pays a fixed cost besides the sections' own
  function layOutSome() {
    var start = performance.now();
    while (pending.length && performance.now() - start < 50) {
      pending.splice(0, 8).forEach(function (section) { section.classList.add(LAID_OUT); });
      hold();  // lays those sections out now, and keeps the screen still
    }
    if (pending.length) setTimeout(layOutSome, 0);
  }

  window.addEventListener('hashchange', jumpToTarget);
  window.addEventListener('load', function () {
    if (target()) jumpToTarget(); else look(sectionOnScreen());
    requestAnimationFrame(eachFrame);
    setTimeout(layOutSome, 0);
  });
})();
