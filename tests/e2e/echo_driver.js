#!/usr/bin/env node
// Headless Chromium (Debian's, driven by playwright-core) with one Laravel Echo page
// (echo_page.html: pusher-js + Echo), for the Python e2e tests, over JSON lines.
//
//   node echo_driver.js --chromium PATH --page URL --config JSON
//
// It opens --page, then starts Echo with --config ({key, wsPort, bearerToken}).
// stdout: the page's lines (echo_page.js), plus diagnostics {"type":"console"|"pageerror"|
// "request","text":S}; {"type":"closed"} when the browser is closed, then it exits.
// stdin: {"op":"channel"|"whisper"|"leave", ...} (window.echoE2E's functions, in order),
// {"op":"close"} (close the browser: its connection goes).
'use strict';

const readline = require('readline');
const { chromium } = require('playwright-core');

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
      throw new Error('bad argument ' + argv[i]);
    }
    args[argv[i].slice(2)] = argv[i + 1];
  }
  for (const name of ['chromium', 'page', 'config']) {
    if (!args[name]) {
      throw new Error('missing --' + name);
    }
  }
  return args;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

let browser = null;
let finishing = false;

async function finish(code) {
  if (finishing) {
    return;
  }
  finishing = true;
  try {
    if (browser) {
      await browser.close();
    }
  } catch (err) {
    // the browser is gone already
  }
  emit({ type: 'closed' });
  process.stdout.write('', () => process.exit(code));
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  browser = await chromium.launch({
    executablePath: args.chromium,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage();
  page.on('console', (msg) => emit({ type: 'console', text: msg.type() + ': ' + msg.text() }));
  page.on('pageerror', (err) => emit({ type: 'pageerror', text: String(err && err.stack || err) }));
  page.on('requestfailed', (req) => emit({
    type: 'request', text: 'failed ' + req.method() + ' ' + req.url() + ': ' +
      (req.failure() && req.failure().errorText),
  }));
  await page.exposeFunction('echoReport', (obj) => emit(obj));
  await page.goto(args.page, { waitUntil: 'load' });
  await page.evaluate((config) => window.echoE2E.start(config), JSON.parse(args.config));

  // page.evaluate calls one after the other, in the order of the lines
  let queue = Promise.resolve();
  const input = readline.createInterface({ input: process.stdin });
  input.on('line', (line) => {
    if (!line.trim()) {
      return;
    }
    queue = queue.then(async () => {
      try {
        const cmd = JSON.parse(line);
        if (cmd.op === 'close') {
          await finish(0);
        } else if (['channel', 'whisper', 'leave'].includes(cmd.op)) {
          await page.evaluate(([op, spec]) => window.echoE2E[op](spec), [cmd.op, cmd]);
        } else {
          throw new Error('unknown op ' + cmd.op);
        }
      } catch (err) {
        if (!finishing) {
          emit({ type: 'fatal', error: String(err && err.stack || err) });
        }
      }
    });
  });
  // The test went away: leave the page.
  input.on('close', () => queue.then(() => finish(0)));
}

main().catch((err) => {
  emit({ type: 'fatal', error: String(err && err.stack || err) });
  finish(1);
});
