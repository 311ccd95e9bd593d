"""Shared fixtures for the end-to-end tests: the real tlstap binary, real kernel, real tools.

TLSTAP_BIN points at the binary under test (the Makefile passes the release build). Tests that need a
tool install nothing themselves: `make deps-test` installs every Debian package they use, and a missing
tool fails the test loudly rather than skipping it."""
import os
import shutil
import subprocess
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tlstap_bin() -> str:
    path = os.environ.get("TLSTAP_BIN") or os.path.join(REPO, ".build", "debug", "tlstap")
    assert os.access(path, os.X_OK), f"tlstap binary not found at {path}; build first or set TLSTAP_BIN"
    return path


def need(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is required (make deps-test installs it)"
    return path


def run(cmd, check=True, **kw):
    """Runs a command, returning CompletedProcess with text output; raises with its output on failure."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    result = subprocess.run(cmd, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


@pytest.fixture
def tlstap():
    return tlstap_bin()


@pytest.fixture
def segment_dir(tmp_path):
    d = tmp_path / "segments"
    return d


class Netns:
    """A network namespace made by the test (`ip netns add`), deleted afterwards."""

    def __init__(self, name: str):
        self.name = name
        run(["ip", "netns", "add", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])

    def exec(self, *cmd, **kw):
        return run(["ip", "netns", "exec", self.name, *cmd], **kw)

    def popen(self, *cmd, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kw)

    def delete(self):
        run(["ip", "netns", "del", self.name], check=False)


@pytest.fixture
def make_netns():
    """Factory for test namespaces with unique names, all removed at teardown."""
    made = []

    def factory(prefix="tt"):
        ns = Netns(f"{prefix}{uuid.uuid4().hex[:8]}")
        made.append(ns)
        return ns

    yield factory
    for ns in made:
        ns.delete()
