/**
 * A real headless Chromium for page tests, driven with puppeteer-core (no bundled browser: the
 * system's). `.ci/run` installs Debian's `chromium` (best effort); where none is found a test says
 * why with `t.log` and is registered as skipped, never passed.
 *
 * Found in order: $TTC_CHROMIUM, then chromium / chromium-browser / google-chrome on PATH's usual places.
 */
import fs from 'node:fs';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable', '/snap/bin/chromium'];

/** The Chromium executable to drive, or undefined when this machine has none. */
export function findChromium(): string | undefined {
  const fromEnv = process.env.TTC_CHROMIUM;
  if (fromEnv) return fs.existsSync(fromEnv) ? fromEnv : undefined;
  return CANDIDATES.find((p) => fs.existsSync(p));
}

/** Why browser tests are skipped here, or undefined when a Chromium exists. */
export function browserSkipReason(): string | undefined {
  return findChromium() ? undefined : 'skipped: no Chromium on this machine (install Debian\'s `chromium`, as .ci/run does, or set TTC_CHROMIUM)';
}

/**
 * Launches headless Chromium with no network beyond what the page's own origin serves (the tests'
 * pages are served from loopback). `--no-sandbox` because CI runs as root, where Chromium refuses its sandbox.
 */
export async function launchBrowser(): Promise<Browser> {
  const executablePath = findChromium();
  if (!executablePath) throw new Error(browserSkipReason());
  return puppeteer.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-extensions', '--proxy-server=direct://', '--proxy-bypass-list=*'],
    protocolTimeout: 120_000,
  });
}

/**
 * Opens a page that records every request leaving loopback and every page error, so a test can
 * assert the page needed no external network and threw nothing.
 */
export async function openRecordedPage(browser: Browser, viewport = { width: 1280, height: 900 }): Promise<{ page: Page; external: string[]; errors: string[] }> {
  const page = await browser.newPage();
  await page.setViewport(viewport);
  const external: string[] = [];
  const errors: string[] = [];
  await page.setRequestInterception(true);
  page.on('request', (req) => {
    const url = req.url();
    const local = /^(data:|blob:|about:)/.test(url) || /^https?:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?\//.test(url);
    if (local) void req.continue();
    else { external.push(url); void req.abort(); }
  });
  page.on('pageerror', (e) => errors.push(e instanceof Error ? e.message : String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  return { page, external, errors };
}
