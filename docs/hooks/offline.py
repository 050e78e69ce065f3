"""
The offline build of the site, for a reader without a network: `OFFLINE=true mkdocs
build` makes a folder that works opened from disk (`file:///.../site/index.html`),
search included.

mkdocs-material's `offline` plugin (listed, switched off, in mkdocs.yml; `OFFLINE`
switches it on here) does most of it: it turns off directory URLs, so that each link
names an `.html` file, and puts the search index into a script, since a page opened
from disk may not fetch files. A page opened from disk may not start a Web Worker
either, so the search worker runs through a small shim, `iframe-worker`, which the
plugin would load from a public CDN. That would be the one request leaving the
reader's disk, and it fails without a network; so this hook serves the copy that npm
fetched (package.json), as the site already does with KaTeX.
"""
import os
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

# The shim that replaces `Worker` on file:// pages (it does nothing on http pages)
SHIM = Path('node_modules') / 'iframe-worker' / 'shim' / 'index.js'
SHIM_URI = 'assets/javascripts/iframe-worker/shim.js'


def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def _offline_plugin(config):
    return next((plugin for name, plugin in config.plugins.items()
                 if name.split('/')[-1] == 'offline'), None)


def offline_enabled(config) -> bool:
    plugin = _offline_plugin(config)
    return plugin is not None and plugin.config.enabled


# Before the offline plugin's own `on_config`, which reads `enabled` and adds the CDN's
# shim only when no polyfill named `iframe-worker` is there yet
@event_priority(100)
def on_config(config):
    plugin = _offline_plugin(config)
    if plugin is None:
        return config
    value = os.environ.get('OFFLINE', '').strip().lower()
    if value in ('1', 'true', 'yes', 'on'):
        plugin.config.enabled = True
    elif value not in ('', '0', 'false', 'no', 'off'):
        raise PluginError(f'OFFLINE must be true or false, got {value!r}')
    if plugin.config.enabled:
        polyfills = [p for p in config.extra.get('polyfills', [])
                     if 'iframe-worker' not in p]
        config.extra['polyfills'] = polyfills + [SHIM_URI]
    return config


def on_files(files, config):
    if not offline_enabled(config):
        return files
    shim = _root(config) / SHIM
    if not shim.exists():
        raise PluginError(f'iframe-worker not found at {shim}: '
                          'run `make install` (npm ci) first')
    files.append(File(SHIM.as_posix(), src_dir=str(_root(config)),
                      dest_dir=config.site_dir, dest_uri=SHIM_URI,
                      use_directory_urls=config.use_directory_urls))
    return files


# Last, after every plugin: an offline build that still loads a script from the network
# is a broken offline build, so it fails instead of being published
@event_priority(-200)
def on_post_build(config):
    if not offline_enabled(config):
        return
    remote = [p for p in config.extra.get('polyfills', []) if '://' in str(p)]
    if remote:
        raise PluginError(f'the offline build loads scripts from the network: {remote}')
