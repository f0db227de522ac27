#!/usr/bin/env python3
"""Every message the daemon can log is constant text listed in docs/operations.md.

    python3 tools/check_log_messages.py

Reads every log call in src/ (log_error/warn/info/debug, Log::write,
Log::format, and LogRateLimit constructions, which name their message
once) and the log table of docs/operations.md (the rows the e2e harness
checks log lines against). Fails, naming the file and line, on a message
that is not a string literal (or a choice between literals: values belong
in fields), on a message the table lacks, and on a row no call logs.
The e2e suite checks the lines it sees; this covers those no test
provokes (a failed privilege drop, too few descriptors). Exit 0 or 1.
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
sys.path.insert(0, os.path.join(ROOT, 'tests', 'e2e'))

import harness  # noqa: E402  (documented_log_messages: the table as the tests read it)

# A call and the index of its message argument. fulcrumctl and the demo
# server do not log through Log.
# A LogRateLimit is constructed as `LogRateLimit NAME(LogLevel::L, "message")`,
# or as a member (NAME_ by this project's naming) in a constructor's list.
CALL = re.compile(r'\b(log_(?:error|warn|info|debug)|Log::write|Log::format|LogRateLimit\s+\w+|\w+_(?=\(LogLevel::))\(')
# Inside the logging code itself: forwarding a message given by a caller.
FORWARDING = {('src/sys/log.cpp', 'message_')}
LITERALS = re.compile(r'\s*(?:"[^"\\]*"\s*|[\w.>-]+\s*\?\s*"[^"\\]*"\s*:\s*"[^"\\]*"\s*)')


def arguments(text, start):
    """The top-level arguments of the call whose '(' is at text[start - 1]."""
    args, depth, current, i = [], 0, [], start
    while i < len(text):
        c = text[i]
        if c == '"':
            end = text.index('"', i + 1)
            while text[end - 1] == '\\':
                end = text.index('"', end + 1)
            current.append(text[i:end + 1])
            i = end + 1
            continue
        if c in '({[':
            depth += 1
        elif c in ')}]':
            if depth == 0:
                args.append(''.join(current))
                return args
            depth -= 1
        elif c == ',' and depth == 0:
            args.append(''.join(current))
            current = []
            i += 1
            continue
        current.append(c)
        i += 1
    raise ValueError('unterminated call')


def main():
    documented = harness.documented_log_messages()
    logged, problems = set(), []
    for directory, _, files in os.walk(os.path.join(ROOT, 'src')):
        for name in sorted(files):
            path = os.path.join(directory, name)
            where = os.path.relpath(path, ROOT)
            if not name.endswith('.cpp') or where.startswith(('src/ctl/', 'src/demo/')):
                continue
            with open(path, encoding='utf-8') as f:
                text = f.read()
            for m in CALL.finditer(text):
                call = m.group(1)
                if call.startswith(('log_', 'Log::')) and re.search(r'\b(?!return\b)\w+$', text[:m.start()].rstrip()):
                    continue  # a definition (`void Log::write(`), not a call
                line = text.count('\n', 0, m.start()) + 1
                args = arguments(text, m.end())
                index = 0 if call.startswith('log_') else 1
                message = args[index].strip() if len(args) > index else ''
                if (where, message) in FORWARDING:
                    continue
                if not LITERALS.fullmatch(message):
                    problems.append(f'{where}:{line}: the message is not constant text: {message!r}')
                    continue
                for literal in re.findall(r'"([^"\\]*)"', message):
                    logged.add(literal)
                    if literal not in documented:
                        problems.append(f'{where}:{line}: message {literal!r} is not in the log table '
                                        'of docs/operations.md')
    for msg in documented:
        if msg not in logged:
            problems.append(f'docs/operations.md: the log table lists {msg!r}, which no call in src/ logs')
    for problem in problems:
        print(problem)
    print(f'{len(logged)} messages logged in src/, {len(documented)} in the table, {len(problems)} problems')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
