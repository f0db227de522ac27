// The dashboard page of the stats endpoint (`GET /`). One HTML document with
// its CSS and JavaScript inline: it loads nothing else, polls `stats` (a URL
// relative to the page) every second and keeps the last good data on screen
// when a poll fails. Every string from the JSON reaches the DOM through
// textContent or setAttribute, never as markup.
//
// Hooks for tests and scripts: each service is a
// `<section class="service" data-service="NAME">`, each server a
// `<tr class="server" data-service="S" data-server="N" data-state="up|down|drain|maint">`,
// both with data-sessions-active/-total; header fields #version, #uptime,
// #process (the PID's start and its binary upgrades: data-started-at,
// data-upgrades, data-upgrade-error), #generation, #reload; the failure banner is #banner (hidden
// while polls succeed). Rates are the daemon's (`rate` in /stats, over its last 10 s), shown from
// the first poll; the sparklines keep the last 60 polls' values. Failure cells turn orange (class
// `warn`) for failures of the last minute
// (`*_last_minute`), never for lifetime totals. The state cell holds a
// `span.last-error` with data-last-error (health.last_error, empty: none)
// and the reason and its age as text; a `span.agent` (hidden without an
// agent) with what health.agent holds in data-reply, data-error, data-says,
// data-admin, data-weight-percent and data-max-connections (empty: null),
// its last reply and that reply's age as text, and the agent check's error
// after them (alone before any reply); a `span.closed-on-down` (hidden while 0) saying how many
// sessions were closed as the server went down. The row's
// data-closed-on-down is sessions.closed_on_down.
//
// Kernel forwarding (docs/forwarding.md): each section carries
// data-forwarding and data-protocol (empty from a daemon without them), and
// a `span.svc-forwarding` chip in its header says `nat · udp`, hidden for
// proxy/tcp. Kernel services' sections and rows carry data-packets-in and
// data-packets-out (/stats' packets, empty for proxy services); the bytes
// tiles and the rows' bytes cells show them under the bytes as `N packets`
// (`span.packets`, hidden for proxy services). With dsr, where replies
// never pass fulcrum, bytes out is `–` and its packets say `replies go
// direct`. /stats has no packet rate, and the page computes none.
//
// Refused clients (SPEC.md "At the edge"): each section carries
// data-sessions-denied and data-sessions-limited, and the Rejected tile a
// `div.refused` line `N denied · M limited`, hidden while both are 0.
//
// Announcing VIPs (docs/scale-out.md): with global.announce, the header's
// #announce (its box #announce-meta hidden otherwise) says `IF · A of N
// VIPs announced`, with data-interface, data-announced and data-vips; each
// service's section carries data-announced (`true`, `false`, empty when
// not announced at all) and a `span.svc-announce` chip says `announced` or
// `withdrawn`. A maglev service's section carries data-maglev-checksum and
// a `span.svc-maglev` chip shows `table` and its first 8 hex digits (the
// whole checksum in its title): equal on every node with the same servers.
//
// Many servers (issue 21): an input#filter keeps the rows whose name,
// address or state contains its text (any case); input#problems-first puts
// down, maint and drain servers before the others; each service shows 50
// rows a page, with a `div.pager` (data-first, data-last, data-matching,
// data-total; hidden while all matching rows fit one page) and its
// `button.prev` / `button.next`. The page's address keeps them
// (`#filter=TEXT&problems=1&page-SERVICE=N`, N from 1), so a view can be
// bookmarked or opened by a test. Rows of other pages are kept up to date
// but out of the document. Each section has an `svg.chart` of the last 10
// minutes as the page saw them (one point per poll, data-points): sessions
// per second (`polyline.line-sessions`), bytes per second both ways
// (`line-bytes`) and servers up (`line-up`), each line on its own scale,
// with their current values in `div.chart-legend`.
//
// SNI routes (SPEC.md "At the edge"): the servers of an sni_routes entry
// follow a `tr.route` row with data-route (the route's names, `, `-joined)
// and the text `route: NAMES`; their rows carry the same data-route (empty
// for the service's own servers, which come first).
#include "dashboard.hpp"

namespace fulcrum {

const std::string_view kDashboardHtml = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>fulcrum dashboard</title>
<style>
:root {
  --bg: #f4f6f8; --card: #ffffff; --fg: #1f2328; --muted: #5f6873; --line: #d9dee3; --head: #f0f3f6;
  --up: #1a7f37; --down: #cf222e; --drain: #c98a00; --maint: #7a838c; --accent: #0969da;
  --warn: #b35900; --banner-bg: #ffebe9; --banner-fg: #82071e; --banner-line: #ff8182;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0d1117; --card: #161b22; --fg: #e6edf3; --muted: #8d96a0; --line: #30363d; --head: #1c222a;
    --up: #2ea043; --down: #f85149; --drain: #d29922; --maint: #6e7681; --accent: #58a6ff;
    --warn: #db8a3a; --banner-bg: #3c1618; --banner-fg: #ffb4ad; --banner-line: #8e1519;
  }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-variant-numeric: tabular-nums;
}
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
.wrap { max-width: 1440px; margin: 0 auto; padding: 0 20px; }
.top { background: var(--card); border-bottom: 1px solid var(--line); }
.top .wrap { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 28px; padding-top: 12px; padding-bottom: 12px; }
.brand { display: flex; align-items: center; gap: 10px; margin-right: auto; }
.brand h1 { margin: 0; font-size: 20px; letter-spacing: -0.01em; }
.brand .logo { color: var(--accent); font-weight: 700; }
.meta { display: flex; flex-wrap: wrap; gap: 6px 24px; margin: 0; }
.meta div { display: flex; flex-direction: column; min-width: 0; }
.meta dt { font-size: 11px; text-transform: uppercase; letter-spacing: 0.04em; color: var(--muted); }
.meta dd { margin: 0; font-weight: 600; white-space: nowrap; }
#reload[data-ok="false"] { color: var(--down); white-space: normal; }
.status { margin-left: 6px; display: inline-flex; align-items: center; gap: 6px; font-size: 12px; font-weight: 600; color: var(--muted);
  border: 1px solid var(--line); border-radius: 999px; padding: 2px 10px; }
.status::before { content: ""; width: 8px; height: 8px; border-radius: 50%; background: var(--maint); }
.status[data-status="live"]::before { background: var(--up); }
.status[data-status="unreachable"] { color: var(--down); border-color: var(--down); }
.status[data-status="unreachable"]::before { background: var(--down); }
.banner { background: var(--banner-bg); color: var(--banner-fg); border-bottom: 1px solid var(--banner-line); font-weight: 600; }
.banner .wrap { padding-top: 10px; padding-bottom: 10px; }
.banner[hidden] { display: none; }
main.wrap { padding-top: 18px; padding-bottom: 24px; }
body.stale main { opacity: 0.6; }
.empty { color: var(--muted); text-align: center; padding: 40px 0; }
.service { background: var(--card); border: 1px solid var(--line); border-radius: 10px; margin-bottom: 18px; overflow: hidden; }
.svc-head { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 12px; padding: 12px 16px 0; }
.svc-name { margin: 0; font-size: 17px; overflow-wrap: anywhere; }
.chip { display: inline-block; font-size: 12px; font-weight: 600; padding: 1px 8px; border-radius: 999px;
  background: var(--head); border: 1px solid var(--line); color: var(--fg); }
.chip.svc-forwarding { border-color: var(--accent); color: var(--accent); }
.chip[hidden] { display: none; }
.chip.svc-announce[data-announced="true"] { border-color: var(--up); color: var(--up); }
.chip.svc-announce[data-announced="false"] { border-color: var(--down); color: var(--down); }
.chip.svc-maglev { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-weight: 500; }
.svc-listen { display: flex; flex-wrap: wrap; gap: 4px 10px; color: var(--muted); }
.svc-listen code { color: var(--fg); }
.tiles { display: grid; grid-template-columns: repeat(6, minmax(0, 1fr)); gap: 10px; padding: 12px 16px 14px; }
.tile { background: var(--head); border-radius: 8px; padding: 8px 12px; min-width: 0; }
.tile-label { font-size: 11px; text-transform: uppercase; letter-spacing: 0.04em; color: var(--muted); }
.tile-value { font-size: 19px; font-weight: 650; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.tile-sub { font-size: 12px; color: var(--muted); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.tile .spark { display: block; width: 100%; height: 22px; margin-top: 2px; }
.tile-rejected.nonzero .tile-value { color: var(--warn); }
.table-wrap { overflow-x: auto; -webkit-overflow-scrolling: touch; border-top: 1px solid var(--line); }
table.servers { width: 100%; border-collapse: collapse; font-size: 13.5px; }
.servers th, .servers td { padding: 6px 8px; vertical-align: middle; text-align: right; white-space: nowrap; border-bottom: 1px solid var(--line); }
.servers th { background: var(--head); font-size: 11px; text-transform: uppercase; letter-spacing: 0.04em; color: var(--muted); font-weight: 600; }
.servers tbody tr:last-child td { border-bottom: 0; }
.servers tbody tr:hover td { background: var(--head); }
.servers .c-name, .servers .c-address, .servers .c-state, .servers .c-backup, .servers .c-change { text-align: left; }
.servers td.c-name { font-weight: 600; box-shadow: inset 4px 0 0 var(--maint); white-space: normal;
  overflow-wrap: anywhere; min-width: 9em; max-width: 18em; }
.servers tr[data-state="up"] td.c-name { box-shadow: inset 4px 0 0 var(--up); }
.servers tr[data-state="down"] td.c-name { box-shadow: inset 4px 0 0 var(--down); }
.servers tr[data-state="drain"] td.c-name { box-shadow: inset 4px 0 0 var(--drain); }
.last-error, .agent, .closed-on-down { display: block; font-size: 11.5px; margin-top: 2px; white-space: normal; max-width: 12em; }
.servers .packets { display: block; font-size: 11.5px; }
.packets[hidden] { display: none; }
.servers th.group-start, .servers td.group-start { border-left: 1px solid var(--line); }
.servers tr.route td { text-align: left; font-size: 12px; font-weight: 600; color: var(--muted); background: var(--head); }
.state { display: inline-block; min-width: 52px; text-align: center; font-size: 12px; font-weight: 700; padding: 1px 8px;
  border-radius: 999px; color: #fff; background: var(--maint); }
.state-up { background: var(--up); }
.state-down { background: var(--down); }
.state-drain { background: var(--drain); color: #1f1600; }
.state-maint { background: var(--maint); }
.flag { font-size: 12px; font-weight: 600; padding: 0 6px; border-radius: 4px; border: 1px solid var(--accent); color: var(--accent); }
.muted { color: var(--muted); }
.warn { color: var(--warn); font-weight: 600; }
.rate-cell { display: inline-flex; align-items: center; gap: 6px; justify-content: flex-end; vertical-align: middle; }
.rate-value { min-width: 44px; text-align: right; }
.servers .spark { width: 52px; height: 18px; }
.spark { overflow: visible; }
.spark .area { fill: var(--accent); opacity: 0.16; stroke: none; }
.spark .line { fill: none; stroke: var(--accent); stroke-width: 1.5; stroke-linejoin: round; }
footer { color: var(--muted); font-size: 12px; text-align: center; padding: 4px 0 24px; }
.toolbar { display: flex; gap: 16px; align-items: center; flex-wrap: wrap; padding-top: 14px; font-size: 13px; }
.toolbar input[type=search] { flex: 1 1 260px; max-width: 420px; padding: 6px 10px; border: 1px solid var(--line);
  border-radius: 6px; background: var(--card); color: var(--fg); font: inherit; }
.pager { display: flex; gap: 10px; align-items: center; justify-content: flex-end; padding: 8px 16px 12px; font-size: 12.5px; color: var(--muted); }
.pager button { font: inherit; padding: 3px 10px; border: 1px solid var(--line); border-radius: 6px; background: var(--card); color: var(--fg); cursor: pointer; }
.pager button:disabled { opacity: 0.4; cursor: default; }
.pager[hidden] { display: none; }
.chart-box { padding: 0 16px 12px; }
.chart { width: 100%; height: 70px; display: block; }
.chart polyline { fill: none; stroke-width: 1.5; vector-effect: non-scaling-stroke; }
.chart .line-sessions { stroke: #2f6fde; }
.chart .line-bytes { stroke: #8a5cd1; }
.chart .line-up { stroke: var(--up); }
.chart-legend { display: flex; gap: 16px; flex-wrap: wrap; font-size: 12px; color: var(--muted); }
.chart-legend .key { display: inline-block; width: 10px; height: 3px; margin-right: 5px; vertical-align: middle; }
.chart-legend .key.line-sessions { background: #2f6fde; }
.chart-legend .key.line-bytes { background: #8a5cd1; }
.chart-legend .key.line-up { background: var(--up); }
footer a { color: var(--accent); }
@media (max-width: 900px) {
  .tiles { grid-template-columns: repeat(3, minmax(0, 1fr)); }
}
@media (max-width: 720px) {
  .wrap { padding: 0 12px; }
  .top .wrap { gap: 8px 16px; }
  .brand { width: 100%; }
  .status { margin-left: auto; }
  .meta { display: grid; grid-template-columns: repeat(3, auto); justify-content: space-between; gap: 6px 16px; width: 100%; }
  .meta .meta-reload { grid-column: 1 / -1; order: 1; }
  #reload { white-space: normal; }
  main.wrap { padding-top: 12px; }
  .svc-head { padding: 10px 12px 0; }
  .tiles { gap: 8px; padding: 10px 12px 12px; }
  .tile { padding: 6px 10px; }
  .tile-value { font-size: 16px; }
  .table-wrap { overflow: visible; padding: 10px 12px 2px; }
  .servers, .servers tbody { display: block; }
  .servers thead { display: none; }
  .servers tr { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 8px 10px; padding: 10px 12px 10px 14px;
    margin-bottom: 10px; border: 1px solid var(--line); border-left: 4px solid var(--maint); border-radius: 8px; }
  .servers tr[data-state="up"] { border-left-color: var(--up); }
  .servers tr[data-state="down"] { border-left-color: var(--down); }
  .servers tr[data-state="drain"] { border-left-color: var(--drain); }
  .servers tbody tr:hover td { background: none; }
  .servers tr.route { display: block; padding: 4px 2px; margin-bottom: 6px; border: 0; }
  .servers tr.route td { background: none; }
  .servers td, .servers td.group-start { display: block; padding: 0; border: 0; text-align: left; min-width: 0;
    overflow: hidden; text-overflow: ellipsis; }
  .servers td::before { content: attr(data-label); display: block; font-size: 10.5px; font-weight: 500;
    text-transform: uppercase; letter-spacing: 0.04em; color: var(--muted); }
  .servers td.c-name, .servers tr[data-state] td.c-name { grid-column: span 2; order: -2; font-size: 15px; box-shadow: none;
    white-space: normal; overflow-wrap: anywhere; }
  .servers td.c-name::before, .servers td.c-state::before { content: none; }
  .servers td.c-state { order: -1; text-align: right; align-self: center; }
  .servers td.c-address { grid-column: span 2; }
  .servers td.c-rate { grid-column: span 2; }
  .servers td.c-change { grid-column: span 2; }
  .last-error, .agent, .closed-on-down { max-width: none; }
  .rate-cell { justify-content: flex-start; flex-direction: row-reverse; }
  .rate-value { min-width: 0; text-align: left; }
  .servers .spark { width: 96px; }
}
@media (max-width: 360px) {
  .tiles { grid-template-columns: repeat(2, minmax(0, 1fr)); }
}
</style>
</head>
<body>
<header class="top">
  <div class="wrap">
    <div class="brand"><span class="logo" aria-hidden="true">&#9650;</span><h1>fulcrum</h1><span id="version" class="muted"></span>
      <span id="status" class="status" data-status="loading">connecting</span></div>
    <dl class="meta">
      <div><dt>Uptime</dt><dd id="uptime">&ndash;</dd></div>
      <div><dt>Process</dt><dd id="process">&ndash;</dd></div>
      <div><dt>Config</dt><dd id="generation">&ndash;</dd></div>
      <div class="meta-reload"><dt>Last reload</dt><dd id="reload">&ndash;</dd></div>
      <div id="announce-meta" hidden><dt>Announce</dt><dd id="announce">&ndash;</dd></div>
      <div><dt>Updated</dt><dd id="updated">&ndash;</dd></div>
    </dl>
  </div>
</header>
<div id="banner" class="banner" role="alert" hidden><div class="wrap" id="banner-text"></div></div>
<div class="toolbar wrap">
  <input id="filter" type="search" placeholder="Filter servers: name, address or state" aria-label="Filter servers">
  <label><input id="problems-first" type="checkbox"> problems first</label>
</div>
<main id="services" class="wrap">
  <p id="empty" class="empty">Loading stats&hellip;</p>
</main>
<footer>Refreshed every second from <a href="stats">/stats</a> &middot; <a href="metrics">/metrics</a></footer>
<script>
'use strict';
(function () {
  var POLL_MS = 1000;
  var TIMEOUT_MS = 5000;
  var HISTORY = 60;
  var PAGE_ROWS = 50;
  var CHART_POINTS = 600;  // 10 minutes of polls
  var STATE_RANK = { down: 0, maint: 1, drain: 2, up: 3 };
  var DASH = '\u2013';
  var SVG_NS = 'http://www.w3.org/2000/svg';
  var STATE_TEXT = { up: 'up', down: 'down', drain: 'draining', maint: 'maintenance' };
  var COLUMNS = [
    // key, table header, label on narrow screens, header tooltip, starts a column group
    ['name', 'Server', 'Server', '', false],
    ['address', 'Address', 'Address', '', false],
    ['state', 'State', 'State', '', false],
    ['weight', 'Weight', 'Weight', '', false],
    ['backup', 'Backup', 'Backup', 'used only while no primary server is up', false],
    ['active', 'Active', 'Active', 'sessions open now', true],
    ['total', 'Total', 'Total', 'sessions sent to the server', false],
    ['max', 'Max', 'Max', 'max_connections', false],
    ['rate', 'Rate', 'Rate', 'new sessions per second over the daemon\'s last 10 s; the line: the last 60 polls', false],
    ['in', 'Bytes in', 'Bytes in', 'bytes from clients', true],
    ['out', 'Bytes out', 'Bytes out', 'bytes to clients', false],
    ['fail', 'Conn. fail', 'Conn. failures', 'failed connect attempts, retried ones included; orange: some in the last minute', true],
    ['checks', 'Checks fail', 'Checks failed', 'failed health checks; orange: some in the last minute', false],
    ['change', 'Last change', 'Last change', 'time since the last state change', false]
  ];

  var servicesEl = document.getElementById('services');
  var emptyEl = document.getElementById('empty');
  var bannerEl = document.getElementById('banner');
  var bannerTextEl = document.getElementById('banner-text');
  var statusEl = document.getElementById('status');
  var views = new Map();    // service name -> view
  var filterEl = document.getElementById('filter');
  var problemsEl = document.getElementById('problems-first');
  var pages = {};           // service name -> page number from 1 (the address's page-NAME)

  // The view in the page's address: #filter=TEXT&problems=1&page-NAME=N.
  function readHash() {
    var parts = location.hash.replace(/^#/, '').split('&');
    pages = {};
    filterEl.value = '';
    problemsEl.checked = false;
    parts.forEach(function (part) {
      var eq = part.indexOf('=');
      if (eq < 0) return;
      var key = decodeURIComponent(part.slice(0, eq)), value = decodeURIComponent(part.slice(eq + 1));
      if (key === 'filter') filterEl.value = value;
      else if (key === 'problems') problemsEl.checked = value === '1';
      else if (key.indexOf('page-') === 0 && /^[0-9]+$/.test(value)) pages[key.slice(5)] = Number(value);
    });
  }
  function writeHash() {
    var parts = [];
    if (filterEl.value) parts.push('filter=' + encodeURIComponent(filterEl.value));
    if (problemsEl.checked) parts.push('problems=1');
    Object.keys(pages).forEach(function (name) {
      if (pages[name] > 1) parts.push('page-' + encodeURIComponent(name) + '=' + pages[name]);
    });
    window.history.replaceState(null, '', parts.length ? '#' + parts.join('&') : location.pathname + location.search);
  }
  function viewChanged() {
    writeHash();
    views.forEach(layoutRows);
  }
  readHash();
  filterEl.addEventListener('input', function () { pages = {}; viewChanged(); });
  problemsEl.addEventListener('change', function () { pages = {}; viewChanged(); });
  window.addEventListener('hashchange', function () { readHash(); views.forEach(layoutRows); });
  var history = new Map();  // "service\u0000server" -> {rates, seen}
  var pollCount = 0;
  var lastGood = null;      // Date of the last good poll
  var failures = 0;

  // ---- formatting

  var intFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  function isNum(v) { return typeof v === 'number' && isFinite(v); }
  function count(v) { return isNum(v) ? intFormat.format(v) : DASH; }
  function bytes(v) {
    if (!isNum(v)) return DASH;
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
    var i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    if (i === 0) return v + ' B';
    return v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0) + ' ' + units[i];
  }
  function perSecond(r) {
    if (!isNum(r)) return DASH;
    if (r === 0) return '0/s';
    if (r < 100) return r.toFixed(1) + '/s';
    return intFormat.format(Math.round(r)) + '/s';
  }
  function duration(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), sec = s % 60;
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + m + 'm';
    if (m) return m + 'm ' + sec + 's';
    return sec + 's';
  }
  function clock(date) {
    function two(n) { return (n < 10 ? '0' : '') + n; }
    return two(date.getHours()) + ':' + two(date.getMinutes()) + ':' + two(date.getSeconds());
  }

  // ---- DOM helpers: text only, never markup from the data

  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function setText(e, text) {
    text = String(text);
    if (e.textContent !== text) e.textContent = text;
  }
  function setAttr(e, name, value) {
    value = String(value);
    if (e.getAttribute(name) !== value) e.setAttribute(name, value);
  }
  function setClass(e, className) {
    if (e.className !== className) e.className = className;
  }

  // ---- rates and sparklines

  // The daemon's session rate of each poll, for the sparkline.
  function track(key, rate) {
    var h = history.get(key);
    if (!h) {
      h = { rates: [], seen: pollCount };
      history.set(key, h);
    }
    h.seen = pollCount;
    if (isNum(rate)) {
      h.rates.push(rate);
      if (h.rates.length > HISTORY) h.rates.shift();
    }
    return h;
  }

  function makeSpark(className) {
    var svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('class', 'spark ' + className);
    svg.setAttribute('viewBox', '0 0 100 20');
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('aria-hidden', 'true');
    var title = document.createElementNS(SVG_NS, 'title');
    var area = document.createElementNS(SVG_NS, 'polygon');
    area.setAttribute('class', 'area');
    var line = document.createElementNS(SVG_NS, 'polyline');
    line.setAttribute('class', 'line');
    line.setAttribute('vector-effect', 'non-scaling-stroke');
    svg.appendChild(title);
    svg.appendChild(area);
    svg.appendChild(line);
    return svg;
  }

  // The samples spread over the width, the newest at the right edge; the
  // scale is the window's peak.
  function drawSpark(svg, values) {
    var title = svg.childNodes[0], area = svg.childNodes[1], line = svg.childNodes[2];
    var n = values.length;
    setAttr(svg, 'data-samples', n);
    if (n < 2) {
      setAttr(area, 'points', '');
      setAttr(line, 'points', '');
      setText(title, 'collecting samples');
      return;
    }
    var peak = 0;
    for (var i = 0; i < n; i++) peak = Math.max(peak, values[i]);
    var scale = peak > 0 ? peak : 1;
    var points = [];
    for (var j = 0; j < n; j++) {
      var x = 100 * j / (n - 1);
      var y = 19 - 18 * values[j] / scale;
      points.push(x.toFixed(2) + ',' + y.toFixed(2));
    }
    setAttr(line, 'points', points.join(' '));
    setAttr(area, 'points', '0,20 ' + points.join(' ') + ' 100,20');
    setText(title, 'peak ' + perSecond(peak) + ' over the last ' + n + ' samples');
  }

  // ---- views

  function tile(container, label, className) {
    var t = el('div', 'tile ' + className);
    t.appendChild(el('div', 'tile-label', label));
    var value = el('div', 'tile-value', DASH);
    t.appendChild(value);
    container.appendChild(t);
    return { box: t, value: value };
  }

  function makeServiceView(name) {
    var root = el('section', 'service');
    root.setAttribute('data-service', name);
    var head = el('div', 'svc-head');
    head.appendChild(el('h2', 'svc-name', name));
    var scheduler = el('span', 'chip svc-scheduler', DASH);
    scheduler.title = 'scheduler';
    head.appendChild(scheduler);
    var forwarding = el('span', 'chip svc-forwarding', '');
    forwarding.hidden = true;
    head.appendChild(forwarding);
    var announced = el('span', 'chip svc-announce', '');
    announced.hidden = true;
    head.appendChild(announced);
    var maglev = el('span', 'chip svc-maglev', '');
    maglev.hidden = true;
    head.appendChild(maglev);
    var listen = el('div', 'svc-listen');
    head.appendChild(listen);
    root.appendChild(head);

    var tiles = el('div', 'tiles');
    var v = {
      root: root, scheduler: scheduler, forwarding: forwarding, announced: announced, maglev: maglev,
      listen: listen, rows: new Map(), routeRows: new Map(),
      active: tile(tiles, 'Active', 'tile-active'),
      total: tile(tiles, 'Total', 'tile-total'),
      rejected: tile(tiles, 'Rejected', 'tile-rejected'),
      rate: tile(tiles, 'Sessions/s', 'tile-rate'),
      bytesIn: tile(tiles, 'Bytes in', 'tile-bytes-in'),
      bytesOut: tile(tiles, 'Bytes out', 'tile-bytes-out')
    };
    // Clients refused at accept (allow/deny, PROXY senders, source_limits).
    v.refused = el('div', 'tile-sub refused', '');
    v.refused.hidden = true;
    v.rejected.box.appendChild(v.refused);
    v.bytesInRate = el('div', 'tile-sub', DASH);
    v.bytesIn.box.appendChild(v.bytesInRate);
    v.bytesOutRate = el('div', 'tile-sub', DASH);
    v.bytesOut.box.appendChild(v.bytesOutRate);
    v.packetsIn = el('div', 'tile-sub packets', '');
    v.packetsIn.hidden = true;
    v.bytesIn.box.appendChild(v.packetsIn);
    v.packetsOut = el('div', 'tile-sub packets', '');
    v.packetsOut.hidden = true;
    v.bytesOut.box.appendChild(v.packetsOut);
    v.spark = makeSpark('svc-spark');
    v.rate.box.appendChild(v.spark);
    root.appendChild(tiles);

    // The last minutes as this page saw them.
    var chartBox = el('div', 'chart-box');
    var chart = document.createElementNS(SVG_NS, 'svg');
    chart.setAttribute('class', 'chart');
    chart.setAttribute('viewBox', '0 0 600 60');
    chart.setAttribute('preserveAspectRatio', 'none');
    chart.setAttribute('aria-label', 'sessions per second, bytes per second and servers up over the last 10 minutes');
    var chartTitle = document.createElementNS(SVG_NS, 'title');
    chart.appendChild(chartTitle);
    var lines = {};
    ['sessions', 'bytes', 'up'].forEach(function (key) {
      var line = document.createElementNS(SVG_NS, 'polyline');
      line.setAttribute('class', 'line-' + key);
      chart.appendChild(line);
      lines[key] = line;
    });
    chartBox.appendChild(chart);
    var legend = el('div', 'chart-legend');
    var legendValues = {};
    [['sessions', 'sessions/s'], ['bytes', 'bytes/s (in + out)'], ['up', 'servers up']].forEach(function (pair) {
      var item = el('span', 'legend-' + pair[0]);
      item.appendChild(el('span', 'key line-' + pair[0]));
      var value = el('span', 'legend-value', DASH);
      item.appendChild(value);
      item.appendChild(document.createTextNode(' ' + pair[1]));
      legend.appendChild(item);
      legendValues[pair[0]] = value;
    });
    chartBox.appendChild(legend);
    root.appendChild(chartBox);
    v.chart = { svg: chart, title: chartTitle, lines: lines, values: legendValues,
                points: { sessions: [], bytes: [], up: [] } };

    var wrap = el('div', 'table-wrap');
    var table = el('table', 'servers');
    var headRow = el('tr');
    COLUMNS.forEach(function (c) {
      var th = el('th', 'c-' + c[0] + (c[4] ? ' group-start' : ''), c[1]);
      th.scope = 'col';
      if (c[3]) th.title = c[3];
      headRow.appendChild(th);
    });
    var thead = el('thead');
    thead.appendChild(headRow);
    table.appendChild(thead);
    v.tbody = el('tbody');
    table.appendChild(v.tbody);
    wrap.appendChild(table);
    root.appendChild(wrap);

    var pager = el('div', 'pager');
    pager.hidden = true;
    var prev = el('button', 'prev', '\u2039 previous');
    var pagerText = el('span', 'pager-text', '');
    var next = el('button', 'next', 'next \u203a');
    prev.type = next.type = 'button';
    prev.addEventListener('click', function () { turnPage(v, -1); });
    next.addEventListener('click', function () { turnPage(v, 1); });
    pager.appendChild(prev);
    pager.appendChild(pagerText);
    pager.appendChild(next);
    root.appendChild(pager);
    v.name = name;
    v.pager = { box: pager, prev: prev, next: next, text: pagerText };
    v.servers = [];  // the last document's servers, for layoutRows
    return v;
  }

  function turnPage(v, step) {
    pages[v.name] = (pages[v.name] || 1) + step;
    writeHash();
    layoutRows(v);
  }

  // Which rows the table shows: those matching the filter, problems first
  // when asked, one page of them; the route rows above their servers.
  function layoutRows(v) {
    var needle = filterEl.value.trim().toLowerCase();
    var matching = v.servers.filter(function (server) {
      if (!needle) return true;
      return [server.name, server.address, server.state].some(function (text) {
        return typeof text === 'string' && text.toLowerCase().indexOf(needle) >= 0;
      });
    });
    var sorted = problemsEl.checked;
    if (sorted) {
      matching = matching.map(function (server, index) { return { server: server, index: index }; })
        .sort(function (a, b) {
          var ra = STATE_RANK.hasOwnProperty(a.server.state) ? STATE_RANK[a.server.state] : 0;
          var rb = STATE_RANK.hasOwnProperty(b.server.state) ? STATE_RANK[b.server.state] : 0;
          return ra - rb || a.index - b.index;
        })
        .map(function (entry) { return entry.server; });
    }
    var pageCount = Math.max(1, Math.ceil(matching.length / PAGE_ROWS));
    var page = Math.min(Math.max(pages[v.name] || 1, 1), pageCount);
    if (pages[v.name] !== undefined) pages[v.name] = page;
    var first = (page - 1) * PAGE_ROWS;
    var shown = matching.slice(first, first + PAGE_ROWS);
    var keep = new Set(), keepRoutes = new Set();
    var position = 0, lastRoute = '';
    shown.forEach(function (server) {
      var name = String(server.name), route = sorted ? '' : routeOf(server);
      if (route && route !== lastRoute) {
        var header = v.routeRows.get(route);
        if (!header) {
          header = makeRouteRow(route);
          v.routeRows.set(route, header);
        }
        place(v.tbody, header, position++);
        keepRoutes.add(header);
      }
      lastRoute = route;
      var r = v.rows.get(name);
      if (!r) return;
      place(v.tbody, r.tr, position++);
      keep.add(r.tr);
    });
    Array.prototype.slice.call(v.tbody.children).forEach(function (tr) {
      if (!keep.has(tr) && !keepRoutes.has(tr)) v.tbody.removeChild(tr);
    });
    var p = v.pager;
    p.box.hidden = matching.length <= PAGE_ROWS;
    setAttr(p.box, 'data-first', shown.length ? first + 1 : 0);
    setAttr(p.box, 'data-last', first + shown.length);
    setAttr(p.box, 'data-matching', matching.length);
    setAttr(p.box, 'data-total', v.servers.length);
    setText(p.text, (shown.length ? (first + 1) + '\u2013' + (first + shown.length) : '0') + ' of ' +
            matching.length + (matching.length !== v.servers.length ? ' matching (' + v.servers.length + ' servers)' : ''));
    p.prev.disabled = page <= 1;
    p.next.disabled = page >= pageCount;
  }

  // Adds this poll's point to the service's chart and draws it: each line
  // on its own scale (its peak over the window).
  function drawChart(c, sessions, bytes, up) {
    [['sessions', sessions], ['bytes', bytes], ['up', up]].forEach(function (pair) {
      var values = c.points[pair[0]];
      values.push(isNum(pair[1]) ? pair[1] : 0);
      if (values.length > CHART_POINTS) values.shift();
    });
    var n = c.points.up.length;
    setAttr(c.svg, 'data-points', n);
    Object.keys(c.lines).forEach(function (key) {
      var values = c.points[key];
      var peak = 0;
      values.forEach(function (value) { peak = Math.max(peak, value); });
      var scale = peak > 0 ? peak : 1;
      var points = n < 2 ? [] : values.map(function (value, i) {
        return (600 * i / (n - 1)).toFixed(1) + ',' + (58 - 54 * value / scale).toFixed(1);
      });
      setAttr(c.lines[key], 'points', points.join(' '));
    });
    setText(c.values.sessions, perSecond(sessions));
    setText(c.values.bytes, bytesPerSecond(bytes));
    setText(c.values.up, isNum(up) ? String(up) : DASH);
    setText(c.title, 'the last ' + duration(n) + ' as this page saw them, each line on its own scale');
  }

  function makeRowView(service, server) {
    var tr = el('tr', 'server');
    tr.setAttribute('data-service', service);
    tr.setAttribute('data-server', server);
    var cells = {};
    COLUMNS.forEach(function (c) {
      var td = el('td', 'c-' + c[0] + (c[4] ? ' group-start' : ''));
      td.setAttribute('data-label', c[2]);
      tr.appendChild(td);
      cells[c[0]] = td;
    });
    var badge = el('span', 'state', DASH);
    cells.state.appendChild(badge);
    var lastError = el('span', 'last-error muted', '');
    cells.state.appendChild(lastError);
    var agent = el('span', 'agent muted', '');
    cells.state.appendChild(agent);
    var closedOnDown = el('span', 'closed-on-down muted', '');
    closedOnDown.title = 'on_server_down: close ended them when the server was marked down';
    cells.state.appendChild(closedOnDown);
    var rateBox = el('span', 'rate-cell');
    var rateValue = el('span', 'rate-value', DASH);
    var spark = makeSpark('server-spark');
    rateBox.appendChild(spark);
    rateBox.appendChild(rateValue);
    cells.rate.appendChild(rateBox);
    var backup = el('span', '', DASH);
    cells.backup.appendChild(backup);
    // Bytes as the cell's own text, packets (kernel services) under them.
    var bytesIn = document.createTextNode(DASH), bytesOut = document.createTextNode(DASH);
    cells['in'].appendChild(bytesIn);
    cells.out.appendChild(bytesOut);
    var packetsIn = el('span', 'packets muted', ''), packetsOut = el('span', 'packets muted', '');
    packetsIn.hidden = packetsOut.hidden = true;
    cells['in'].appendChild(packetsIn);
    cells.out.appendChild(packetsOut);
    return { tr: tr, cells: cells, badge: badge, lastError: lastError, agent: agent, closedOnDown: closedOnDown,
             rateValue: rateValue, spark: spark, backup: backup, bytesIn: bytesIn, bytesOut: bytesOut,
             packetsIn: packetsIn, packetsOut: packetsOut };
  }

  // The row above an sni_routes entry's servers.
  function makeRouteRow(route) {
    var tr = el('tr', 'route');
    tr.setAttribute('data-route', route);
    var td = el('td', '', 'route: ' + route);
    td.colSpan = COLUMNS.length;
    tr.appendChild(td);
    return tr;
  }

  function routeOf(server) {
    return Array.isArray(server.route) ? server.route.map(String).join(', ') : '';
  }

  // Puts `node` at position `index` of `parent` unless it is there already
  // (moving nodes needlessly would reset scroll positions and hover).
  function place(parent, node, index) {
    var at = parent.children[index];
    if (at !== node) parent.insertBefore(node, at || null);
  }

  function obj(v) { return v && typeof v === 'object' ? v : {}; }

  function bytesPerSecond(v) { return isNum(v) ? bytes(Math.round(v)) + '/s' : DASH; }

  var DIRECT_TITLE = 'dsr: the servers answer the clients directly; no reply passes this host';

  // `N packets` under the bytes of a kernel service (its /stats has
  // packets; hidden otherwise). `direct`: dsr's way out, never seen.
  function showPackets(span, value, direct) {
    var shown = isNum(value);
    span.hidden = !shown;
    if (!shown) {
      setText(span, '');
      span.title = '';
    } else if (direct) {
      setText(span, 'replies go direct');
      span.title = DIRECT_TITLE;
    } else {
      setText(span, count(value) + (value === 1 ? ' packet' : ' packets'));
      span.title = 'packets forwarded by the kernel';
    }
  }

  function packetsOf(s) { return s.packets && typeof s.packets === 'object' ? s.packets : {}; }
  function packetAttr(v) { return isNum(v) ? v : ''; }

  // What the server's agent last said and when, under the state (null: no
  // agent). A failed agent check changes nothing on the server, so its
  // error follows the word still in force, in orange (the error alone
  // before the agent ever answered: it starts with "agent").
  function updateAgent(span, agent) {
    var has = agent !== null && typeof agent === 'object';
    var a = obj(agent);
    function text(v) { return typeof v === 'string' ? v : ''; }
    function number(v) { return isNum(v) ? v : ''; }
    setAttr(span, 'data-reply', text(a.reply));
    setAttr(span, 'data-error', text(a.last_error));
    setAttr(span, 'data-says', text(a.says));
    setAttr(span, 'data-admin', text(a.admin));
    setAttr(span, 'data-weight-percent', number(a.weight_percent));
    setAttr(span, 'data-max-connections', number(a.max_connections));
    span.hidden = !has;
    if (!has) {
      setText(span, '');
      return;
    }
    var failed = typeof a.last_error === 'string';
    var said = 'agent: no reply yet';
    if (typeof a.reply === 'string') {
      said = 'agent: ' + a.reply + (isNum(a.reply_seconds) ? ' \u00b7 ' + duration(a.reply_seconds) + ' ago' : '');
      if (failed) said += ' \u00b7 last check: ' + a.last_error;
    } else if (failed) {
      said = a.last_error;
    }
    setText(span, said);
    setClass(span, 'agent' + (failed ? ' warn' : ' muted'));
  }

  // `direct`: the server's service is dsr (replies go direct).
  function updateRow(r, service, s, direct) {
    var sessions = obj(s.sessions), b = obj(s.bytes), health = obj(s.health), rate = obj(s.rate);
    var packets = packetsOf(s);
    var state = typeof s.state === 'string' ? s.state : 'unknown';
    var known = Object.prototype.hasOwnProperty.call(STATE_TEXT, state);
    setAttr(r.tr, 'data-state', state);
    setAttr(r.tr, 'data-sessions-active', sessions.active);
    setAttr(r.tr, 'data-sessions-total', sessions.total);
    setAttr(r.tr, 'data-weight', s.weight);
    setAttr(r.tr, 'data-rate', rate.sessions_per_second);
    setText(r.cells.name, s.name);
    setText(r.cells.address, s.address === undefined ? DASH : s.address);
    setClass(r.badge, 'state state-' + (known ? state : 'unknown'));
    setText(r.badge, known ? STATE_TEXT[state] : state);
    setText(r.cells.weight, count(s.weight));
    if (s.backup === true) {
      setClass(r.backup, 'flag');
      setText(r.backup, 'backup');
    } else {
      setClass(r.backup, 'muted');
      setText(r.backup, s.backup === false ? 'no' : DASH);
    }
    setText(r.cells.active, count(sessions.active));
    setText(r.cells.total, count(sessions.total));
    if (sessions.max === 0) {
      setText(r.cells.max, '\u221e');
      setClass(r.cells.max, 'c-max');
      r.cells.max.title = 'unlimited';
    } else {
      var full = sessions.active >= sessions.max;
      setText(r.cells.max, count(sessions.max));
      setClass(r.cells.max, 'c-max' + (full ? ' warn' : ''));
      r.cells.max.title = full ? 'full: no new session until one ends' : '';
    }
    setAttr(r.tr, 'data-full', sessions.max > 0 && sessions.active >= sessions.max);
    var h = track(service + '\u0000' + s.name, rate.sessions_per_second);
    setText(r.rateValue, perSecond(rate.sessions_per_second));
    r.cells.rate.title = 'peak ' + perSecond(rate.peak_sessions_per_second) + '; in ' +
      bytesPerSecond(rate.bytes_in_per_second) + ', out ' + bytesPerSecond(rate.bytes_out_per_second);
    drawSpark(r.spark, h.rates);
    setText(r.bytesIn, bytes(b['in']));
    r.cells['in'].title = count(b['in']) + ' bytes';
    setText(r.bytesOut, direct ? DASH : bytes(b.out));
    r.cells.out.title = direct ? DIRECT_TITLE : count(b.out) + ' bytes';
    setAttr(r.tr, 'data-packets-in', packetAttr(packets['in']));
    setAttr(r.tr, 'data-packets-out', packetAttr(packets.out));
    showPackets(r.packetsIn, packets['in'], false);
    showPackets(r.packetsOut, packets.out, direct);
    var failRecent = s.connect_failures_last_minute, checksRecent = health.checks_failed_last_minute;
    setText(r.cells.fail, count(s.connect_failures));
    setAttr(r.cells.fail, 'data-last-minute', failRecent);
    setClass(r.cells.fail, 'c-fail group-start' + (failRecent > 0 ? ' warn' : ''));
    r.cells.fail.title = count(failRecent) + ' in the last minute';
    setAttr(r.cells.checks, 'data-checks-failed', health.checks_failed);
    setAttr(r.cells.checks, 'data-last-minute', checksRecent);
    if (health.enabled === false && !health.checks_failed) {
      setText(r.cells.checks, 'off');
      setClass(r.cells.checks, 'c-checks muted');
      r.cells.checks.title = 'health checks are off for this service';
    } else {
      setText(r.cells.checks, count(health.checks_failed));
      setClass(r.cells.checks, 'c-checks' + (checksRecent > 0 ? ' warn' : ''));
      r.cells.checks.title = count(checksRecent) + ' in the last minute';
    }
    // Why the last health check failed, and when, under the state.
    if (typeof health.last_error === 'string') {
      var ago = isNum(health.last_error_seconds) ? ' \u00b7 ' + duration(health.last_error_seconds) + ' ago' : '';
      setText(r.lastError, health.last_error + ago);
      setAttr(r.lastError, 'data-last-error', health.last_error);
      setClass(r.lastError, 'last-error' + (checksRecent > 0 ? ' warn' : ' muted'));
      r.lastError.hidden = false;
    } else {
      setText(r.lastError, '');
      setAttr(r.lastError, 'data-last-error', '');
      r.lastError.hidden = true;
    }
    updateAgent(r.agent, health.agent);
    var closed = sessions.closed_on_down;
    setAttr(r.tr, 'data-closed-on-down', isNum(closed) ? closed : '');
    setText(r.closedOnDown, isNum(closed) && closed > 0
      ? count(closed) + (closed === 1 ? ' session' : ' sessions') + ' closed on down' : '');
    r.closedOnDown.hidden = !(closed > 0);
    if (isNum(health.last_change_seconds)) {
      setText(r.cells.change, duration(health.last_change_seconds) + ' ago');
      r.cells.change.title = health.last_change_seconds.toFixed(1) + ' s';
    } else {
      setText(r.cells.change, DASH);
    }
  }

  function updateService(v, s) {
    var sessions = obj(s.sessions), b = obj(s.bytes), rate = obj(s.rate), packets = packetsOf(s);
    setAttr(v.root, 'data-sessions-active', sessions.active);
    setAttr(v.root, 'data-sessions-total', sessions.total);
    setAttr(v.root, 'data-sessions-rejected', sessions.rejected);
    setText(v.scheduler, s.scheduler || DASH);

    // How the service forwards: a chip unless it is a plain TCP proxy (or
    // the daemon predates the keys).
    var forwarding = typeof s.forwarding === 'string' ? s.forwarding : '';
    var protocol = typeof s.protocol === 'string' ? s.protocol : '';
    var direct = forwarding === 'dsr';
    setAttr(v.root, 'data-forwarding', forwarding);
    setAttr(v.root, 'data-protocol', protocol);
    var plain = forwarding === '' || (forwarding === 'proxy' && (protocol === '' || protocol === 'tcp'));
    setText(v.forwarding, plain ? '' : forwarding + (protocol ? ' \u00b7 ' + protocol : ''));
    v.forwarding.hidden = plain;
    v.forwarding.title = plain || forwarding === 'proxy' ? '' : 'forwarded by the kernel (nftables)';
    setAttr(v.root, 'data-packets-in', packetAttr(packets['in']));
    setAttr(v.root, 'data-packets-out', packetAttr(packets.out));

    // Announced to routers (global.announce), and the Maglev table's checksum.
    var announced = typeof s.announced === 'boolean' ? s.announced : null;
    setAttr(v.root, 'data-announced', announced === null ? '' : String(announced));
    setAttr(v.announced, 'data-announced', announced === null ? '' : String(announced));
    setText(v.announced, announced === null ? '' : (announced ? 'announced' : 'withdrawn'));
    v.announced.title = announced === null ? '' : (announced
      ? 'its VIPs are on the announce interface: routers send clients here'
      : 'withdrawn: no usable server (or stopping); routers send clients to other nodes');
    v.announced.hidden = announced === null;
    var checksum = typeof s.maglev_checksum === 'string' ? s.maglev_checksum : '';
    setAttr(v.root, 'data-maglev-checksum', checksum);
    setText(v.maglev, checksum ? 'table ' + checksum.slice(0, 8) : '');
    v.maglev.title = checksum ? 'Maglev table checksum ' + checksum + ': equal on every node with the same servers' : '';
    v.maglev.hidden = !checksum;

    var listen = Array.isArray(s.listen) ? s.listen : (s.listen ? [s.listen] : []);
    var key = listen.join('\n');
    if (v.listenKey !== key) {
      v.listenKey = key;
      while (v.listen.firstChild) v.listen.removeChild(v.listen.firstChild);
      v.listen.appendChild(el('span', 'muted', 'listen'));
      listen.forEach(function (a) { v.listen.appendChild(el('code', 'svc-address', a)); });
    }

    setText(v.active.value, count(sessions.active));
    setText(v.total.value, count(sessions.total));
    setText(v.rejected.value, count(sessions.rejected));
    var denied = isNum(sessions.denied) ? sessions.denied : 0;
    var limited = isNum(sessions.limited) ? sessions.limited : 0;
    setAttr(v.root, 'data-sessions-denied', isNum(sessions.denied) ? sessions.denied : '');
    setAttr(v.root, 'data-sessions-limited', isNum(sessions.limited) ? sessions.limited : '');
    setText(v.refused, denied || limited ? count(denied) + ' denied \u00b7 ' + count(limited) + ' limited' : '');
    v.refused.hidden = !(denied || limited);
    setClass(v.rejected.box, 'tile tile-rejected' + (sessions.rejected > 0 ? ' nonzero' : ''));
    var h = track(s.name, rate.sessions_per_second);
    setText(v.rate.value, perSecond(rate.sessions_per_second));
    v.rate.value.title = 'peak ' + perSecond(rate.peak_sessions_per_second);
    drawSpark(v.spark, h.rates);
    setText(v.bytesIn.value, bytes(b['in']));
    v.bytesIn.value.title = count(b['in']) + ' bytes';
    setText(v.bytesInRate, bytesPerSecond(rate.bytes_in_per_second));
    setText(v.bytesOut.value, direct ? DASH : bytes(b.out));
    v.bytesOut.value.title = direct ? DIRECT_TITLE : count(b.out) + ' bytes';
    setText(v.bytesOutRate, direct ? DASH : bytesPerSecond(rate.bytes_out_per_second));
    showPackets(v.packetsIn, packets['in'], false);
    showPackets(v.packetsOut, packets.out, direct);

    var servers = Array.isArray(s.servers) ? s.servers : [];
    var seen = new Set(), seenRoutes = new Set();
    var up = 0;
    // Every row is kept up to date (its sparkline's history too); only one
    // page of them is in the table (layoutRows).
    servers.forEach(function (server) {
      var name = String(server.name), route = routeOf(server);
      if (route) seenRoutes.add(route);
      if (server.state === 'up') up++;
      seen.add(name);
      var r = v.rows.get(name);
      if (!r) {
        r = makeRowView(s.name, name);
        v.rows.set(name, r);
      }
      setAttr(r.tr, 'data-route', route);
      updateRow(r, s.name, server, direct);
    });
    v.rows.forEach(function (r, name) {
      if (!seen.has(name)) {
        if (r.tr.parentNode) r.tr.parentNode.removeChild(r.tr);
        v.rows['delete'](name);
      }
    });
    v.routeRows.forEach(function (tr, route) {
      if (!seenRoutes.has(route)) {
        if (tr.parentNode) tr.parentNode.removeChild(tr);
        v.routeRows['delete'](route);
      }
    });
    v.servers = servers;
    layoutRows(v);
    var bytesRate = isNum(rate.bytes_in_per_second) && isNum(rate.bytes_out_per_second)
      ? rate.bytes_in_per_second + rate.bytes_out_per_second : null;
    drawChart(v.chart, rate.sessions_per_second, bytesRate, up);
  }

  function render(data) {
    pollCount++;
    var uptime = data.uptime_seconds;
    setText(document.getElementById('version'), data.version ? 'v' + data.version : '');
    setText(document.getElementById('uptime'), isNum(uptime) ? duration(uptime) : DASH);
    // The PID's start and its binary upgrades (SIGUSR2): the same process
    // across them, so uptime and counters go on.
    var processEl = document.getElementById('process');
    var upgrade = obj(data.upgrade), failure = obj(upgrade.last_failure);
    var started = typeof data.started_at === 'string'
      ? data.started_at.replace('T', ' ').replace('Z', ' UTC') : '';
    var upgrades = isNum(data.upgrades) ? data.upgrades : 0;
    var processText = started ? 'since ' + started : DASH;
    processText += ' \u00b7 ' + upgrades + (upgrades === 1 ? ' upgrade' : ' upgrades');
    if (upgrade.in_progress === true) processText += ' \u00b7 upgrading';
    if (typeof failure.error === 'string') processText += ' \u00b7 last upgrade failed';
    setText(processEl, processText);
    setAttr(processEl, 'data-started-at', data.started_at);
    setAttr(processEl, 'data-upgrades', upgrades);
    setAttr(processEl, 'data-upgrade-error', typeof failure.error === 'string' ? failure.error : '');
    setAttr(processEl, 'title', typeof failure.error === 'string'
      ? 'last upgrade failed at ' + failure.at + ': ' + failure.error : '');
    processEl.classList.toggle('warn', typeof failure.error === 'string');
    var config = obj(data.config), reload = obj(config.last_reload);
    var generationEl = document.getElementById('generation');
    setText(generationEl, isNum(config.generation) ? 'generation ' + config.generation : DASH);
    setAttr(generationEl, 'data-generation', config.generation);
    var reloadEl = document.getElementById('reload');
    setAttr(reloadEl, 'data-ok', reload.ok === true);
    var at = typeof reload.at === 'string' ? reload.at.replace('T', ' ').replace('Z', ' UTC') : '';
    if (reload.ok === true) {
      setText(reloadEl, 'ok' + (at ? ' \u00b7 ' + at : ''));
      reloadEl.title = '';
    } else {
      setText(reloadEl, 'failed' + (reload.error ? ': ' + reload.error : ''));
      reloadEl.title = at;
    }

    var announce = data.announce && typeof data.announce === 'object' ? data.announce : null;
    var announceEl = document.getElementById('announce');
    document.getElementById('announce-meta').hidden = !announce;
    if (announce) {
      var vips = Array.isArray(announce.vips) ? announce.vips : [];
      var on = vips.filter(function (x) { return x && x.announced === true; });
      setText(announceEl, String(announce['interface']) + ' \u00b7 ' + on.length + ' of ' + vips.length +
        ' VIP' + (vips.length === 1 ? '' : 's') + ' announced');
      announceEl.title = vips.map(function (x) {
        return String(x.address) + (x.announced ? ' announced' : ' withdrawn');
      }).join('\n');
      setAttr(announceEl, 'data-interface', announce['interface']);
      setAttr(announceEl, 'data-announced', on.length);
      setAttr(announceEl, 'data-vips', vips.length);
    }

    var seen = new Set();
    data.services.forEach(function (s, index) {
      var name = String(s.name);
      seen.add(name);
      var v = views.get(name);
      if (!v) {
        v = makeServiceView(name);
        views.set(name, v);
      }
      place(servicesEl, v.root, index);
      updateService(v, s);
    });
    views.forEach(function (v, name) {
      if (!seen.has(name)) {
        servicesEl.removeChild(v.root);
        views['delete'](name);
      }
    });
    history.forEach(function (h, key) {
      if (h.seen !== pollCount) history['delete'](key);
    });
    setText(emptyEl, 'No services configured.');
    emptyEl.hidden = data.services.length > 0;
    if (emptyEl.parentNode === servicesEl) place(servicesEl, emptyEl, data.services.length);
    document.title = 'fulcrum' + (data.version ? ' ' + data.version : '') + ' \u2013 dashboard';
  }

  function healthy() {
    failures = 0;
    lastGood = new Date();
    bannerEl.hidden = true;
    document.body.classList.remove('stale');
    setAttr(statusEl, 'data-status', 'live');
    setText(statusEl, 'live');
    setText(document.getElementById('updated'), clock(lastGood));
  }

  function unreachable(reason) {
    failures++;
    var text = 'Stats unreachable (' + reason + ').';
    if (lastGood) {
      var age = Math.round((Date.now() - lastGood.getTime()) / 1000);
      text += ' Showing the last data, from ' + clock(lastGood) + ' (' + duration(age) + ' ago).';
    } else {
      setText(emptyEl, 'No data yet.');
    }
    text += ' Retrying every second.';
    setText(bannerTextEl, text);
    bannerEl.hidden = false;
    document.body.classList.add('stale');
    setAttr(statusEl, 'data-status', 'unreachable');
    setText(statusEl, 'unreachable');
    setAttr(bannerEl, 'data-failures', failures);
    if (document.title.indexOf('(!)') !== 0) document.title = '(!) ' + document.title;
  }

  function poll() {
    var started = Date.now();
    var controller = typeof AbortController === 'function' ? new AbortController() : null;
    var timer = setTimeout(function () { if (controller) controller.abort(); }, TIMEOUT_MS);
    fetch('stats', { cache: 'no-store', headers: { Accept: 'application/json' },
                     signal: controller ? controller.signal : undefined })
      .then(function (response) {
        if (!response.ok) throw new Error('HTTP ' + response.status);
        return response.json();
      })
      .then(function (data) {
        if (!data || !Array.isArray(data.services)) throw new Error('not a stats document');
        render(data);
        healthy();
      })
      .catch(function (error) {
        var reason = error && error.name === 'AbortError' ? 'timed out'
                   : error && error.message ? error.message : String(error);
        unreachable(reason);
      })
      .then(function () {
        clearTimeout(timer);
        setTimeout(poll, Math.max(100, POLL_MS - (Date.now() - started)));
      });
  }

  poll();
})();
</script>
</body>
</html>
)html";

}  // namespace fulcrum
