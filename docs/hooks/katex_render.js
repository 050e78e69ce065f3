// Typesets the site's formulas at build time, for the hook `annotate.py` (`on_post_page`):
// the reader's browser then gets finished HTML and loads no KaTeX script, only its CSS and
// fonts.
//
// Usage: node katex_render.js <path of the katex package>
// Reads one JSON array per line on stdin, [[tex, displayMode], ...] (one page's formulas),
// and answers each with one JSON line, [{html} or {error}, ...] in the same order.
// One process serves the whole build, so Node and KaTeX start once, not once per page.
'use strict';
const readline = require('readline');

const katex = require(process.argv[2]);

function render(tex, display) {
  const warnings = [];
  try {
    const html = katex.renderToString(tex, {
      displayMode: display,
      // A formula KaTeX cannot parse is an error that stops the build, never a red box
      throwOnError: true,
      // KaTeX's default output: the visible HTML and MathML for screen readers
      output: 'htmlAndMathml',
      // What KaTeX accepts but LaTeX would not (by default a console warning in a browser
      // nobody watches): reported to the hook, which fails a strict build with it
      strict: (code, message) => { warnings.push(`${code}: ${message}`); return 'ignore'; },
    });
    return warnings.length ? {html, warnings} : {html};
  } catch (e) {
    return {error: String(e && e.message ? e.message : e)};
  }
}

const lines = readline.createInterface({input: process.stdin, terminal: false});
lines.on('line', (line) => {
  if (!line.trim()) return;
  const formulas = JSON.parse(line);
  process.stdout.write(JSON.stringify(formulas.map(([tex, display]) => render(tex, display))) + '\n');
});
