"""The device's control socket: a Unix stream socket speaking JSON lines.

Request:  {"op": NAME, ...arguments}            one per line
Response: {"ok": true, "result": ...} or {"ok": false, "error": MESSAGE}

Entries travel as the TOML tables of the configuration file (the same field
names) and are parsed here again by the configuration module's entry
parsers: the socket is a trust boundary, and a refused request changes
nothing. A whole configuration travels as TOML text ("apply").
Operations: caps, counters, peers, sas, spd, templates, latches, events,
add_peer, del_peer, add_sa, del_sa, add_spd, del_spd, add_template,
del_template, release_latch, apply, clear_counters.
"""

from __future__ import annotations

import json
import os
import socketserver
import threading

from latchnic.config import ConfigError, parse_config

from .backend import Backend, BackendError
from .entries import from_table

MAX_LINE = 4 << 20


def _strip(msg: str, source: str) -> str:
    return msg.removeprefix(source + ": ")


class _Handler(socketserver.StreamRequestHandler):
    def handle(self):
        server: ControlServer = self.server
        while True:
            line = self.rfile.readline(MAX_LINE)
            if not line:
                return
            try:
                req = json.loads(line)
                if not isinstance(req, dict):
                    raise ValueError("a request is a JSON object")
                resp = {"ok": True, "result": server.dispatch(req)}
            except (BackendError, ConfigError, ValueError, KeyError, TypeError) as e:
                msg = str(e) if not isinstance(e, KeyError) else f"missing request field {e}"
                resp = {"ok": False, "error": msg}
            try:
                self.wfile.write((json.dumps(resp) + "\n").encode())
                self.wfile.flush()
            except OSError:
                return


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True


class ControlServer:
    """Serves a Backend on a Unix socket (in a background thread by default)."""

    def __init__(self, backend: Backend, path: str):
        self.backend, self.path = backend, str(path)
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._srv = _Server(self.path, _Handler)
        self._srv.dispatch = self.dispatch
        os.chmod(self.path, 0o600)
        self._thread: threading.Thread | None = None

    def start(self) -> "ControlServer":
        self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="latchnic-control", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self):
        self._srv.serve_forever(poll_interval=0.1)

    def close(self):
        if self._thread is not None:
            self._srv.shutdown()
        self._srv.server_close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------ dispatch
    def _entry(self, kind: str, table):
        try:
            return from_table(kind, table, "device")
        except ConfigError as e:
            raise ConfigError(_strip(str(e), "device")) from None

    def dispatch(self, req: dict):
        b, op = self.backend, req.get("op")
        if op == "caps":
            return b.caps()
        if op == "counters":
            return b.counters()
        if op == "clear_counters":
            b.clear_counters()
            return None
        if op == "peers":
            return b.peers()
        if op == "sas":
            return b.sas(bool(req.get("keys", False)))
        if op == "spd":
            return b.spd()
        if op == "templates":
            return b.templates()
        if op == "latches":
            return b.latches()
        if op == "events":
            wait = min(float(req.get("wait", 0.0)), 30.0)
            events, nxt = b.events(int(req.get("since", 0)), wait, int(req.get("limit", 1000)))
            return {"events": events, "next": nxt}
        if op in ("add_peer", "add_sa", "add_spd", "add_template"):
            kind = op[4:]
            obj = self._entry(kind, req["table"])
            if kind == "spd":
                index = req.get("index")
                if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
                    raise ValueError(f"argument 'index': expected int, got {index!r}")
                return b.add_spd(obj, index)
            return getattr(b, op)(obj)
        if op in ("del_peer", "del_sa"):
            return getattr(b, op)(str(req["name"]))
        if op == "del_spd":
            return b.del_spd(str(req["dir"]), _int(req["index"], "index"))
        if op == "del_template":
            return b.del_template(_int(req["id"], "id"))
        if op == "release_latch":
            return b.release_latch(_int(req["slot"], "slot"))
        if op == "apply":
            cfg = parse_config(str(req["text"]), str(req.get("source", "<control>")))
            return b.apply(cfg)
        raise ValueError(f"unknown operation {op!r}")


def _int(v, name):
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"argument '{name}': expected int, got {v!r}")
    return v
