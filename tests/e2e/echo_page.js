// Laravel Echo 2.x with pusher-js 8.x in a page, for the e2e tests (loaded by echo_page.html,
// driven by echo_driver.js). Lines go to window.echoReport (exposed by the driver), else they
// pile up in window.echoEvents:
//   {"type":"state","previous":P,"current":C,"socket_id"?:S,"status":ECHO_STATUS}
//   {"type":"subscribed","channel":C}                   Echo's .subscribed()
//   {"type":"channel_error","channel":C,"error":E}      Echo's .error()
//   {"type":"event","channel":C,"via":"listen"|"whisper","event":E,"data":D,"metadata":M}
//        Echo's .listen(E) / .listenForWhisper(E) (one stream per channel, in order)
//   {"type":"here","channel":C,"users":[..]} / "joining" / "leaving" {"user":U}   Echo.join
//   {"type":"fatal","error":S}
(function () {
  'use strict';
  var echo = null;
  var channels = {};
  window.echoEvents = [];

  function report(obj) {
    window.echoEvents.push(obj);
    var log = document.getElementById('log');
    if (log) {
      log.textContent += JSON.stringify(obj) + '\n';
    }
    if (typeof window.echoReport === 'function') {
      window.echoReport(obj);
    }
  }

  function plain(value) {
    return value === undefined ? null : JSON.parse(JSON.stringify(value));
  }

  function echoChannel(kind, name) {
    if (kind === 'public') {
      return echo.channel(name);
    } else if (kind === 'private') {
      return echo.private(name);
    } else if (kind === 'presence') {
      return echo.join(name);
    }
    throw new Error('unknown channel kind ' + kind);
  }

  window.echoE2E = {
    // config: {key, wsPort, bearerToken}
    start: function (config) {
      var EchoClass = window.Echo.default;
      Pusher.log = function (message) {
        console.log(message);
      };
      echo = new EchoClass({
        broadcaster: 'pusher',
        key: config.key,
        cluster: '',
        wsHost: '127.0.0.1',
        wsPort: config.wsPort,
        forceTLS: false,
        enabledTransports: ['ws'],
        disableStats: true,
        authEndpoint: '/broadcasting/auth',
        bearerToken: config.bearerToken,
      });
      window.echo = echo;
      echo.connector.pusher.connection.bind('state_change', function (change) {
        var line = { type: 'state', previous: change.previous, current: change.current,
          status: echo.connectionStatus() };
        if (change.current === 'connected') {
          line.socket_id = echo.socketId();
        }
        report(line);
      });
    },
    // spec: {kind: public|private|presence, name, listen: [event names as given to
    // .listen], whispers: [names as given to .listenForWhisper]}
    channel: function (spec) {
      var ch = echoChannel(spec.kind, spec.name);
      var full = ch.name;
      channels[spec.kind + ':' + spec.name] = ch;
      ch.subscribed(function () {
        report({ type: 'subscribed', channel: full });
      });
      ch.error(function (error) {
        report({ type: 'channel_error', channel: full, error: plain(error) });
      });
      (spec.listen || []).forEach(function (event) {
        ch.listen(event, function (data, metadata) {
          report({ type: 'event', channel: full, via: 'listen', event: event, data: plain(data),
            metadata: plain(metadata) });
        });
      });
      (spec.whispers || []).forEach(function (event) {
        ch.listenForWhisper(event, function (data, metadata) {
          report({ type: 'event', channel: full, via: 'whisper', event: event,
            data: plain(data), metadata: plain(metadata) });
        });
      });
      if (spec.kind === 'presence') {
        ch.here(function (users) {
          report({ type: 'here', channel: full, users: plain(users) });
        }).joining(function (user) {
          report({ type: 'joining', channel: full, user: plain(user) });
        }).leaving(function (user) {
          report({ type: 'leaving', channel: full, user: plain(user) });
        });
      }
    },
    whisper: function (spec) {
      channels[spec.kind + ':' + spec.name].whisper(spec.event, spec.data);
    },
    leave: function (spec) {
      echo.leave(spec.name);
    },
  };

  window.addEventListener('error', function (e) {
    report({ type: 'fatal', error: String(e.error && e.error.stack || e.message) });
  });
})();
