// Vigil's live tail: turns the search page's "Live tail" link (#live-tail-toggle, which
// without scripts opens a page that reloads itself) into a toggle that streams matching
// events into #live-tail as they are indexed, newest on top, pausable.
//
// Every string in a message is attacker-written event text: it reaches the page through
// textContent and createElement only, never as markup.
(function () {
  'use strict';

  var MAX_ROWS = 500;

  var toggle = document.getElementById('live-tail-toggle');
  var panel = document.getElementById('live-tail');
  var rows = document.getElementById('live-tail-rows');
  var pause = document.getElementById('live-tail-pause');
  var status = document.getElementById('live-tail-status');
  if (!toggle || !panel || !rows || !pause || !status || !window.EventSource) {
    return;
  }

  var source = null;
  var last = null;
  var paused = false;

  function say(text) {
    status.textContent = text;
  }

  function textCell(tr, text, className) {
    var td = document.createElement('td');
    if (className) {
      td.className = className;
    }
    td.textContent = String(text);
    tr.appendChild(td);
    return td;
  }

  function addRow(data) {
    var tr = document.createElement('tr');
    tr.className = 'live-tail-row';
    textCell(tr, data.time, 'time');
    textCell(tr, data.received, 'time');
    var source = textCell(tr, data.source_kind);
    source.appendChild(document.createElement('br'));
    var name = document.createElement('span');
    name.className = 'muted';
    name.textContent = String(data.source_name);
    source.appendChild(name);
    var event = document.createElement('td');
    event.className = 'event';
    (data.summary || []).forEach(function (pair) {
      var cell = document.createElement('span');
      cell.className = 'cell';
      var label = document.createElement('span');
      label.className = 'label';
      label.textContent = String(pair[0]);
      cell.appendChild(label);
      cell.appendChild(document.createTextNode(' ' + String(pair[1])));
      event.appendChild(cell);
      event.appendChild(document.createTextNode(' '));
    });
    // The server writes this path; it is followed only when it is one of ours.
    if (typeof data.link === 'string' && data.link.indexOf('/search?') === 0) {
      var open = document.createElement('a');
      open.href = data.link;
      open.textContent = 'open';
      event.appendChild(open);
    }
    tr.appendChild(event);
    rows.insertBefore(tr, rows.firstChild);
    while (rows.rows.length > MAX_ROWS) {
      rows.deleteRow(rows.rows.length - 1);
    }
  }

  function remember(message) {
    if (message.lastEventId) {
      last = message.lastEventId;
    }
  }

  function parse(message) {
    try {
      return JSON.parse(message.data);
    } catch (error) {
      return null;
    }
  }

  function close() {
    if (source) {
      source.close();
      source = null;
    }
  }

  function stopped(text) {
    close();
    paused = true;
    pause.textContent = 'Resume';
    say(text);
  }

  function open() {
    close();
    var url = toggle.getAttribute('data-stream');
    if (!url || url.indexOf('/search/tail?') !== 0) {
      return;
    }
    if (last !== null) {
      url += '&after=' + encodeURIComponent(last);
    }
    say('Connecting…');
    source = new EventSource(url);
    source.addEventListener('open', function () {
      say('Live: matching events appear here as they are indexed.');
    });
    source.addEventListener('ready', remember);
    source.addEventListener('cursor', remember);
    source.addEventListener('message', function (message) {
      remember(message);
      var data = parse(message);
      if (data) {
        addRow(data);
      }
    });
    source.addEventListener('gap', function () {
      say('More events arrived than the tail keeps; some may be missing here, so search for them.');
    });
    source.addEventListener('failed', function () {
      stopped('The search failed; resume to try again.');
    });
    source.addEventListener('end', function (message) {
      var data = parse(message);
      if (data && data.reason === 'shutdown') {
        stopped('The server is stopping; resume to try again.');
      }
      // Otherwise the server renews the stream; the browser reconnects by itself.
    });
    source.addEventListener('error', function () {
      if (source && source.readyState === EventSource.CLOSED) {
        stopped('The tail stopped (signed out, or too many tails open); resume to try again.');
      } else {
        say('Reconnecting…');
      }
    });
  }

  function start() {
    paused = false;
    pause.textContent = 'Pause';
    open();
  }

  toggle.setAttribute('role', 'button');
  toggle.setAttribute('aria-pressed', 'false');
  toggle.setAttribute('aria-controls', 'live-tail');
  toggle.addEventListener('click', function (click) {
    click.preventDefault();
    if (panel.hidden) {
      panel.hidden = false;
      toggle.setAttribute('aria-pressed', 'true');
      start();
    } else {
      close();
      panel.hidden = true;
      toggle.setAttribute('aria-pressed', 'false');
    }
  });
  pause.addEventListener('click', function () {
    if (paused) {
      start();
    } else {
      stopped('Paused; what arrives meanwhile comes when you resume.');
    }
  });
  window.addEventListener('pagehide', close);
})();
