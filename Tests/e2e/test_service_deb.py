"""The .deb on a real systemd host: a clean debootstrapped bookworm (no Swift, no build tools) booted with
systemd-nspawn. Install, enable+start, reload with a changed config, TLS traffic inside the host that
tshark decrypts from the segments alone, structured journal records, stop, purge.

The .deb is built from TLSTAP_BIN (which must be linked with --static-swift-stdlib, as `make build`
does) by packaging/build-deb.sh, unless TLSTAP_DEB names a ready one."""
import gzip
import json
import os
import re
import subprocess
import time

import pytest

from conftest import REPO, need, run, tlstap_bin
from nspawn import BootedHost

HTTPS_PORT = 18543
REQUESTS = 5


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    ready = os.environ.get("TLSTAP_DEB")
    if ready:
        return ready
    out = tmp_path_factory.mktemp("deb")
    version = run(["sed", "-n", 's/^let tlstapVersion = "\\(.*\\)"/\\1/p',
                   os.path.join(REPO, "Sources/TapCore/Version.swift")]).stdout.strip()
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    result = run([os.path.join(REPO, "packaging/build-deb.sh"), tlstap_bin(), version, arch, str(out)])
    path = result.stdout.strip().splitlines()[-1]
    assert path.endswith(f"tlstap_{version}_{arch}.deb"), path
    return path


@pytest.fixture
def host(tmp_path):
    need("systemd-nspawn")
    need("debootstrap")
    with BootedHost(str(tmp_path)) as booted:
        yield booted


def journal(host, *match):
    out = host.run("journalctl", "-u", "tlstap", "-o", "json", "--no-pager", *match, check=False).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def native_records(host):
    """Records tlstap wrote with sd_journal_sendv, not lines the runtime may print on stderr."""
    return [r for r in journal(host) if r.get("SYSLOG_IDENTIFIER") == "tlstap" and r.get("_TRANSPORT") == "journal"]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_tls_server(host):
    """nginx with a fresh self-signed certificate on 127.0.0.1 inside the booted host."""
    host.run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
             "-keyout", "/root/key.pem", "-out", "/root/cert.pem")
    conf = f"""
pid /run/test-nginx.pid;
error_log /root/nginx-error.log;
events {{}}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{HTTPS_PORT} ssl;
        ssl_certificate /root/cert.pem;
        ssl_certificate_key /root/key.pem;
        location / {{ return 200 "hello from tlstap test\\n"; }}
    }}
}}
"""
    with open(host.path("/root/nginx.conf"), "w") as f:
        f.write(conf)
    host.run("nginx", "-c", "/root/nginx.conf")


def finished_segments(host):
    directory = host.path("/var/lib/tlstap/segments")
    if not os.path.isdir(directory):
        return []
    return sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".pcapng.zst"))


def test_deb_installs_runs_reloads_and_purges(deb, host, tmp_path):
    need("tshark")
    host.copy_in(deb, "/root/tlstap.deb")

    # Install on the clean host: dependencies are all there (no network inside), postinst enables and
    # starts; Type=notify makes `start` return only after READY=1.
    host.run("dpkg", "-i", "/root/tlstap.deb", timeout=120)
    assert host.run("systemctl", "is-enabled", "tlstap").stdout.strip() == "enabled"
    assert host.run("systemctl", "is-active", "tlstap", check=False).stdout.strip() == "active", \
        host.run("systemctl", "status", "tlstap", "--no-pager", check=False).stdout
    assert os.path.exists(host.path("/usr/share/man/man1/tlstap.1.gz"))
    assert os.path.exists(host.path("/usr/share/bash-completion/completions/tlstap"))
    assert host.run("stat", "-c", "%a", "/var/lib/tlstap").stdout.strip() == "700"

    security = host.run("systemd-analyze", "security", "--no-pager", "tlstap", check=False).stdout
    (tmp_path / "systemd-analyze-security.txt").write_text(security)
    print(security.splitlines()[-1] if security else "systemd-analyze security: no output")

    # Reload with a changed setting: short rotation, so segments appear within the test.
    with open(host.path("/etc/tlstap/tlstap.toml"), "a") as f:
        f.write('\nrotate-every = "2s"\nflush-every = "200ms"\n')
    host.run("systemctl", "reload", "tlstap")
    assert host.run("systemctl", "is-active", "tlstap", check=False).stdout.strip() == "active"

    # Journal: structured records from the service (start and reload have logged by now).
    ours = wait_for(lambda: native_records(host), 5, "a native SYSLOG_IDENTIFIER=tlstap journal record")
    assert all("PRIORITY" in r and "CODE_FILE" in r for r in ours)
    assert any(k.startswith("TLSTAP_") for r in ours for k in r), "no TLSTAP_* field"
    # TLS traffic inside the host; the key log of curl is kept only to prove keys never reach the journal.
    start_tls_server(host)
    for _ in range(REQUESTS):
        body = host.run("env", "SSLKEYLOGFILE=/root/keys.log", "curl", "-sk", "--http1.1",
                        f"https://127.0.0.1:{HTTPS_PORT}/").stdout
        assert body == "hello from tlstap test\n"

    # Rotation every 2 s (the reloaded value, not the 5m default) finishes segments while running.
    # A segment opens with its first packet, so keep a little traffic going until two are finished.
    def two_finished():
        host.run("curl", "-sk", "--http1.1", "-o", "/dev/null", f"https://127.0.0.1:{HTTPS_PORT}/")
        return len(finished_segments(host)) >= 2
    wait_for(two_finished, 15, "two finished segments after reload to 2s rotation")

    host.run("systemctl", "stop", "tlstap", timeout=40)
    assert host.run("systemctl", "is-active", "tlstap", check=False).stdout.strip() == "inactive"
    # Stopped cleanly (exit 0, not killed) and left no tc filter behind.
    result = host.run("systemctl", "show", "tlstap", "-p", "ExecMainStatus", "-p", "Result").stdout
    assert "ExecMainStatus=0" in result and "Result=success" in result, result
    assert host.run("tc", "filter", "show", "dev", "lo", "ingress").stdout.strip() == ""
    assert host.run("tc", "filter", "show", "dev", "lo", "egress").stdout.strip() == ""

    # tshark decrypts every request from the segments alone (DSBs inside, no key file).
    segments = finished_segments(host)
    assert segments, "no finished segment under /var/lib/tlstap/segments"
    decrypted = 0
    for segment in segments:
        out = run(["tshark", "-r", segment, "-Y", "http.request", "-T", "fields", "-e", "http.request.uri"]).stdout
        decrypted += len([line for line in out.splitlines() if line.strip() == "/"])
    # (the keep-alive requests above add to these; at least the REQUESTS with their own key log)
    assert decrypted >= REQUESTS, f"decrypted {decrypted} of {REQUESTS} requests from {len(segments)} segments"

    # `journalctl -u tlstap TLSTAP_SEGMENT=<name>` finds the records about one finished segment.
    ours = native_records(host)
    names = {os.path.basename(s) for s in segments}
    about = [r["TLSTAP_SEGMENT"] for r in ours if "TLSTAP_SEGMENT" in r]
    named = [n for n in about if os.path.basename(n) in names]
    assert named, f"no record names a finished segment in TLSTAP_SEGMENT (saw {about[:5]})"
    assert journal(host, f"TLSTAP_SEGMENT={named[0]}"), "journalctl TLSTAP_SEGMENT= match found nothing"
    # Secrets stay in segments: no key-log secret appears anywhere in the journal.
    secrets = {line.split()[-1] for line in open(host.path("/root/keys.log")) if line.strip() and not line.startswith("#")}
    assert secrets
    text = host.run("journalctl", "-o", "export", "--no-pager").stdout.lower()
    assert not [s for s in secrets if s.lower() in text], "a TLS secret reached the journal"

    # Purge leaves nothing: no unit, no enablement link, no config, no state, no binary.
    host.run("dpkg", "--purge", "tlstap", timeout=60)
    for path in ("/lib/systemd/system/tlstap.service", "/etc/systemd/system/multi-user.target.wants/tlstap.service",
                 "/etc/tlstap", "/var/lib/tlstap", "/usr/bin/tlstap", "/usr/share/doc/tlstap"):
        assert not os.path.lexists(host.path(path)), f"{path} left after purge"
    units = host.run("systemctl", "list-unit-files", "--no-legend", "tlstap.service", check=False).stdout
    assert "tlstap" not in units, units


def test_package_follows_debian_conventions(deb, tmp_path):
    """What is inside the .deb, checked on this host: fields, conffiles, checksums, generated docs."""
    fields = run(["dpkg-deb", "-f", deb]).stdout
    depends = re.search(r"(?m)^Depends: (.*)$", fields).group(1)
    packages = {d.strip().split()[0] for d in depends.split(",")}
    assert {"libbpf1", "libelf1", "libzstd1", "libsystemd0", "libc6"} <= packages, depends
    for package in packages:  # each a Debian package this (bookworm) machine's archive knows
        assert run(["apt-cache", "show", package], check=False).returncode == 0, f"{package} is not a Debian package"
    assert not [p for p in packages if "swift" in p], depends

    control = tmp_path / "control"
    run(["dpkg-deb", "-e", deb, str(control)])
    assert (control / "conffiles").read_text().split() == ["/etc/tlstap/tlstap.toml"]
    for script in ("postinst", "prerm", "postrm"):
        assert os.access(control / script, os.X_OK)
        run(["sh", "-n", str(control / script)])
    assert "deb-systemd-helper" in (control / "postinst").read_text()

    root = tmp_path / "root"
    run(["dpkg-deb", "-x", deb, str(root)])
    run(["md5sum", "--quiet", "-c", str(control / "md5sums")], cwd=root)
    assert (root / "lib/systemd/system/tlstap.service").read_text() == open(os.path.join(REPO, "packaging/tlstap.service")).read()
    assert (root / "etc/tlstap/tlstap.toml").read_text() == open(os.path.join(REPO, "etc/tlstap/tlstap.toml")).read()
    assert (root / "usr/share/doc/tlstap/copyright").exists()

    # The man page is generated from the parser: every flag `tlstap run --help` lists is in it.
    binary = str(root / "usr/bin/tlstap")
    flags = set(re.findall(r"(--[a-z][a-z-]+)", run([binary, "run", "--help"]).stdout)) - {"--help", "--version"}
    page = gzip.decompress((root / "usr/share/man/man1/tlstap.1.gz").read_bytes()).decode().replace("\\-", "-")
    assert flags, "tlstap run --help lists no flags"
    assert not [f for f in flags if f not in page], f"flags missing from tlstap(1): {sorted(f for f in flags if f not in page)}"
    for path in ("usr/share/bash-completion/completions/tlstap", "usr/share/zsh/vendor-completions/_tlstap",
                 "usr/share/fish/vendor_completions.d/tlstap.fish"):
        assert "segments" in (root / path).read_text(), f"{path} does not complete subcommands"
