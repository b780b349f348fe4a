#!/usr/bin/env node
// One sockjs-client connection, driven by the Python end-to-end tests over JSON lines.
//
//   node node_client.js URL TRANSPORT
//
// stdout, one JSON object a line:
//   {"type":"open","transport":NAME}              the SockJS session is open
//   {"type":"message","data":OBJECT}              a Pushy message (the SockJS message, parsed)
//   {"type":"raw","data":STRING}                  a SockJS message that is not JSON
//   {"type":"close","code":N,"reason":S,"wasClean":B}   then the process exits
//   {"type":"fatal","error":S}                    sockjs-client threw
// stdin, one JSON object a line:
//   {"op":"send","message":OBJECT}                send OBJECT as one SockJS message
//   {"op":"close"}                                close the session
//
// sockjs-client resolves from NODE_PATH (the tests' npm cache folder).
'use strict';

const readline = require('readline');
const SockJS = require('sockjs-client');

const [url, transport] = process.argv.slice(2);
if (!url || !transport) {
  process.stderr.write('usage: node_client.js URL TRANSPORT\n');
  process.exit(2);
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

let sock;
try {
  sock = new SockJS(url, null, { transports: [transport] });
} catch (err) {
  emit({ type: 'fatal', error: String(err && err.stack || err) });
  process.exit(1);
}

sock.onopen = () => emit({ type: 'open', transport: sock.transport });
sock.onmessage = (e) => {
  let data;
  try {
    data = JSON.parse(e.data);
  } catch (err) {
    emit({ type: 'raw', data: String(e.data) });
    return;
  }
  emit({ type: 'message', data });
};
sock.onclose = (e) => {
  emit({ type: 'close', code: e.code, reason: e.reason, wasClean: e.wasClean });
  // Let stdout drain, then leave: open sockets or timers must not keep the process alive.
  process.stdout.write('', () => process.exit(0));
};

const input = readline.createInterface({ input: process.stdin });
input.on('line', (line) => {
  if (!line.trim()) {
    return;
  }
  let cmd;
  try {
    cmd = JSON.parse(line);
    if (cmd.op === 'send') {
      sock.send(JSON.stringify(cmd.message));
    } else if (cmd.op === 'close') {
      sock.close(1000, 'Normal closure');
    } else {
      throw new Error('unknown op ' + cmd.op);
    }
  } catch (err) {
    emit({ type: 'fatal', error: String(err && err.stack || err) });
  }
});
// The test went away: close like a page being left.
input.on('close', () => sock.close(1000, 'stdin closed'));
