"""Every key docs/configuration.md documents is one the loader accepts, with
every value its type column names, and its YAML examples that are whole
files pass `fulcrum --check`.

The key tables under `### global`, `### stats`, `### services` and
`### servers` are read from the document: for each row, values are made
from its type (`integer 0..10`: 0 and 10; a list of choices: each of them;
`boolean`: true and false; `duration`: 1s; ...) and put, one at a time,
into a small valid file at the row's place (`timeouts.idle` under
`timeouts`); `fulcrum --check` must print `configuration ok` for each. A
type the test cannot make a value for fails it, so that a new row gets a
value here. Every ```yaml block with a `services:` key is checked as it is.
"""

import os
import re
import subprocess

from harness import TestFailure, binary, expect, expect_eq, free_address, write_config

DEADLINE = 90
DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'docs', 'configuration.md')
SECTIONS = ('global', 'stats', 'services', 'servers')


def key_tables(text):
    """{section: [(key, type)]} from the `### `section`` tables."""
    tables = {}
    section = None
    for line in text.splitlines():
        heading = re.fullmatch(r'#{2,4} `?([A-Za-z_]+)`?.*', line)  # any heading ends a section's table
        if heading:
            section = heading.group(1) if heading.group(1) in SECTIONS else None
            continue
        row = re.fullmatch(r'\| `([a-z_.]+)` \| ([^|]+) \|.*', line)
        if section and row:
            tables.setdefault(section, []).append((row.group(1), row.group(2).strip()))
    return tables


def values_for(key, kind, token_file):
    """The values to try for a row of type `kind`."""
    if kind.startswith('`auto` or integer'):
        low, high = re.search(r'(\d+)\.\.(\d+)', kind).groups()
        return ['auto', low, high]
    if kind.startswith('integer'):
        return list(re.search(r'(\d+)\.\.(\d+)', kind).groups())
    if kind.startswith('duration'):
        return ['1s']
    if kind == 'boolean':
        return ['true', 'false']
    if kind == 'boolean, or list of addresses and ranges':
        return ['true', 'false', ['127.0.0.1', '198.18.0.0/15']]
    if kind.startswith('list of addresses and ranges'):
        return [['127.0.0.1', '198.18.0.0/15', '2001:db8::/32']]
    if kind.startswith('`'):
        choices = re.findall(r'`([^`]+)`', kind)
        return choices + ([{'rise': '2'}] if 'mapping' in kind else [])
    if kind.startswith('address'):
        return [free_address()]
    if kind == 'IP literal':
        return ['127.0.0.1']
    if kind == 'path':
        return [token_file]
    if kind in ('user name', 'group name'):
        return ['root']
    if kind.startswith('name'):
        return ['x-1']
    if kind.startswith('list'):
        return None  # the base file has the list already
    if kind.startswith('mapping'):
        return None  # its keys have rows of their own
    if kind == 'DNS name, or NAME:PORT':
        return ['_app._tcp.svc.test', 'app.svc.test:8080']
    if kind == 'request path':
        return ['/primary?lag=0']
    if kind == 'host header':
        return ['db.test:8008', '[2001:db8::1]:443']
    if kind == 'HTTP status, range or list':
        return ['204', '200-299', ['200', '204-206']]
    if kind.startswith('string'):
        return ['PING\r\n']
    raise TestFailure(f'docs_config_keys: no value for `{key}` of type {kind!r}: teach values_for() this type')


def base(server):
    return {'global': {'workers': 1},
            'services': [{'name': 'web', 'listen': free_address(), 'servers': [{'address': server}]}]}


def server_of(config):
    return config['services'][0]['servers'][0]['address']


def place(config, section, key, value):
    """Puts key (dotted: nested) = value where `section` keys live."""
    target = {'global': lambda: config['global'],
              'stats': lambda: config.setdefault('stats', {'listen': free_address()}),
              'services': lambda: config['services'][0],
              'servers': lambda: config['services'][0]['servers'][0]}[section]()
    *parents, last = key.split('.')
    for parent in parents:
        target = target.setdefault(parent, {})
    target[last] = value
    if (section, key) == ('global', 'group'):
        config['global']['user'] = 'root'  # group needs user
    if (section, key) == ('services', 'health_check.http.verify'):
        target['tls'] = True  # verify needs tls
    if (section, key) in (('services', 'health_check.agent.interval'), ('services', 'health_check.agent.send')):
        target['port'] = 9  # an agent needs its port
    if section == 'services' and key.startswith('discover.') and key != 'discover.name':
        target['name'] = 'app.svc.test:8080'  # discover needs its name
    if (section, key) == ('services', 'sni_required'):
        # sni_required needs routes to route to.
        config['services'][0]['sni_routes'] = [{'names': ['api.test'], 'servers': [{'name': 'api', 'address': server_of(config)}]}]
    if (section, key, value) == ('services', 'protocol', 'udp'):
        target['forwarding'] = 'nat'  # the proxy relays TCP only
    if (section, key, value) == ('services', 'forwarding', 'dsr'):
        service = config['services'][0]
        service['dsr'] = {'ingress': 'lo'}
        port = service['listen'].rsplit(':', 1)[1]  # dsr servers listen on the VIP's port
        service['servers'][0]['address'] = service['servers'][0]['address'].rsplit(':', 1)[0] + ':' + port


def check(path):
    result = subprocess.run([binary('FULCRUM'), '--check', '-c', path], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=20)
    return result.returncode, result.stdout, result.stderr


def run(t):
    with open(DOC) as f:
        text = f.read()
    tables = key_tables(text)
    expect_eq(sorted(tables), sorted(SECTIONS), 'key tables found in docs/configuration.md')
    token_file = t.token_file('s3cret\n')
    server = t.demo_server('a').address
    if os.geteuid() != 0:
        tables['global'] = [(k, v) for k, v in tables['global'] if k not in ('user', 'group')]
    tried = 0
    for section, rows in tables.items():
        for key, kind in rows:
            for value in values_for(key, kind, token_file) or []:
                if (key, value) == ('address_mode', 'transparent') and os.geteuid() != 0:
                    continue  # needs CAP_NET_RAW, which --check now asks for
                if key == 'forwarding' and value != 'proxy' and os.geteuid() != 0:
                    continue  # needs CAP_NET_ADMIN, which --check asks for
                config = base(server)
                place(config, section, key, value)
                path = write_config(t.path(f'{section}-{key}.yaml'), config)
                # Trusting every PROXY sender is valid, and --check says what it means.
                warning = (f"warning: {path}:8:5: service web: accept_proxy_protocol: true trusts every sender, "
                           "so any client can choose the address servers see; list the proxies' addresses "
                           "instead\n" if (key, str(value).lower()) == ('accept_proxy_protocol', 'true') else '')
                expect_eq(check(path), (0, 'configuration ok\n', warning), f'--check with {section} {key}: {value!r}')
                tried += 1
    expect(tried >= 50, f'only {tried} key values tried: are the tables still found?')

    blocks = re.findall(r'```yaml\n(.*?)```', text, re.S)
    whole = [b for b in blocks if re.search(r'^services:', b, re.M)]
    expect(whole, 'no whole-file YAML example in docs/configuration.md')
    for number, block in enumerate(whole):
        path = write_config(t.path(f'example-{number}.yaml'), block)
        expect_eq(check(path), (0, 'configuration ok\n', ''), f'--check of the example:\n{block}')
