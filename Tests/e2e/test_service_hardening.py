"""tlstap.service's sandbox allows exactly what capture needs, on a real systemd host (nspawn bookworm).

A small libbpf program (service_probe/) runs as the ExecStart of a copy of packaging/tlstap.service with
every hardening line unchanged: it loads a tc classifier and a uprobe, attaches tc on lo in its own and
in another network namespace (setns), reads /proc/1/{ns/net,maps,root}, attaches uprobes to the system
libssl and to a libssl in another user's 0700 home, and sees a uprobe fire on a real TLS handshake.
Then each capability of CapabilityBoundingSet is dropped in turn and some step must fail — so the set is
both sufficient and minimal. Independent of the capture pipeline; its end-to-end proof is
test_service_deb.py."""
import os
import re
import subprocess
import time

import pytest

from conftest import REPO, need, run
from nspawn import BootedHost

PROBE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "service_probe")
UNIT = os.path.join(REPO, "packaging", "tlstap.service")
TLS_PORT = 18545
HOME_LIBSSL = "/home/alice/venv/lib/libssl.so.3"


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    clang = need("clang")
    out = tmp_path_factory.mktemp("probe")
    run([clang, "-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-I/usr/include/x86_64-linux-gnu",
         "-c", os.path.join(PROBE_DIR, "probe.bpf.c"), "-o", str(out / "probe.bpf.o")])
    run([clang, "-O2", "-Wall", "-Werror", os.path.join(PROBE_DIR, "probe.c"), "-o", str(out / "probe"), "-lbpf"])
    return out


def probe_unit(capabilities=None) -> str:
    """tlstap.service with the probe as a oneshot ExecStart; every sandboxing line kept as shipped."""
    text = open(UNIT).read()
    text = re.sub(r"(?m)^(Type|ExecStart|ExecReload|WatchdogSec|Restart|RestartSec|NotifyAccess)=.*\n", "", text)
    libssl = "/usr/lib/x86_64-linux-gnu/libssl.so.3"
    text = text.replace("[Service]\n", "[Service]\nType=oneshot\n"
                        f"ExecStart=/root/probe/probe /root/probe/probe.bpf.o /run/netns/svprobe {libssl} {HOME_LIBSSL}\n")
    if capabilities is not None:
        text = re.sub(r"(?m)^CapabilityBoundingSet=.*$", "CapabilityBoundingSet=" + " ".join(capabilities), text)
    return text


def shipped_capabilities():
    return re.search(r"(?m)^CapabilityBoundingSet=(.*)$", open(UNIT).read()).group(1).split()


def run_probe(host, unit_text):
    """Runs the probe unit to completion, making TLS handshakes meanwhile; returns its output lines."""
    with open(host.path("/etc/systemd/system/tlstap-probe.service"), "w") as f:
        f.write(unit_text)
    host.run("systemctl", "daemon-reload")
    shown = host.run("journalctl", "-n", "0", "--show-cursor", "--no-pager").stdout
    cursor = shown.strip().split("cursor: ", 1)[1]
    # A oneshot's `start` returns when the probe has exited; handshakes meanwhile feed its uprobe.
    start = host.popen("systemctl", "start", "tlstap-probe.service", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while start.poll() is None and time.monotonic() < deadline:
        host.run("curl", "-sk", "-o", "/dev/null", "--max-time", "2", f"https://127.0.0.1:{TLS_PORT}/", check=False)
        time.sleep(0.2)
    if start.poll() is None:
        start.kill()
    start.wait()
    # journald may still be reading the stdout stream of the exited probe.
    deadline = time.monotonic() + 5
    while True:
        out = host.run("journalctl", "-u", "tlstap-probe.service", f"--after-cursor={cursor}", "-o", "cat",
                       "--no-pager").stdout
        lines = [line for line in out.splitlines() if line.startswith(("OK", "FAIL", "PROBE"))]
        if any(line.startswith("PROBE") for line in lines) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not lines:
        lines = host.run("systemctl", "status", "--no-pager", "-n", "30", "tlstap-probe.service", check=False).stdout.splitlines()
    host.run("systemctl", "reset-failed", "tlstap-probe.service", check=False)
    return lines


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    need("systemd-nspawn")
    workdir = tmp_path_factory.mktemp("host")
    with BootedHost(str(workdir)) as booted:
        booted.run("ip", "netns", "add", "svprobe")
        # A libssl in a 0700 home of another user, as a virtualenv would bundle it.
        booted.run("sh", "-c", "useradd -m -u 1000 alice && chmod 0700 /home/alice && "
                   f"install -d -o alice -m 0700 {os.path.dirname(HOME_LIBSSL)} && "
                   f"install -o alice -m 0600 /usr/lib/x86_64-linux-gnu/libssl.so.3 {HOME_LIBSSL}")
        booted.run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                   "-keyout", "/root/key.pem", "-out", "/root/cert.pem")
        server = booted.popen("openssl", "s_server", "-quiet", "-www", "-accept", f"127.0.0.1:{TLS_PORT}",
                              "-key", "/root/key.pem", "-cert", "/root/cert.pem",
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield booted
        finally:
            server.kill()
            server.wait()


def install_probe(host, probe):
    os.makedirs(host.path("/root/probe"), exist_ok=True)
    for name in ("probe", "probe.bpf.o"):
        with open(probe / name, "rb") as src, open(host.path(f"/root/probe/{name}"), "wb") as dst:
            dst.write(src.read())
    os.chmod(host.path("/root/probe/probe"), 0o755)


def test_shipped_sandbox_allows_capture(host, probe):
    install_probe(host, probe)
    lines = run_probe(host, probe_unit())
    assert "PROBE PASSED" in lines, "\n".join(lines)


@pytest.mark.parametrize("dropped", shipped_capabilities())
def test_every_capability_is_needed(host, probe, dropped):
    install_probe(host, probe)
    kept = [c for c in shipped_capabilities() if c != dropped]
    lines = run_probe(host, probe_unit(kept))
    failures = [line for line in lines if line.startswith("FAIL")]
    assert failures, f"without {dropped} everything still works: it is not needed\n" + "\n".join(lines)
    print(f"without {dropped}: {failures}")
