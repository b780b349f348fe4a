// The npm `pusher` SDK as an app server uses it against the real server: the HTTP API's
// `get` (channel queries) and `webhook(...).isValid()` on the posts a test receiver took.
// Reads one JSON task from argv[2]; prints one JSON line with the results.
'use strict';

const Pusher = require('pusher');

async function main() {
  const task = JSON.parse(process.argv[2]);
  const pusher = new Pusher({
    appId: task.appId, key: task.key, secret: task.secret,
    host: '127.0.0.1', port: String(task.port), useTLS: false,
  });
  const gets = [];
  for (const request of task.gets || []) {
    try {
      const response = await pusher.get(request);
      gets.push({ status: response.status, body: await response.json() });
    } catch (error) {  // the SDK rejects a non-2xx answer with a RequestError
      gets.push({ status: error.status, body: error.body });
    }
  }
  const webhooks = (task.webhooks || []).map((post) => {
    const webhook = pusher.webhook({ headers: post.headers, rawBody: post.body });
    const valid = webhook.isValid();
    return { valid, events: valid ? webhook.getEvents() : null };
  });
  process.stdout.write(JSON.stringify({ gets, webhooks }) + '\n');
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ fatal: String(error && error.stack || error) }) + '\n');
  process.exit(1);
});
