/**
 * report.html in a real browser (headless Chromium through tests/kit/browser.ts): the page a sweep
 * writes, from synthetic results run through the real aggregation, conclusion, plots and writer,
 * served from loopback. At 1280×900 and at 800 px wide: the headline figure comes right after the
 * title, is rendered and lies in the first viewport; the short verdict follows it; nothing makes the
 * page scroll sideways (wide tables scroll inside their own containers); a click on a numeric header
 * sorts the rows; no page errors and no request leaves the machine.
 *
 * TTC_WRITE_DOCS_SCREENSHOT=1 also writes the top of the page at 1280×900 to docs/report.png.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Page } from 'puppeteer-core';
import { browserSkipReason, launchBrowser, openRecordedPage } from './kit/browser.ts';
import { tempDir } from './kit/helpers.ts';
import { testIf } from './kit/tools.ts';
import { groupCells } from '../report/aggregate.ts';
import { conclude } from '../report/conclusion.ts';
import { syntheticReportData } from '../report/synthetic.ts';
import { writeReport } from '../report/write.ts';

const skip = browserSkipReason();
const browserTest = testIf(!skip, (skip ?? '').replace(/^skipped: /, ''), { serial: true });

/** Serves the files of `dir` on 127.0.0.1 (GET only, nothing outside `dir`). */
async function serve(dir: string): Promise<{ url: string; close: () => Promise<void> }> {
  const types: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.svg': 'image/svg+xml', '.md': 'text/markdown', '.csv': 'text/csv', '.json': 'application/json' };
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '');
    // the browser's own favicon request (a report opened from disk makes none)
    if (rel === 'favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    const file = path.resolve(dir, rel);
    if (req.method !== 'GET' || !file.startsWith(path.resolve(dir) + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream' }).end(fs.readFileSync(file));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/`, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

interface Layout {
  innerWidth: number;
  innerHeight: number;
  scrollWidth: number;
  afterTitle: string;
  figure: { top: number; bottom: number; left: number; right: number; width: number; height: number; lines: number; lineWidth: number };
  verdict: { tag: string; text: string; top: number };
  figuresRight: number[];
  wraps: Array<{ id: string; overflowX: string; right: number; clientWidth: number; tableWidth: number; scrolled: number }>;
}

/** The page's layout, read in the page. */
function layout(page: Page): Promise<Layout> {
  return page.evaluate(() => {
    const h1 = document.querySelector('h1')!;
    const fig = h1.nextElementSibling as HTMLElement;
    const svg = fig.querySelector('svg')!;
    const r = svg.getBoundingClientRect();
    const lines = [...svg.querySelectorAll('.mark-line path')] as SVGGraphicsElement[];
    const verdict = fig.nextElementSibling as HTMLElement;
    const wraps = [...document.querySelectorAll('.table-wrap')].map((w) => {
      const el = w as HTMLElement;
      const before = el.scrollLeft;
      el.scrollLeft = 80;
      const scrolled = el.scrollLeft - before;
      el.scrollLeft = before;
      return { id: el.id, overflowX: getComputedStyle(el).overflowX, right: el.getBoundingClientRect().right, clientWidth: el.clientWidth, tableWidth: el.querySelector('table')!.scrollWidth, scrolled };
    });
    return {
      innerWidth: window.innerWidth,
      innerHeight: window.innerHeight,
      scrollWidth: document.documentElement.scrollWidth,
      afterTitle: `${fig.tagName.toLowerCase()}#${fig.id}`,
      figure: { top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width, height: r.height, lines: lines.length, lineWidth: Math.max(0, ...lines.map((l) => l.getBoundingClientRect().width)) },
      verdict: { tag: `${verdict.tagName.toLowerCase()}#${verdict.id}`, text: verdict.textContent ?? '', top: verdict.getBoundingClientRect().top },
      figuresRight: [...document.querySelectorAll('figure svg')].map((s) => s.getBoundingClientRect().right),
      wraps,
    };
  });
}

/** One column of a table's rows, as the page shows them now: the cells' data-sort and text. */
function column(page: Page, tableId: string, header: string): Promise<{ index: number; aria: string | null; keys: Array<string | null>; texts: string[] }> {
  return page.evaluate(
    (id, name) => {
      const table = document.querySelector(`#${id} table`) as HTMLTableElement;
      const ths = [...table.tHead!.rows[0]!.cells];
      const index = ths.findIndex((th) => th.firstChild?.textContent === name);
      const rows = [...table.tBodies[0]!.rows];
      return { index, aria: ths[index]?.getAttribute('aria-sort') ?? null, keys: rows.map((r) => r.cells[index]!.getAttribute('data-sort')), texts: rows.map((r) => r.cells[index]!.textContent ?? '') };
    },
    tableId,
    header,
  );
}

async function clickHeader(page: Page, tableId: string, header: string): Promise<void> {
  const handles = await page.$$(`#${tableId} thead th`);
  for (const h of handles) {
    if ((await h.evaluate((th) => th.firstChild?.textContent)) === header) {
      await h.click();
      return;
    }
  }
  throw new Error(`no header "${header}" in #${tableId}`);
}

const ascending = (xs: number[]): boolean => xs.every((x, i) => i === 0 || xs[i - 1]! <= x);

browserTest('report.html in Chromium at 1280×900 and 800 px: headline figure first, then the verdict; no sideways scrolling; tables scroll in place and sort by a click; offline, no errors', async (t) => {
  const data = syntheticReportData();
  const dir = tempDir('report-page');
  writeReport(dir, data);
  const c = conclude(data);
  const cellRows = groupCells(data).length;
  const server = await serve(dir);
  const browser = await launchBrowser();
  try {
    for (const viewport of [{ width: 1280, height: 900 }, { width: 800, height: 900 }]) {
      const at = `${viewport.width}×${viewport.height}`;
      const { page, external, errors } = await openRecordedPage(browser, viewport);
      await page.goto(`${server.url}report.html`, { waitUntil: 'load' });
      const l = await layout(page);
      t.log(`${at}: headline svg ${Math.round(l.figure.width)}×${Math.round(l.figure.height)} at y ${Math.round(l.figure.top)}–${Math.round(l.figure.bottom)}, verdict at y ${Math.round(l.verdict.top)}, page scrollWidth ${l.scrollWidth}`);

      // the headline figure: the first thing after the title, drawn, inside the first viewport
      t.is(l.afterTitle, 'figure#plot-accuracy-vs-bytes', `${at}: the first content after the title is the headline figure`);
      t.true(l.figure.width > 300 && l.figure.height > 200, `${at}: the headline svg has a real size`);
      t.true(l.figure.top >= 0 && l.figure.bottom <= l.innerHeight && l.figure.right <= l.innerWidth, `${at}: the headline figure lies within the first viewport`);
      t.is(l.figure.lines, 3 * 2 * 2, `${at}: a line per size (3) in each of the 2 bytes views × 2 budgets`);
      t.true(l.figure.lineWidth > 20, `${at}: the lines are drawn`);

      // the short verdict right after it, starting in the first viewport
      t.is(l.verdict.tag, 'p#verdict', `${at}: the verdict follows the headline figure`);
      t.is(l.verdict.text, c.headline);
      t.true(l.verdict.top >= l.figure.bottom && l.verdict.top < l.innerHeight, `${at}: the verdict starts within the first viewport`);

      // nothing widens the page; wide tables scroll inside their own container
      t.true(l.scrollWidth <= l.innerWidth, `${at}: the page does not scroll sideways (scrollWidth ${l.scrollWidth} > ${l.innerWidth})`);
      for (const r of l.figuresRight) t.true(r <= l.innerWidth, `${at}: every figure fits the width`);
      t.is(l.wraps.length, 7, 'every table has its container (with the N_opt table)');
      for (const w of l.wraps) {
        t.is(w.overflowX, 'auto', `${at}: #${w.id} scrolls sideways`);
        t.true(w.right <= l.innerWidth, `${at}: #${w.id} fits the page`);
        if (w.tableWidth > w.clientWidth) t.true(w.scrolled > 0, `${at}: the wide #${w.id} scrolls inside its container`);
      }
      const cells = l.wraps.find((w) => w.id === 'table-cells')!;
      t.true(cells.tableWidth > cells.clientWidth && cells.scrolled > 0, `${at}: the compression-cells table (${cells.tableWidth} px) is wider than its container (${cells.clientWidth} px) and scrolls in it`);

      // a click on a numeric header sorts the rows by it, ascending then descending
      const before = await column(page, 'table-cells', 'dev accuracy');
      t.is(before.aria, 'none');
      t.false(ascending(before.keys.map(Number)), 'not sorted by dev accuracy before the click');
      await clickHeader(page, 'table-cells', 'dev accuracy');
      const up = await column(page, 'table-cells', 'dev accuracy');
      t.is(up.aria, 'ascending');
      t.is(up.keys.length, cellRows, 'every row is still there');
      t.deepEqual([...up.keys].sort(), [...before.keys].sort(), 'the same rows, reordered');
      t.true(ascending(up.keys.map(Number)), `${at}: dev accuracy ascending after one click`);
      t.true(ascending(up.texts.map((s) => parseFloat(s))), `${at}: the shown percentages ascend too`);
      await clickHeader(page, 'table-cells', 'dev accuracy');
      const down = await column(page, 'table-cells', 'dev accuracy');
      t.is(down.aria, 'descending');
      t.true(ascending(down.keys.map(Number).reverse()), `${at}: dev accuracy descending after a second click`);
      // bytes sort as numbers, not as text ("900 kB" after "10 MB" would be text order)
      await clickHeader(page, 'table-cells', 'bytes total');
      const bytes = await column(page, 'table-cells', 'bytes total');
      t.true(ascending(bytes.texts.map((s) => parseInt(s, 10))), `${at}: bytes total ascending by value`);
      t.true(bytes.texts[0]!.length < bytes.texts[bytes.texts.length - 1]!.length, 'numeric, not text order');
      // memory budgets ("≤ 1.2 MB (…)") sort by their bytes
      await clickHeader(page, 'table-best-cells', 'memory budget');
      const mb = await column(page, 'table-best-cells', 'memory budget');
      t.true(ascending(mb.keys.map(Number)) && mb.texts[0]!.startsWith('≤ '), `${at}: memory budgets ascending`);

      if (viewport.width === 1280) {
        await page.evaluate(() => window.scrollTo(0, 0));
        const shot = path.join(dir, 'report-top.png');
        await page.screenshot({ path: shot });
        if (process.env.TTC_WRITE_DOCS_SCREENSHOT === '1') fs.copyFileSync(shot, path.join('docs', 'report.png'));
        t.log(`screenshot of the top of the page: ${shot}`);
      }
      t.deepEqual(errors, [], `${at}: no page errors`);
      t.deepEqual(external, [], `${at}: no request left the machine`);
      await page.close();
    }
  } finally {
    await browser.close();
    await server.close();
  }
});
