// Vigil's keyboard shortcuts, an enhancement of pages that work without them:
//   /        the query box (#q)
//   j / k    the next / previous row of a table of events or alerts
//   o, Enter open or close the selected row (or follow its link)
//   ?        this list; Escape closes it
// Keys typed into a field are left alone. Nothing here reads event text.
(function () {
  'use strict';

  var ROWS = 'table.events > tbody > tr, table.alert-groups > tbody > tr';
  var SHORTCUTS = [
    ['/', 'Go to the query box'],
    ['j', 'Next row'],
    ['k', 'Previous row'],
    ['o or Enter', 'Open or close the selected row'],
    ['?', 'Show or hide this list'],
    ['Escape', 'Hide this list, or leave a field']
  ];

  var selected = null;
  var help = null;

  function typing(target) {
    return target && (target.isContentEditable ||
      /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  function visibleRows() {
    return Array.prototype.filter.call(document.querySelectorAll(ROWS), function (row) {
      return row.offsetParent !== null;
    });
  }

  function select(step) {
    var rows = visibleRows();
    if (rows.length === 0) {
      return;
    }
    var at = rows.indexOf(selected);
    var next = at === -1 ? (step > 0 ? 0 : rows.length - 1) :
      Math.max(0, Math.min(rows.length - 1, at + step));
    if (selected) {
      selected.classList.remove('key-selected');
    }
    selected = rows[next];
    selected.classList.add('key-selected');
    var focus = selected.querySelector('summary, a[href], button');
    if (focus) {
      focus.focus();
    }
    selected.scrollIntoView({ block: 'nearest' });
  }

  function openSelected() {
    if (!selected || !document.contains(selected)) {
      return false;
    }
    var details = selected.querySelector('details');
    if (details) {
      details.open = !details.open;
      return true;
    }
    var link = selected.querySelector('a[href]');
    if (link) {
      link.click();
      return true;
    }
    return false;
  }

  function toggleHelp() {
    if (!help) {
      help = document.createElement('section');
      help.id = 'keys-help';
      help.className = 'keys-help';
      help.setAttribute('aria-label', 'Keyboard shortcuts');
      help.tabIndex = -1;
      var title = document.createElement('h2');
      title.textContent = 'Keyboard shortcuts';
      help.appendChild(title);
      var list = document.createElement('dl');
      SHORTCUTS.forEach(function (pair) {
        var key = document.createElement('dt');
        var kbd = document.createElement('kbd');
        kbd.textContent = pair[0];
        key.appendChild(kbd);
        var what = document.createElement('dd');
        what.textContent = pair[1];
        list.appendChild(key);
        list.appendChild(what);
      });
      help.appendChild(list);
      help.hidden = true;
      (document.querySelector('main') || document.body).appendChild(help);
    }
    help.hidden = !help.hidden;
    if (!help.hidden) {
      help.focus();
    }
  }

  document.addEventListener('keydown', function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) {
      return;
    }
    if (typing(event.target)) {
      if (event.key === 'Escape') {
        event.target.blur();
      }
      return;
    }
    switch (event.key) {
      case '/': {
        var query = document.getElementById('q');
        if (query) {
          event.preventDefault();
          query.focus();
          query.select();
        }
        break;
      }
      case 'j':
        select(1);
        break;
      case 'k':
        select(-1);
        break;
      case 'o':
        if (openSelected()) {
          event.preventDefault();
        }
        break;
      case 'Enter': {
        // A focused link, button or summary does what Enter does to it already.
        var focused = document.activeElement;
        if ((!focused || focused === document.body) && openSelected()) {
          event.preventDefault();
        }
        break;
      }
      case '?':
        event.preventDefault();
        toggleHelp();
        break;
      case 'Escape':
        if (help && !help.hidden) {
          help.hidden = true;
        }
        break;
      default:
        break;
    }
  });
})();
