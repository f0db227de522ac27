"""The dashboard with 1000 servers, in headless Chromium (issue 21): paging,
the filter, problems first, and the chart of each service.

A daemon with service `big` (rr, 1000 servers s0..s999 at one demo server,
no health checks) and `small` (2 servers), a few sessions on each; s500 set
to maint and s700 to drain through the admin API. Chromium renders the page
(5 s of virtual time) at addresses that carry the view:
  - `/`: big's table holds 50 server rows, s0..s49 in order; its pager says
    `1–50 of 1000` (data-first 1, data-last 50, data-total 1000) with
    previous disabled; small's pager is hidden;
  - `/#page-big=3`: rows s100..s149;
  - `/#filter=s99`: s99 and s990..s999, 11 rows, the pager hidden with
    data-matching 11; small shows no row;
  - `/#problems=1`: s500 (maint) and s700 (drain) first, then s0..s47;
  - each section's svg.chart has at least 3 points and its three lines;
    the legend's servers up reads 998 for big.
A screenshot at 1000 servers lands in meson-logs/ (dashboard-1000.png).
"""

import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the Chromium helper of dashboard_chromium
from dashboard_chromium import Chromium, build_root, find_chromium  # noqa: E402
from harness import (echo_session, expect, expect_eq, free_address, get_stats, http_request,  # noqa: E402
                     log_stream, wait_until)

DEADLINE = 240
TOKEN = 'dashboard-1000-token'


def server_rows(dom, service):
    section = dom.find('section', cls='service', data_service=service, what=f'section {service}')
    return [r.attrs.get('data-server') for r in section.find_all('tr', cls='server')], section


def run(t):
    chromium = Chromium(t, find_chromium())
    demo = t.demo_server('many')
    other = t.demo_server('other')
    big_listen, small_listen, stats_address = free_address(), free_address(), free_address()
    token_file = t.token_file(TOKEN + '\n')
    d = t.daemon({
        'global': {'workers': 2},
        'stats': {'listen': stats_address, 'admin_token_file': token_file},
        'services': [
            {'name': 'big', 'listen': big_listen, 'scheduler': 'rr',
             'servers': [{'name': f's{i}', 'address': demo.address} for i in range(1000)]},
            {'name': 'small', 'listen': small_listen,
             'servers': [{'name': 'x1', 'address': other.address}, {'name': 'x2', 'address': other.address}]},
        ],
    })
    for name, state in (('s500', 'maint'), ('s700', 'drain')):
        reply = http_request(stats_address, 'POST', f'/api/v1/services/big/servers/{name}',
                             body=json.dumps({'state': state}),
                             headers={'Authorization': f'Bearer {TOKEN}', 'Content-Type': 'application/json'})
        expect_eq(reply.status, 200, f'{name} to {state}')
    for n in range(6):
        echo_session(big_listen, n)
        echo_session(small_listen, 100 + n)
    wait_until(lambda: {s['name']: s['sessions']['total'] for s in get_stats(stats_address)['services']} ==
               {'big': 6, 'small': 6}, 10, 'sessions in /stats')
    url = f'http://{stats_address}/'

    dom = chromium.dump_dom(url, 'first page')
    rows, section = server_rows(dom, 'big')
    expect_eq(rows, [f's{i}' for i in range(50)], 'big: the first page')
    pager = section.find('div', cls='pager', what='big pager')
    expect_eq((pager.attrs.get('hidden'), pager.attrs.get('data-first'), pager.attrs.get('data-last'),
               pager.attrs.get('data-total')), (None, '1', '50', '1000'), 'big: pager attributes')
    expect_eq(pager.find('span', cls='pager-text', what='pager text').text(), '1\u201350 of 1000', 'big: pager text')
    expect(pager.find('button', cls='prev', what='prev').attrs.get('disabled') is not None, 'previous disabled')
    small_rows, small = server_rows(dom, 'small')
    expect_eq(small_rows, ['x1', 'x2'], 'small: its rows')
    expect(small.find('div', cls='pager', what='small pager').attrs.get('hidden') is not None, 'small: no pager')
    for name in ('big', 'small'):
        chart = dom.find('section', cls='service', data_service=name, what=name).find('svg', cls='chart', what='chart')
        expect(int(chart.attrs.get('data-points', '0')) >= 3, f'{name}: chart points {chart.attrs.get("data-points")}')
        for line in ('line-sessions', 'line-bytes', 'line-up'):
            points = chart.find('polyline', cls=line, what=line).attrs.get('points', '')
            expect(len(points.split()) >= 3, f'{name}: {line} drawn ({points[:40]!r})')
    up = section.find('span', cls='legend-up', what='legend').find('span', cls='legend-value', what='up value').text()
    expect_eq(up, '998', 'big: servers up in the legend')

    rows, _ = server_rows(chromium.dump_dom(url + '#page-big=3', 'page 3'), 'big')
    expect_eq(rows, [f's{i}' for i in range(100, 150)], 'big: page 3')

    dom = chromium.dump_dom(url + '#filter=s99', 'filter')
    rows, section = server_rows(dom, 'big')
    expect_eq(rows, ['s99'] + [f's{i}' for i in range(990, 1000)], 'big: filter s99')
    pager = section.find('div', cls='pager', what='big pager')
    expect_eq((pager.attrs.get('hidden') is not None, pager.attrs.get('data-matching')), (True, '11'),
              'big: pager with the filter')
    expect_eq(server_rows(dom, 'small')[0], [], 'small: nothing matches s99')

    rows, _ = server_rows(chromium.dump_dom(url + '#problems=1', 'problems first'), 'big')
    expect_eq(rows, ['s500', 's700'] + [f's{i}' for i in range(48)], 'big: problems first')

    root = build_root()
    path = t.path('dashboard-1000.png')
    chromium.screenshot(url + '#page-big=11', path, 1280, 1400, 'screenshot')
    if root:
        shutil.copy(path, f'{root}/meson-logs/dashboard-1000.png')
    log_stream('1000 servers: 50 rows a page, filter and problems first as asked, charts drawn')
    d.stop()
