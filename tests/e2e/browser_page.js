// One sockjs-client connection in a page, for the e2e tests (loaded by browser_page.html, or
// injected by browser_driver.js into a page of the Pushy server's own origin).
// Events go to window.pushyReport (exposed by the driver), else they pile up in
// window.pushyEvents; they have the shape node_client.js prints.
(function () {
  'use strict';
  var sock = null;
  window.pushyEvents = [];

  function report(obj) {
    window.pushyEvents.push(obj);
    var log = document.getElementById('log');
    if (log) {
      log.textContent += JSON.stringify(obj) + '\n';
    }
    if (typeof window.pushyReport === 'function') {
      window.pushyReport(obj);
    }
  }

  window.pushyE2E = {
    start: function (url, transport) {
      try {
        sock = new SockJS(url, null, { transports: [transport] });
      } catch (err) {
        report({ type: 'fatal', error: String(err && err.stack || err) });
        return;
      }
      sock.onopen = function () {
        report({ type: 'open', transport: sock.transport });
      };
      sock.onmessage = function (e) {
        var data;
        try {
          data = JSON.parse(e.data);
        } catch (err) {
          report({ type: 'raw', data: String(e.data) });
          return;
        }
        report({ type: 'message', data: data });
      };
      sock.onclose = function (e) {
        report({ type: 'close', code: e.code, reason: e.reason, wasClean: e.wasClean });
      };
    },
    send: function (message) {
      sock.send(JSON.stringify(message));
    },
    close: function () {
      sock.close(1000, 'Normal closure');
    }
  };
})();
