"""Fixtures that run the real `strata` binary on loopback in a temp dir.

STRATA_BIN points at the binary (tests/run.sh sets it)."""

import json
import os
import re
import signal
import subprocess
import time

import pytest

WRITE_KEY = "py-test-key"


def strata_bin():
    path = os.environ.get("STRATA_BIN")
    if not path:
        here = os.path.dirname(os.path.abspath(__file__))
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(here, "..", "..", "target"))
        path = os.path.join(target, "debug", "strata")
    assert os.path.exists(path), f"strata binary not found at {path}: build it first"
    return path


class Strata:
    def __init__(self, root):
        self.root = str(root)
        self.config = os.path.join(self.root, "strata.toml")
        self.data = os.path.join(self.root, "data")
        self.proc = None
        self.url = None

    def cli(self, *args, check=True):
        res = subprocess.run([strata_bin(), *args], capture_output=True, text=True, timeout=120)
        if check and res.returncode != 0:
            raise AssertionError(f"strata {' '.join(args)} failed: {res.stderr}")
        return res

    def start(self, flush_interval="200ms"):
        log = open(os.path.join(self.root, "serve.log"), "ab")
        self.proc = subprocess.Popen(
            [strata_bin(), "serve", "-c", self.config, "--listen", "127.0.0.1:0",
             "--flush-interval", flush_interval],
            stdout=subprocess.PIPE, stderr=log, text=True,
        )
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (http://\S+)", line)
        assert m, f"serve did not start: {line!r}"
        self.url = m.group(1)
        return self.url

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        self.proc = None

    def sql(self, query):
        res = self.cli("sql", "-c", self.config, "--format", "json", query)
        return [json.loads(l) for l in res.stdout.splitlines() if l.strip()]

    def wait_rows(self, query, expected, deadline_s=60):
        """Polls until `query`'s first column equals `expected` (bounded; not a speed check)."""
        end = time.monotonic() + deadline_s
        last = None
        while time.monotonic() < end:
            rows = self.sql(query)
            last = list(rows[0].values())[0] if rows else None
            if last == expected:
                return
            time.sleep(0.3)
        raise AssertionError(f"{query!r} gave {last}, expected {expected}")


@pytest.fixture
def strata(tmp_path):
    s = Strata(tmp_path)
    s.cli("init", s.root)
    s.cli("apps", "create", "python", "--write-key", WRITE_KEY, "-c", s.config)
    s.start()
    yield s
    s.stop()
