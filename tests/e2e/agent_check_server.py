"""An agent for agent checks (HAProxy's agent-check protocol), served by the test.

Each connection gets `reply` and a newline, then the connection is closed,
whatever the checker sent (nothing, for fulcrum and HAProxy). `reply` may be
changed with set_reply(). Every answer is recorded with the checker's IP
address and the reply it carried, so that a test can wait until a given
checker has got the new reply (answered_since). stop_listening() makes the
agent unreachable: its listening socket closes, connects are refused.
By default on a free port of 127.0.0.1; fulcrum asks the agent on the
agent port of each server's own address, so a test with several agents
gives each its host (127.0.0.2, ...) and the one port.
"""

import threading


class AgentCheckServer:
    def __init__(self, t, name, reply='up', host='127.0.0.1', port=None):
        self.reply = reply
        self.lock = threading.Lock()
        self.answers = []   # [(checker's IP address, reply sent)]
        self.server = t.tcp_server(self._handle, host=host, name=name, conn_timeout=10, port=port)
        self.address = self.server.address
        self.port = int(self.address.rsplit(':', 1)[1])

    def _handle(self, conn, peer):
        with self.lock:
            reply = self.reply
        try:
            conn.sendall(reply.encode() + b'\n')
        except OSError:
            return  # the checker gave up (its timeout): no answer
        with self.lock:
            self.answers.append((peer[0], reply))

    def set_reply(self, reply):
        """Answers `reply` from now on; returns a mark for answered_since."""
        with self.lock:
            self.reply = reply
            return len(self.answers)

    def answered_since(self, mark, ip):
        """How many times the checker at `ip` got the current reply since
        set_reply returned `mark`."""
        with self.lock:
            return sum(1 for who, sent in self.answers[mark:] if (who, sent) == (ip, self.reply))

    def stop_listening(self):
        self.server.stop_listening()
