// A link to a heading of a long annotated page lands on the heading.
//
// The sections far from the screen are not laid out until they near it (annotated.css,
// `content-visibility`), so the browser first scrolls to where the heading *would* be with
// every section above it at its estimated height. As the sections around the target are laid
// out, their real heights move it. We scroll to it again, frame after frame, until it stays
// put (or about half a second has passed). Only pages marked `annotated-lazy` need this.
(function () {
  if (!document.documentElement.classList.contains('annotated-lazy')) return;

  function target() {
    var id = decodeURIComponent(location.hash.slice(1));
    return id ? document.getElementById(id) : null;
  }

  function settle() {
    var el = target();
    if (!el) return;
    var last = null, still = 0, frames = 0;
    function step() {
      el.scrollIntoView();
      var top = el.getBoundingClientRect().top;
      still = (last !== null && Math.abs(top - last) < 1) ? still + 1 : 0;
      last = top;
      if (still < 3 && ++frames < 30) requestAnimationFrame(step);
    }
    requestAnimationFrame(step);
  }

  window.addEventListener('load', settle);
  window.addEventListener('hashchange', settle);
})();
