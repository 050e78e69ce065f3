"""
How long the BatchNorm page takes to open and to show its formulas typeset: the built site
served on 127.0.0.1, the page loaded again and again in headless Chromium (Debian's, through
Playwright), with JavaScript on and off, each load in a fresh browser context (an empty
cache, as for a first visit).

Not a test: timings depend on the machine and its load. With `--baseline` (once or more),
other built sites (say, ones built by older commits) are measured in the same run, their loads
taken in turn with this one's, so that a change in the machine's load hits all alike. Writes
`benchmarks/results/page_load-cpu.json` (with `--smoke`, by default
`test-output/bench-smoke/`).

For each site and JavaScript setting, over the loads (milliseconds from the start of the
navigation; median, quartiles and extremes):

* `load_ms`: the page's load event (its HTML, styles, scripts, fonts and images are in);
* `typeset_ms`: when every formula on the page is typeset (an `.arithmatex` element holds
  KaTeX's output); when the math arrives typeset, at the latest when the HTML is parsed.
  `None` when some formula is never typeset (KaTeX in the browser, JavaScript off);
* `ready_ms`: the later of the two, the time until a reader sees the finished page;
* `laid_out_ms`: when every section of the page is laid out. A long annotated page, with
  JavaScript, lets the browser skip the sections far from the screen while it loads and lays
  them out afterwards in short slices (docs/assets/javascripts/lazy-layout.js); this is when
  that ends. For any other page, the load event;
* `first_paint_ms`: the first contentful paint, when the reader first sees the top of the
  page (with the math pre-rendered, already typeset; with KaTeX in the browser, as raw TeX);
* `main_thread_cpu_ms`: the CPU time the page's main thread (parsing, scripts, style,
  layout, paint) spent from the navigation until the page was loaded and typeset (its
  tasks that started by then), read from a Chromium trace. Unlike the times above it hardly changes with the machine's load, so it
  is the figure to compare between runs on a busy machine.

    .venv/bin/python benchmarks/page_load.py
    .venv/bin/python benchmarks/page_load.py --baseline /tmp/site-main --repeats 15
    .venv/bin/python benchmarks/page_load.py --baseline /tmp/a --baseline-label a \
        --baseline /tmp/b --baseline-label b
"""
import argparse
import datetime
import functools
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / 'results'
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run']
VIEWPORT = {'width': 1440, 'height': 900}

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cli_checks  # noqa: E402

# Runs before the page's own scripts: once the DOMContentLoaded listeners have run (where a
# script would typeset), notes the time at which no formula is left untypeset
TYPESET_WATCH = '''
window.__typeset = null;
document.addEventListener('DOMContentLoaded', () => {
  const untypeset = () => [...document.querySelectorAll('.arithmatex')]
    .some(e => !e.querySelector('.katex'));
  const check = () => {
    if (untypeset()) { requestAnimationFrame(check); return; }
    window.__typeset = performance.now();
  };
  setTimeout(check, 0);
});
// When the page's last section is laid out (lazy-layout.js marks the html element), to
// the frame
window.__laidOut = null;
document.addEventListener('DOMContentLoaded', () => {
  const look = () => {
    if (document.documentElement.classList.contains('annotated-laid-out')) {
      window.__laidOut = performance.now();
    } else {
      requestAnimationFrame(look);
    }
  };
  look();
});
'''

# The navigation's timings, and the page's formulas (read after the load)
READ_TIMINGS = '''() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const formulas = document.querySelectorAll('.arithmatex').length;
  const typeset = [...document.querySelectorAll('.arithmatex')]
    .filter(e => e.querySelector('.katex')).length;
  const paint = performance.getEntriesByName('first-contentful-paint')[0];
  return {load: nav.loadEventEnd, dcl: nav.domContentLoadedEventEnd, formulas, typeset,
          paint: paint ? paint.startTime : null,
          watched: window.__typeset === undefined ? null : window.__typeset,
          lazy: document.documentElement.classList.contains('annotated-lazy')};
}'''


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(site: Path, port: int):
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f'http://127.0.0.1:{server.server_address[1]}/'


def build_site(into: Path) -> Path:
    env = dict(os.environ, NO_MKDOCS_2_WARNING='1')
    command = [sys.executable, '-m', 'mkdocs', 'build', '--strict', '--site-dir', str(into)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        sys.exit(f'page_load.py: error: the site does not build:\n{done.stdout}{done.stderr}')
    return into


# A top-level task of a thread in a Chromium trace (the name changed across versions)
TASKS = {'ThreadControllerImpl::RunTask', 'RunTask'}


def main_thread_cpu_ms(trace: bytes, url: str = None, until_ms: float = None) -> float:
    """
    The CPU time of the busiest renderer main thread's tasks in a Chromium trace. With `url`
    and `until_ms`, only the tasks that start within `until_ms` of that page's navigation
    (the work after it, such as a page laying out the rest of itself, is left out).
    """
    data = json.loads(trace)
    events = data['traceEvents'] if isinstance(data, dict) else data
    mains = {(e['pid'], e['tid']) for e in events
             if e.get('ph') == 'M' and e.get('name') == 'thread_name'
             and e.get('args', {}).get('name') == 'CrRendererMain'}
    cutoff = None
    if url is not None and until_ms is not None:
        starts = [e['ts'] for e in events if e.get('name') == 'navigationStart'
                  and e.get('args', {}).get('data', {}).get('documentLoaderURL') == url]
        if not starts:
            raise RuntimeError(f'no navigation to {url} in the trace')
        cutoff = max(starts) + until_ms * 1e3
    busy = {}
    for e in events:
        if (e.get('ph') == 'X' and e.get('name') in TASKS and (e['pid'], e['tid']) in mains
                and (cutoff is None or e['ts'] <= cutoff)):
            busy[e['pid'], e['tid']] = busy.get((e['pid'], e['tid']), 0) + e.get('tdur', 0)
    return max(busy.values(), default=0) / 1e3


def load_once(browser, url: str, javascript: bool) -> dict:
    context = browser.new_context(java_script_enabled=javascript, viewport=VIEWPORT)
    try:
        page = context.new_page()
        errors = []
        page.on('pageerror', lambda e: errors.append(str(e)))
        if javascript:
            page.add_init_script(TYPESET_WATCH)
        browser.start_tracing(page=page, categories=['toplevel', 'devtools.timeline',
                                                  'blink.user_timing', 'loading'])
        try:
            page.goto(url, wait_until='load', timeout=120_000)
            if javascript:
                # A script that typesets after the load event: wait for it (or give up)
                try:
                    page.wait_for_function('window.__typeset !== null', timeout=30_000)
                except Exception:  # noqa: BLE001 (a page whose math is never typeset)
                    pass
            found = page.evaluate(READ_TIMINGS)
        finally:
            trace = browser.stop_tracing()
        laid_out = found['load']
        if found['lazy']:
            page.wait_for_function('window.__laidOut !== null', timeout=60_000)
            laid_out = page.evaluate('window.__laidOut')
    finally:
        context.close()
    if errors:
        raise RuntimeError(f'{url}: errors in the page: {errors}')
    complete = found['formulas'] == found['typeset']
    if not complete:
        typeset = None
    elif javascript:
        typeset = found['watched']
    else:
        typeset = found['dcl']  # typeset in the HTML: there when it is parsed
    ready = None if typeset is None else max(found['load'], typeset)
    # Until the page is loaded and typeset (or, if it never is, the whole trace)
    cpu = main_thread_cpu_ms(trace, url, ready)
    return {'load_ms': found['load'], 'typeset_ms': typeset, 'ready_ms': ready,
            'main_thread_cpu_ms': cpu, 'first_paint_ms': found['paint'],
            'laid_out_ms': laid_out, 'formulas': found['formulas']}


def summary(values):
    if any(v is None for v in values):
        return None
    q = (statistics.quantiles(values, n=4, method='inclusive') if len(values) > 1
         else [values[0]] * 3)
    return {'median': statistics.median(values), 'p25': q[0], 'p75': q[2],
            'min': min(values), 'max': max(values)}


def measure(sites: dict, page: str, repeats: int, port: int) -> dict:
    from playwright.sync_api import sync_playwright

    servers = {label: serve(site, port if i == 0 else 0)
               for i, (label, site) in enumerate(sites.items())}
    loads = {label: {js: [] for js in (True, False)} for label in sites}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            version = browser.version
            # One load of each, not kept: the server's files in the OS cache, Chromium warm
            for label, (_, url) in servers.items():
                for js in (True, False):
                    load_once(browser, url + page, js)
            for _ in range(repeats):
                for label, (_, url) in servers.items():
                    for js in (True, False):
                        loads[label][js].append(load_once(browser, url + page, js))
            browser.close()
    finally:
        for server, _ in servers.values():
            server.shutdown()
            server.server_close()
    result = {}
    for label, site in sites.items():
        html = site / page / 'index.html'
        result[label] = {'site': str(site), 'html_bytes': html.stat().st_size,
                         'formulas': loads[label][True][0]['formulas']}
        for js in (True, False):
            runs = loads[label][js]
            result[label]['javascript_on' if js else 'javascript_off'] = {
                key: summary([r[key] for r in runs])
                for key in ('first_paint_ms', 'load_ms', 'typeset_ms', 'ready_ms',
                            'laid_out_ms', 'main_thread_cpu_ms')}
    return {'chromium': version, 'sites': result}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                     formatter_class=cli_checks.HelpFormatter)
    parser.add_argument('--site', default=None,
                        help='a built site to measure; when not given, this tree\'s site is '
                             'built into a temporary folder')
    parser.add_argument('--label', default='this tree', help='the name of --site in the results')
    parser.add_argument('--baseline', action='append', default=[],
                        help='another built site, measured in the same run (loads in turn); '
                             'may be given more than once')
    parser.add_argument('--baseline-label', action='append', default=[],
                        help='the name of each --baseline in the results, in the same order '
                             '(by default baseline, baseline 2, ...)')
    parser.add_argument('--page', default='labml_nn_bn/batch_norm/',
                        help='the page, a folder of the site with an index.html')
    parser.add_argument('--repeats', type=int, default=None,
                        help='loads per site and JavaScript setting; when not given 15, '
                             '1 with --smoke')
    parser.add_argument('--port', type=int, default=0,
                        help='port on 127.0.0.1 for the site (0: any free port)')
    parser.add_argument('--smoke', action='store_true', help='one load of each: for the tests')
    parser.add_argument('--out', default=None,
                        help='JSON file; when not given benchmarks/results/page_load-cpu.json, '
                             'test-output/bench-smoke/page_load-cpu.json with --smoke')
    args = parser.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (1 if args.smoke else 15)
    cli_checks.at_least(parser, '--repeats', repeats)
    cli_checks.at_least(parser, '--port', args.port, 0)
    if args.port > 65535:
        parser.error(f'--port: expected at most 65535, got {args.port}')
    page = args.page.strip('/') + '/'
    for option, site in [('--site', args.site)] + [('--baseline', b) for b in args.baseline]:
        if site is not None and not (Path(site) / page / 'index.html').is_file():
            parser.error(f'{option}: expected a built site with {page}index.html, got {site}')
    if len(args.baseline_label) > len(args.baseline):
        parser.error(f'--baseline-label: expected at most one per --baseline '
                     f'({len(args.baseline)}), got {len(args.baseline_label)}')
    labels = args.baseline_label + [
        'baseline' if i == 0 else f'baseline {i + 1}'
        for i in range(len(args.baseline_label), len(args.baseline))]
    if len({args.label, *labels}) != 1 + len(labels):
        parser.error(f'--baseline-label: expected names different from each other and from '
                     f'--label, got {[args.label] + labels}')
    if not Path(CHROMIUM).exists():
        parser.error(f'chromium: expected {CHROMIUM} (run `make system-deps`)')
    if args.smoke and args.out is not None:
        cli_checks.not_committed(parser, '--out', args.out)
    name = 'page_load-cpu.json'
    if args.out is None:
        out = cli_checks.writable_folder(parser, '--out',
                                         cli_checks.SMOKE_OUT if args.smoke else RESULTS) / name
    else:
        out = cli_checks.writable_file(parser, '--out', args.out)

    from labml_nn_bn.figure_tools import describe_device, write_atomically

    with tempfile.TemporaryDirectory(prefix='page-load-site-') as tmp:
        site = Path(args.site) if args.site else build_site(Path(tmp) / 'site')
        sites = {args.label: site.resolve()}
        for label, baseline in zip(labels, args.baseline):
            sites[label] = Path(baseline).resolve()
        load_before = os.getloadavg()
        measured = measure(sites, page, repeats, args.port)
    result = {
        'device': describe_device('cpu'),
        'chromium': measured['chromium'],
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'page': page,
        'viewport': VIEWPORT,
        'repeats': repeats,
        # The machine's load (1, 5 and 15 minutes) before and after: timings on a busy
        # machine are slower, for every site alike
        'loadavg_before': list(load_before),
        'loadavg_after': list(os.getloadavg()),
        'sites': measured['sites'],
        'smoke': args.smoke,
    }
    write_atomically(out, (json.dumps(result, indent=2) + '\n').encode())
    print(f'{page} in Chromium {measured["chromium"]}, median (quartiles) of {repeats} loads:')
    for label, found in measured['sites'].items():
        for setting in ('javascript_on', 'javascript_off'):
            cells = []
            for key in ('first_paint_ms', 'load_ms', 'ready_ms', 'laid_out_ms',
                        'main_thread_cpu_ms'):
                s = found[setting][key]
                missing = 'never typeset' if key == 'ready_ms' else 'not recorded in every load'
                cells.append(f'{key[:-3].replace("_", " ")} ' + (missing if s is None else
                             f'{s["median"]:.0f} ms ({s["p25"]:.0f}-{s["p75"]:.0f})'))
            print(f'  {label}, {setting.replace("_", " ")}: ' + ', '.join(cells))
    print(f'wrote {out}')


if __name__ == '__main__':
    cli_checks.run(main, sys.argv[1:])
