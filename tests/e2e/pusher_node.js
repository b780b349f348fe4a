#!/usr/bin/env node
// One pusher-js (8.x, its Node build) connection, plus the npm `pusher` SDK as the app server,
// driven by the Python end-to-end tests over JSON lines.
//
//   node pusher_node.js CONFIG_JSON
//
// CONFIG_JSON: {"port":N, "key":K, "secret":S, "appId":ID, "transport":"ws"|"xhr_streaming"|
//   "xhr_polling", "user":{"user_id":..,"user_info":{..}}?   (presence channel_data)
//   "signin":{"id":"..",..}?                                  (user_data of pusher.signin())
//   "authSecret":S2?}   (the secret the app server signs channel auth with: a wrong one makes
//                        the Pushy server refuse the subscription)
// It connects at once.
//
// stdout, one JSON object a line (each "type" is a stream of its own for the tests):
//   {"type":"state","previous":P,"current":C,"socket_id"?:S,"front"?:N}   connection states;
//        with "connected": the socket id and the front that holds the connection (header
//        X-Pushy-Front of the WebSocket handshake, or of the first HTTP fallback response)
//   {"type":"error","error":OBJ}           the connection's 'error' event (pusher:error, ...)
//   {"type":"event","channel":C,"event":E,"data":D}   any event on a subscribed channel
//        (bind_global: pusher:subscription_succeeded, pusher:member_added, triggers, ...)
//   {"type":"bound","channel":C,"event":E,"data":D,"metadata":M}  an event bound with "bind"
//        (its callback also gets the metadata: user_id of client events on presence channels)
//   {"type":"auth","kind":"channel"|"user","socket_id":S,"channel"?:C,"result":R}
//        what the SDK's authorizeChannel / authenticateUser answered pusher-js's customHandler
//   {"type":"signin","user_data":U}         pusher-js signed in (pusher.user.user_data)
//   {"type":"user_subscribed","channel":C}  its #server-to-user-{id} channel is subscribed
//   {"type":"user_event","event":E,"data":D}   an event sent to the user (pusher.user.bind_global)
//   {"type":"triggered","channel":C,"event":E,"ok":B}   a client event was handed to pusher-js
//   {"type":"sdk","id":ID,"status":N,"body":B} / {"type":"sdk","id":ID,"error":S,"status"?:N}
//        what an npm SDK call answered ("status"/"body" for HTTP calls, "result" otherwise)
//   {"type":"log","text":S}                 pusher-js's debug log (frames in and out)
//   {"type":"fatal","error":S}              the driver or pusher-js threw
// stdin, one JSON object a line:
//   {"op":"subscribe","channel":C}  {"op":"unsubscribe","channel":C}
//   {"op":"bind","channel":C,"event":E}
//   {"op":"trigger","channel":C,"event":E,"data":D}     a client event (channel.trigger)
//   {"op":"signin"}
//   {"op":"sdk","id":ID,"method":M,"args":[..]}          npm SDK: trigger, triggerBatch,
//        sendToUser, authorizeChannel, authenticateUser, get ({path, params})
//   {"op":"close"}    disconnect, then exit once the state is "disconnected"
//
// pusher-js and pusher resolve from NODE_PATH (the tests' npm cache folder).
'use strict';

const readline = require('readline');
const PusherClient = require('pusher-js');
const PusherServer = require('pusher');

const config = JSON.parse(process.argv[2] || 'null');
if (!config || !config.port || !config.key || !config.transport) {
  process.stderr.write('usage: pusher_node.js \'{"port":N,"key":K,"secret":S,...}\'\n');
  process.exit(2);
}

function plain(value) {
  // pusher-js hands Members / Member objects to presence callbacks: their fields, as JSON
  return value === undefined ? null : JSON.parse(JSON.stringify(value));
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function fatal(err) {
  emit({ type: 'fatal', error: String(err && err.stack || err) });
}

// -- the app server: the npm SDK -------------------------------------------------------------

function sdkFor(secret) {
  return new PusherServer({
    appId: String(config.appId || '0'), key: config.key, secret: secret || 'unused',
    host: '127.0.0.1', port: String(config.port), useTLS: false,
  });
}
const sdk = sdkFor(config.secret);
const authSdk = sdkFor(config.authSecret || config.secret);

function authorizeChannel({ socketId, channelName }, callback) {
  try {
    const presence = channelName.startsWith('presence-') ? config.user : undefined;
    const result = authSdk.authorizeChannel(socketId, channelName, presence);
    emit({ type: 'auth', kind: 'channel', socket_id: socketId, channel: channelName, result });
    callback(null, result);
  } catch (err) {
    fatal(err);
    callback(err, null);
  }
}

function authenticateUser({ socketId }, callback) {
  try {
    const result = authSdk.authenticateUser(socketId, config.signin);
    emit({ type: 'auth', kind: 'user', socket_id: socketId, result });
    callback(null, result);
  } catch (err) {
    fatal(err);
    callback(err, null);
  }
}

async function sdkCall(cmd) {
  const args = cmd.args || [];
  try {
    if (cmd.method === 'authorizeChannel' || cmd.method === 'authenticateUser') {
      emit({ type: 'sdk', id: cmd.id, result: sdk[cmd.method](...args) });
      return;
    }
    if (!['trigger', 'triggerBatch', 'sendToUser', 'get'].includes(cmd.method)) {
      throw new Error('unknown sdk method ' + cmd.method);
    }
    const response = await sdk[cmd.method](...args);
    const text = await response.text();
    let body = text;
    try {
      body = JSON.parse(text);
    } catch (err) {
      // not JSON: report the text
    }
    emit({ type: 'sdk', id: cmd.id, status: response.status, body });
  } catch (err) {
    // RequestError: the status and the body the server answered
    emit({ type: 'sdk', id: cmd.id, error: String(err && err.message || err),
      status: err && err.status, body: err && err.body });
  }
}

// -- the front holding the connection: X-Pushy-Front, read from what pusher-js opens ---------

let front = null;

function noteFront(value) {
  if (front === null && value !== undefined && value !== null && value !== '') {
    front = Number(value);
  }
}

const BaseWebSocket = PusherClient.Runtime.getWebSocketAPI();
const BaseXHR = PusherClient.Runtime.getXHRAPI();
PusherClient.Runtime.getWebSocketAPI = () => function TappedWebSocket(url) {
  const ws = new BaseWebSocket(url);
  ws.addEventListener('open', () => noteFront(ws.headers && ws.headers['x-pushy-front']));
  return ws;
};
PusherClient.Runtime.getXHRAPI = () => function TappedXHR() {
  const xhr = new BaseXHR();
  xhr.addEventListener('readystatechange', () => {
    if (xhr.readyState >= 2) {
      noteFront(xhr.getResponseHeader('x-pushy-front'));
    }
  });
  return xhr;
};

// -- the client: pusher-js -------------------------------------------------------------------

PusherClient.log = (message) => emit({ type: 'log', text: String(message) });

let closing = false;
let pusher;
try {
  pusher = new PusherClient(config.key, {
    cluster: '',
    wsHost: '127.0.0.1',
    wsPort: config.port,
    httpHost: '127.0.0.1',
    httpPort: config.port,
    forceTLS: false,
    enabledTransports: [config.transport],
    disableStats: true,
    channelAuthorization: { customHandler: authorizeChannel },
    userAuthentication: { customHandler: authenticateUser },
  });
} catch (err) {
  fatal(err);
  process.exit(1);
}

pusher.connection.bind('state_change', ({ previous, current }) => {
  const line = { type: 'state', previous, current };
  if (current === 'connected') {
    line.socket_id = pusher.connection.socket_id;
    line.front = front;
  }
  emit(line);
  if (closing && current === 'disconnected') {
    process.stdout.write('', () => process.exit(0));
  }
});
pusher.connection.bind('error', (error) => emit({ type: 'error', error: plain(error) }));
pusher.user.bind_global((event, data) => emit({ type: 'user_event', event, data: plain(data) }));

function signin() {
  pusher.signin();
  pusher.user.signinDonePromise.then(() => {
    const user = pusher.user;
    emit({ type: 'signin', user_data: plain(user.user_data) });
    if (user.serverToUserChannel) {
      const name = user.serverToUserChannel.name;
      user.serverToUserChannel.bind('pusher:subscription_succeeded',
        () => emit({ type: 'user_subscribed', channel: name }));
    }
  }, fatal);
}

function channelOf(name) {
  const channel = pusher.channel(name);
  if (!channel) {
    throw new Error('not subscribed to ' + name);
  }
  return channel;
}

const input = readline.createInterface({ input: process.stdin });
input.on('line', (line) => {
  if (!line.trim()) {
    return;
  }
  try {
    const cmd = JSON.parse(line);
    if (cmd.op === 'subscribe') {
      const channel = pusher.subscribe(cmd.channel);
      channel.bind_global((event, data) => emit({
        type: 'event', channel: cmd.channel, event, data: plain(data),
      }));
    } else if (cmd.op === 'unsubscribe') {
      pusher.unsubscribe(cmd.channel);
    } else if (cmd.op === 'bind') {
      channelOf(cmd.channel).bind(cmd.event, (data, metadata) => emit({
        type: 'bound', channel: cmd.channel, event: cmd.event, data: plain(data),
        metadata: plain(metadata),
      }));
    } else if (cmd.op === 'trigger') {
      const ok = channelOf(cmd.channel).trigger(cmd.event, cmd.data);
      emit({ type: 'triggered', channel: cmd.channel, event: cmd.event, ok });
    } else if (cmd.op === 'signin') {
      signin();
    } else if (cmd.op === 'sdk') {
      sdkCall(cmd);
    } else if (cmd.op === 'close') {
      closing = true;
      if (pusher.connection.state === 'disconnected') {
        process.stdout.write('', () => process.exit(0));
      }
      pusher.disconnect();
    } else {
      throw new Error('unknown op ' + cmd.op);
    }
  } catch (err) {
    fatal(err);
  }
});
// The test went away: leave.
input.on('close', () => {
  pusher.disconnect();
  process.stdout.write('', () => process.exit(0));
});
