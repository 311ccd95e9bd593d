"""Issue 5 acceptance, end to end: servers and clients in namespaces made after `tlstap run` is ready,
real nginx, PostgreSQL, MariaDB, curl, python, node, psql and mariadb; tshark — with no key file and no preferences —
is the judge of whether each segment decrypts on its own."""
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import need, run
from daemon import Daemon
from lab import Lab
from pcapfile import head_key_log

NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen {ip}:443 ssl;
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305;
        keepalive_timeout 60s;
        location / {{ return 200 "tlstap says hello\\n"; }}
    }}
}}
"""

# (uri, curl arguments): every TLS 1.3 suite and the TLS 1.2 ECDHE-RSA AEAD suites.
CURL_CASES = [
    ("/curl-13-aes128", ["--tlsv1.3", "--tls13-ciphers", "TLS_AES_128_GCM_SHA256"]),
    ("/curl-13-aes256", ["--tlsv1.3", "--tls13-ciphers", "TLS_AES_256_GCM_SHA384"]),
    ("/curl-13-chacha", ["--tlsv1.3", "--tls13-ciphers", "TLS_CHACHA20_POLY1305_SHA256"]),
    ("/curl-12-aesgcm", ["--tlsv1.2", "--tls-max", "1.2", "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256"]),
    ("/curl-12-chacha", ["--tlsv1.2", "--tls-max", "1.2", "--ciphers", "ECDHE-RSA-CHACHA20-POLY1305"]),
]


def decrypted_uris(segment):
    """HTTP request URIs tshark decrypts from one segment, with nothing but the segment."""
    out = run(["tshark", "-r", segment, "-Y", "http.request", "-T", "fields", "-e", "http.request.uri"]).stdout
    return out.split()


def decrypted_queries(segment):
    out = run(["tshark", "-r", segment, "-Y", "pgsql.query", "-T", "fields", "-e", "pgsql.query"]).stdout
    return out.splitlines()


@pytest.fixture
def tls_lab(make_netns, tmp_path):
    for tool in ("nginx", "tshark", "curl", "node", "psql", "openssl", "mariadbd", "mariadb"):
        need(tool)
    lab = Lab(make_netns)
    certs = tmp_path / "tls"
    certs.mkdir()
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=tlstap-test",
         "-keyout", str(certs / "key.pem"), "-out", str(certs / "cert.pem")])
    (certs / "nginx.conf").write_text(NGINX_CONF.format(dir=certs, ip=Lab.B_IP))
    lab.certs = certs
    lab.cleanup = []
    yield lab
    for step in lab.cleanup:
        step()
    pid_file = certs / "nginx.pid"
    if pid_file.exists():
        run(["kill", pid_file.read_text().strip()], check=False)


def start_nginx(lab):
    lab.b.exec("nginx", "-c", str(lab.certs / "nginx.conf"))
    for _ in range(100):
        if lab.a.exec("curl", "-sk", "-o", "/dev/null", f"https://{Lab.B_IP}/ready", check=False).returncode == 0:
            return
        time.sleep(0.05)
    raise AssertionError("nginx did not come up")


def start_postgres(lab, tmp_path):
    """A PostgreSQL server with ssl=on inside B, on its default port so Wireshark dissects it."""
    bindir = sorted(p for p in os.listdir("/usr/lib/postgresql"))[-1]
    bindir = f"/usr/lib/postgresql/{bindir}/bin"
    # pytest's tmp dirs are root-only; the server runs as postgres, so its cluster lives elsewhere.
    base = tempfile.mkdtemp(prefix="tlstap-pg-")
    lab.cleanup.append(lambda: shutil.rmtree(base, ignore_errors=True))
    os.chmod(base, 0o755)
    data = os.path.join(base, "data")
    run(["chown", "postgres:postgres", base])
    run(["runuser", "-u", "postgres", "--", f"{bindir}/initdb", "-D", data, "-A", "trust", "--no-sync"])
    shutil.copy(lab.certs / "cert.pem", os.path.join(data, "server.crt"))
    shutil.copy(lab.certs / "key.pem", os.path.join(data, "server.key"))
    run(["chown", "postgres:postgres", os.path.join(data, "server.crt"), os.path.join(data, "server.key")])
    os.chmod(os.path.join(data, "server.key"), 0o600)
    with open(os.path.join(data, "pg_hba.conf"), "a") as hba:
        hba.write(f"hostssl all all {Lab.A_IP}/32 trust\n")
    server = lab.b.popen("runuser", "-u", "postgres", "--", f"{bindir}/postgres", "-D", data,
                         "-c", "ssl=on", "-c", f"listen_addresses={Lab.B_IP}", "-c", "unix_socket_directories=",
                         "-c", "fsync=off", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conn = f"host={Lab.B_IP} user=postgres sslmode=require"
    for _ in range(100):
        if lab.a.exec("psql", conn, "-c", "select 1", check=False).returncode == 0:
            return server, conn
        time.sleep(0.1)
    server.terminate()
    raise AssertionError("postgres did not come up")


def start_mariadb(lab):
    """A MariaDB server with TLS inside B, on its default port so Wireshark dissects MySQL."""
    base = tempfile.mkdtemp(prefix="tlstap-mysql-")
    lab.cleanup.append(lambda: shutil.rmtree(base, ignore_errors=True))
    os.chmod(base, 0o755)
    data = os.path.join(base, "data")
    for name in ("cert.pem", "key.pem"):
        shutil.copy(lab.certs / name, os.path.join(base, name))
    run(["chown", "-R", "mysql:mysql", base])
    run(["mariadb-install-db", "--user=mysql", f"--datadir={data}", "--auth-root-authentication-method=normal",
         "--skip-test-db"], timeout=120)
    server = lab.b.popen("mariadbd", "--user=mysql", f"--datadir={data}", f"--bind-address={Lab.B_IP}",
                         f"--socket={base}/mysqld.sock", f"--pid-file={base}/mysqld.pid", "--skip-grant-tables",
                         f"--ssl-cert={base}/cert.pem", f"--ssl-key={base}/key.pem", "--skip-log-bin",
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = ["mariadb", f"--host={Lab.B_IP}", "--user=root", "--ssl", "--skip-ssl-verify-server-cert"]
    for _ in range(100):
        if lab.a.exec(*client, "-e", "select 1", check=False).returncode == 0:
            return server, client
        time.sleep(0.1)
    server.terminate()
    raise AssertionError("mariadb did not come up")


def decrypted_mysql_queries(segment):
    out = run(["tshark", "-r", segment, "-Y", "mysql.query", "-T", "fields", "-e", "mysql.query"]).stdout
    return out.splitlines()


def test_every_client_and_server_decrypts_from_its_segment(tlstap, segment_dir, tls_lab, tmp_path):
    lab = tls_lab
    # Hourly rotation: a connection cut by a boundary decrypts only from the export (see the burst
    # test), and this test judges each segment alone; with 1m a boundary fell inside ~1 % of runs.
    daemon = Daemon(tlstap, segment_dir, "--interfaces", "lab*", "--rotate-every", "1h", "--flush-every", "200ms",
                    env={"RUNTIME_DIRECTORY": str(tmp_path)})
    postgres = mariadb = None
    try:
        daemon.wait_ready()
        start_nginx(lab)                          # servers start after tlstap is ready
        postgres, conn = start_postgres(lab, tmp_path)
        mariadb, mysql_client = start_mariadb(lab)
        expected = []
        for uri, args in CURL_CASES:
            lab.a.exec("curl", "-sfk", "-o", "/dev/null", *args, f"https://{Lab.B_IP}{uri}")
            expected.append(uri)
        lab.a.exec("python3", "-c", f"""
import ssl, urllib.request
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
urllib.request.urlopen("https://{Lab.B_IP}/python-ssl", context=ctx).read()
""")
        expected.append("/python-ssl")
        lab.a.exec("node", "-e", f"""
require('https').get({{host: '{Lab.B_IP}', path: '/node-https', rejectUnauthorized: false}},
  r => {{ r.resume(); r.on('end', () => process.exit(0)); }}).on('error', e => {{ console.error(e); process.exit(1); }});
""")
        expected.append("/node-https")
        lab.a.exec("psql", conn, "-c", "select 'tlstap-probe-query'")
        lab.a.exec(*mysql_client, "-e", "select 'tlstap-mysql-probe'")
        time.sleep(1.5)  # past the reorder window, and a status refresh
        status_text = run([tlstap, "status"], env={**os.environ, "RUNTIME_DIRECTORY": str(tmp_path)}).stdout
        status = json.loads(run([tlstap, "status", "--json"],
                                env={**os.environ, "RUNTIME_DIRECTORY": str(tmp_path)}).stdout)
    finally:
        for server in (postgres, mariadb):
            if server:
                server.terminate()
                server.wait()
        assert daemon.stop() == 0, daemon.stderr()
        daemon.close()

    segments = daemon.finished_segments()
    assert segments
    found = set()
    for segment in segments:  # each segment on its own, as a user would open it
        found.update(decrypted_uris(segment))
    missing = [uri for uri in expected if uri not in found]
    assert not missing, f"not decrypted: {missing}; decrypted: {sorted(found)}"
    queries = [q for segment in segments for q in decrypted_queries(segment)]
    assert any("tlstap-probe-query" in q for q in queries), f"psql query not decrypted: {queries}"
    mysql = [q for segment in segments for q in decrypted_mysql_queries(segment)]
    assert any("tlstap-mysql-probe" in q for q in mysql), f"mariadb query not decrypted: {mysql}"
    # Guarantee 8: the secrets are in the segments and nowhere else.
    keylog = run([tlstap, "keylog", "--segment-dir", str(segment_dir)]).stdout.splitlines()
    secrets = [line.split()[2] for line in keylog if line and not line.startswith("#")]
    assert secrets, "no secrets recorded"
    logs = daemon.stderr()
    assert not [s for s in secrets if s in logs or s.upper() in logs], "key material reached the logs"
    shown = status_text + json.dumps(status)
    assert not [s for s in secrets if s in shown or s.upper() in shown], "key material reached status"
    # `status` lists the libssl targets with their OpenSSL version and state, and counts the keys.
    system = [lib for lib in status["libraries"] if lib["path"].endswith("libssl.so.3")]
    assert system and system[0]["state"] == "attached" and system[0]["version"].startswith("OpenSSL 3."), status
    assert status["keys"] >= len(set(secrets)) and status["sessions"] > 0, status


def test_keep_alive_across_rotations_and_export(tlstap, segment_dir, tls_lab, tmp_path):
    """One keep-alive TLS connection spanning three 1 s rotations: every later segment carries its
    secrets in the head DSB, and `tlstap export` over the range decrypts every request."""
    lab = tls_lab
    daemon = Daemon(tlstap, segment_dir, "--interfaces", "lab*", "--rotate-every", "1s", "--flush-every", "200ms",
                    env={"RUNTIME_DIRECTORY": str(tmp_path)})
    try:
        daemon.wait_ready()
        start_nginx(lab)
        script = f"""
import http.client, ssl, time
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection("{Lab.B_IP}", 443, context=ctx)
for i in range(8):
    c.request("GET", f"/keepalive-{{i}}"); c.getresponse().read()
    time.sleep(0.5)
"""
        lab.a.exec("python3", "-c", script)
        time.sleep(1.0)
    finally:
        assert daemon.stop() == 0, daemon.stderr()
        daemon.close()
    segments = daemon.finished_segments()
    assert len(segments) >= 4, segments
    # Every segment after the first starts with the session's secrets in its head DSB (a TLS 1.3
    # record in mid-connection cannot be decrypted alone — its nonce counts the records before it —
    # but opened together with earlier segments, or exported, it can).
    first_head = None
    for segment in segments[1:]:
        head = head_key_log(run(["zstd", "-dc", segment], text=False).stdout)
        randoms = {line.split()[1] for line in head}
        assert randoms, f"{segment}: no secrets at the head"
        first_head = first_head or randoms
        assert first_head & randoms, f"{segment}: the keep-alive session's secrets are not at the head"
    exported = tmp_path / "export.pcapng"
    run([tlstap, "export", "--segment-dir", str(segment_dir), "-o", str(exported)])
    uris = decrypted_uris(str(exported))
    assert [f"/keepalive-{i}" for i in range(8)] == [u for u in uris if u.startswith("/keepalive-")], uris


def test_handshake_burst_decrypts_completely(tlstap, segment_dir, tls_lab, tmp_path):
    """1000 new TLS connections as fast as one client makes them: every one decrypts — from its segment,
    or, for the one a rotation cuts, from the export."""
    lab = tls_lab
    # Rotating every second puts several boundaries inside the burst, so the cut connections are
    # exercised every run, not only when a minute boundary happens to fall inside it.
    daemon = Daemon(tlstap, segment_dir, "--interfaces", "lab*", "--rotate-every", "1s", "--flush-every", "200ms",
                    env={"RUNTIME_DIRECTORY": str(tmp_path)})
    count = 1000
    try:
        daemon.wait_ready()
        start_nginx(lab)
        lab.a.exec("python3", "-c", f"""
import http.client, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
for i in range({count}):
    c = http.client.HTTPSConnection("{Lab.B_IP}", 443, context=ctx)
    c.request("GET", f"/burst-{{i}}", headers={{"Connection": "close"}}); c.getresponse().read(); c.close()
""", timeout=300)
        time.sleep(1.0)
    finally:
        assert daemon.stop() == 0, daemon.stderr()
        daemon.close()
    segments = daemon.finished_segments()
    found = set()
    for segment in segments:
        found.update(u for u in decrypted_uris(segment) if u.startswith("/burst-"))
    # Each segment on its own decrypts every connection it holds whole. A rotation inside the burst
    # cuts the one connection in flight (the client makes them one after another): its later part
    # cannot decrypt alone (Wireshark needs the handshake and every record before), but exported
    # together it does. So: at most one loss per boundary, none after export.
    cut = len(segments) - 1
    assert len(found) >= count - cut, f"{len(found)} of {count} connections decrypted in {len(segments)} segments"
    exported = tmp_path / "export.pcapng"
    run([tlstap, "export", "--segment-dir", str(segment_dir), "-o", str(exported)])
    found_exported = {u for u in decrypted_uris(str(exported)) if u.startswith("/burst-")}
    assert len(found_exported) == count, f"{len(found_exported)} of {count} connections decrypted from the export"


WHEEL = "psycopg2-binary==2.9.13"
WHEEL_CACHE = "/var/tmp/tlstap-tests/psycopg2-binary-2.9.13"


def wheel_site():
    """psycopg2-binary unpacked (it bundles its own OpenSSL 3.5 as psycopg2_binary.libs/libssl-<hash>.so)."""
    unpacked = os.path.join(WHEEL_CACHE, "unpacked")
    if not os.path.isdir(os.path.join(unpacked, "psycopg2")):
        os.makedirs(WHEEL_CACHE, exist_ok=True)
        run(["python3", "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version",
             "3.11", "--platform", "manylinux2014_x86_64", WHEEL, "-d", WHEEL_CACHE], timeout=180)
        wheel = next(f for f in os.listdir(WHEEL_CACHE) if f.endswith(".whl"))
        run(["python3", "-m", "zipfile", "-e", os.path.join(WHEEL_CACHE, wheel), unpacked])
    return unpacked


def test_wheel_bundled_libssl_loaded_after_start_decrypts(tlstap, segment_dir, tls_lab, tmp_path):
    """A libssl that is not the system one — psycopg2-binary's bundled OpenSSL 3.5 — dlopened late by a
    process that started after tlstap was ready: found when dlopen returns, hooked, and its session decrypts."""
    lab = tls_lab
    site = wheel_site()
    # Hourly rotation, as above: the query is judged from its segment alone.
    daemon = Daemon(tlstap, segment_dir, "--interfaces", "lab*", "--rotate-every", "1h", "--flush-every", "200ms",
                    env={"RUNTIME_DIRECTORY": str(tmp_path)})
    postgres = None
    try:
        daemon.wait_ready()
        postgres, _ = start_postgres(lab, tmp_path)
        # The import dlopens the bundled libssl 2.5 s after the process started — past the rescans
        # that follow an exec, long before the 30 s backstop: the dlopen uretprobe must find it, and
        # the connection 0.2 s later must be covered.
        lab.a.exec("python3", "-c", f"""
import sys, time
sys.path.insert(0, {site!r})
time.sleep(2.5)
import psycopg2
time.sleep(0.2)
with psycopg2.connect(host={Lab.B_IP!r}, user="postgres", dbname="postgres", sslmode="require") as c:
    c.cursor().execute("select 'tlstap-wheel-probe'")
""", timeout=60)
        time.sleep(1.0)
    finally:
        if postgres:
            postgres.terminate()
            postgres.wait()
        assert daemon.stop() == 0, daemon.stderr()
        daemon.close()
    assert "psycopg2_binary.libs/libssl" in daemon.stderr(), "the wheel's libssl was not found"
    queries = [q for segment in daemon.finished_segments() for q in decrypted_queries(segment)]
    assert any("tlstap-wheel-probe" in q for q in queries), f"query over the wheel's OpenSSL not decrypted: {queries}"
