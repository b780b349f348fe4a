#!/usr/bin/env node
// Headless Chromium (Debian's, driven by playwright-core) holding one sockjs-client connection
// in a page, for the Python e2e tests: the same JSON lines as node_client.js.
//
//   node browser_driver.js --chromium PATH --page URL --url SOCKJS_URL --transport NAME
//                          [--inject SCRIPT_URL]
//
// It opens --page (browser_page.html on the tests' static server; or a page of the Pushy
// server's own origin, with browser_page.js injected from --inject), then starts the
// connection with the transport forced.
// stdout: {"type":"open"|"message"|"raw"|"close"|"fatal", ...} as node_client.js, plus
// diagnostics {"type":"console"|"pageerror"|"request","text":S}. The process exits after close.
// stdin: {"op":"send","message":OBJECT} and {"op":"close"}.
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
  for (const name of ['chromium', 'page', 'url', 'transport']) {
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
  await page.exposeFunction('pushyReport', (obj) => {
    emit(obj);
    if (obj.type === 'close' || obj.type === 'fatal') {
      finish(0);
    }
  });

  await page.goto(args.page, { waitUntil: 'load' });
  if (args.inject) {
    await page.addScriptTag({ url: args.inject });
  }
  await page.evaluate(([url, transport]) => window.pushyE2E.start(url, transport),
    [args.url, args.transport]);

  const input = readline.createInterface({ input: process.stdin });
  input.on('line', async (line) => {
    if (!line.trim()) {
      return;
    }
    try {
      const cmd = JSON.parse(line);
      if (cmd.op === 'send') {
        await page.evaluate((message) => window.pushyE2E.send(message), cmd.message);
      } else if (cmd.op === 'close') {
        await page.evaluate(() => window.pushyE2E.close());
      } else {
        throw new Error('unknown op ' + cmd.op);
      }
    } catch (err) {
      if (!finishing) {
        emit({ type: 'fatal', error: String(err && err.stack || err) });
      }
    }
  });
  // The test went away: leave the page.
  input.on('close', () => finish(0));
}

main().catch((err) => {
  emit({ type: 'fatal', error: String(err && err.stack || err) });
  finish(1);
});
