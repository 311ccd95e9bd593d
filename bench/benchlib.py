"""Shared pieces of the tlstap benchmarks: namespaces that are always removed, the daemon under test,
tcpdump|zstd as the baseline, per-process CPU/RSS/fd readings, and medians.

Everything a benchmark creates is registered with `cleanup` the moment it exists, and `cleanup` runs
on normal exit, on exceptions and on SIGTERM/SIGINT/SIGHUP, so a failed run leaves no namespace or
process behind. Names all start with `bn` (this bench's prefix); traffic stays in 198.18.0.0/15."""
import atexit
import json
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------------------------- cleanup

class Cleanup:
    """LIFO list of undo actions, run exactly once however the process ends."""

    def __init__(self):
        self.actions = []
        self.done = False
        atexit.register(self.run)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame):
        log(f"signal {signum}: cleaning up")
        self.run()
        os._exit(128 + signum)

    def push(self, description, action):
        self.actions.append((description, action))

    def run(self):
        if self.done:
            return
        self.done = True
        while self.actions:
            description, action = self.actions.pop()
            try:
                action()
            except Exception as error:  # cleanup must go on with the rest
                log(f"cleanup {description}: {error}")


cleanup = Cleanup()


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sh(*args, check=True, capture=True, timeout=120):
    result = subprocess.run(args, capture_output=capture, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout if capture else ""


def workdir(name):
    """A fresh scratch directory under /tmp, removed at exit unless BENCH_KEEP is set."""
    path = tempfile.mkdtemp(prefix=f"bn-{name}-", dir="/tmp")
    if not os.environ.get("BENCH_KEEP"):
        cleanup.push(f"remove {path}", lambda: shutil.rmtree(path, ignore_errors=True))
    return path


# ------------------------------------------------------------------------------------------- namespaces

def add_netns(name):
    assert name.startswith("bn"), name
    sh("ip", "netns", "add", name)
    cleanup.push(f"delete netns {name}", lambda: sh("ip", "netns", "del", name, check=False))
    sh("ip", "-n", name, "link", "set", "lo", "up")
    return name


def veth_between(ns_a, if_a, addr_a, ns_b, if_b, addr_b, prefix=30):
    """A veth pair with one end in each namespace (deleted with the namespaces)."""
    sh("ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
    for ns, ifname, addr in ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)):
        sh("ip", "-n", ns, "addr", "add", f"{addr}/{prefix}", "dev", ifname)
        sh("ip", "-n", ns, "link", "set", ifname, "up")


def link_bytes(ns, ifname):
    """rx+tx bytes of an interface: the traffic a capturer on it has to look at."""
    base = f"/sys/class/net/{ifname}/statistics/"
    out = sh("ip", "netns", "exec", ns, "cat", base + "rx_bytes", base + "tx_bytes")
    return sum(int(x) for x in out.split())


# -------------------------------------------------------------------------------------------- processes

class Proc:
    """A started process that is stopped at cleanup if still running."""

    def __init__(self, args, stop_signal=signal.SIGTERM, **popen):
        self.args = args
        self.popen = subprocess.Popen(args, **popen)
        self.pid = self.popen.pid
        self.stop_signal = stop_signal
        cleanup.push(f"stop {args[0]} {self.pid}", self.stop)

    def stop(self, timeout=20):
        if self.popen.poll() is None:
            self.popen.send_signal(self.stop_signal)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def stop_with_cpu(self, timeout=60):
        """Stops the process and reaps it with wait4, returning its final utime+stime (which /proc no
        longer shows once it has exited)."""
        if self.popen.returncode is not None:
            raise RuntimeError(f"{self.args[0]} {self.pid} already reaped; its CPU time is lost")
        if self.stop_signal:
            os.kill(self.pid, self.stop_signal)  # a zombie accepts signals; wait4 below reaps it
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.popen.returncode = os.waitstatus_to_exitcode(status)
                return usage.ru_utime + usage.ru_stime
            if time.monotonic() > deadline:
                self.popen.kill()
            time.sleep(0.02)


def cpu_seconds(pid):
    """utime+stime of all threads of pid (children not included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def context_switches(pid):
    """Voluntary + involuntary context switches summed over every thread of pid (each wakeup of a
    sleeping consumer thread is one voluntary switch)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Sampler:
    """CPU and RSS of some pids between start() and stop(): cpu seconds, cpu share of one core, peak RSS."""

    def __init__(self, pids):
        self.pids = list(pids)

    def start(self):
        self.t0 = time.monotonic()
        self.cpu0 = sum(cpu_seconds(p) for p in self.pids)
        self.peak_rss = sum(rss_bytes(p) for p in self.pids)
        self.switches0 = sum(context_switches(p) for p in self.pids)
        return self

    def poll(self):
        self.peak_rss = max(self.peak_rss, sum(rss_bytes(p) for p in self.pids))

    def stop(self, final_cpu=None):
        """final_cpu: total CPU seconds of the pids if they have already exited (from wait4)."""
        switches = None
        if final_cpu is None:
            self.poll()
            switches = sum(context_switches(p) for p in self.pids) - self.switches0
        wall = time.monotonic() - self.t0
        cpu = (final_cpu if final_cpu is not None else sum(cpu_seconds(p) for p in self.pids)) - self.cpu0
        return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "cpu_share": round(cpu / wall, 3),
                "rss_mb": round(self.peak_rss / 2**20, 1), "context_switches": switches}


# ----------------------------------------------------------------------------------------------- tlstap

class Tlstap:
    """`tlstap run` as a child with its own notify socket and runtime directory."""

    def __init__(self, binary, segment_dir, *args, runtime_dir=None):
        self.binary = binary
        self.segment_dir = segment_dir
        os.makedirs(segment_dir, exist_ok=True)
        self.runtime_dir = runtime_dir or tempfile.mkdtemp(prefix="bn-run-", dir="/tmp")
        cleanup.push("remove runtime dir", lambda: shutil.rmtree(self.runtime_dir, ignore_errors=True))
        notify_path = os.path.join(self.runtime_dir, "notify.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(notify_path)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path, RUNTIME_DIRECTORY=self.runtime_dir)
        env.pop("JOURNAL_STREAM", None)
        self.log_path = os.path.join(self.runtime_dir, "stderr.log")
        self.log = open(self.log_path, "w")
        self.args = [binary, "run", "--segment-dir", segment_dir, *args]
        self.t_start = time.monotonic()
        self.proc = Proc(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.popen.poll() is not None:
                raise RuntimeError(f"tlstap exited {self.proc.popen.returncode}:\n{self.stderr()[-3000:]}")
            self.notify.settimeout(0.2)
            try:
                data = self.notify.recv(65536).decode()
            except socket.timeout:
                continue
            if "READY=1" in data.splitlines():
                self.ready_after = time.monotonic() - self.t_start
                self._keep_draining()
                return self.ready_after
        raise RuntimeError(f"tlstap not ready within {timeout}s:\n{self.stderr()[-3000:]}")

    def _keep_draining(self):
        """Reads every later notification, as systemd would. An undrained notify socket fills after
        net.unix.max_dgram_qlen (10) datagrams and tlstap's next STATUS= send then blocks — in the
        pipeline thread, which stops capturing (seen 2026-11-25, reported)."""
        self.notifications = 0

        def drain():
            self.notify.settimeout(None)
            while True:
                try:
                    self.notify.recv(65536)
                    self.notifications += 1
                except OSError:
                    return

        threading.Thread(target=drain, daemon=True).start()

    def status(self):
        with open(os.path.join(self.runtime_dir, "status.json")) as f:
            return json.load(f)

    def fresh_status(self, timeout=5):
        """A status written after this call (the daemon refreshes it about once a second)."""
        path = os.path.join(self.runtime_dir, "status.json")
        try:
            before = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            before = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if os.stat(path).st_mtime_ns != before:
                    return self.status()
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        return self.status()

    def stderr(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        rc = self.proc.stop(timeout=60)
        try:
            self.notify.shutdown(socket.SHUT_RDWR)  # wakes the drain thread's recv
        except OSError:
            pass
        self.notify.close()
        if rc != 0:
            log(f"tlstap exited {rc}: {self.stderr()[-2000:]}")
        return rc


def status_counters(status):
    """packets, bytes, drops (total and per-interface ring/tapper) from a status dict."""
    ring = sum(i["droppedByRing"] for n in status["namespaces"] for i in n["interfaces"])
    tapper = sum(i["droppedByTapper"] for n in status["namespaces"] for i in n["interfaces"])
    interfaces = sum(len(n["interfaces"]) for n in status["namespaces"])
    return {"packets": status["packets"], "bytes": status["bytes"], "drops": status["drops"],
            "ring_drops": ring, "tapper_drops": tapper, "interfaces": interfaces,
            "sessions": status["sessions"], "keys": status["keys"], "late_keys": status.get("lateKeys", 0)}


def libraries_summary(status):
    libs = status.get("libraries", [])
    if not libs:
        return "none (no libssl uprobes: capture only)"
    return "; ".join(f"{l['path']} [{l['kind']}, {l['version']}]: {l['state']}" for l in libs)


def segments(segment_dir):
    return sorted(os.path.join(segment_dir, f) for f in os.listdir(segment_dir) if f.endswith(".pcapng.zst"))


def segment_bytes(segment_dir):
    return sum(os.path.getsize(p) for p in segments(segment_dir))


# ------------------------------------------------------------------------------------- tcpdump | zstd

class TcpdumpZstd:
    """`tcpdump -i IF -s SNAP -w - | zstd -3 > FILE` in a namespace, as two processes we can measure."""

    def __init__(self, ns, ifname, out_path, snaplen=262144, level=3):
        self.out_path = out_path
        self.err_path = out_path + ".stderr"
        self.err = open(self.err_path, "w")
        self.out = open(out_path, "wb")
        self.tcpdump = Proc(["ip", "netns", "exec", ns, "tcpdump", "-n", "-i", ifname, "-s", str(snaplen),
                             "-w", "-"], stop_signal=signal.SIGINT, stdout=subprocess.PIPE, stderr=self.err)
        self.zstd = Proc(["zstd", f"-{level}", "-q", "-c"], stdin=self.tcpdump.popen.stdout, stdout=self.out)
        self.tcpdump.popen.stdout.close()
        self.pids = [self.tcpdump.pid, self.zstd.pid]
        deadline = time.monotonic() + 10
        while "listening on" not in open(self.err_path).read():
            if time.monotonic() > deadline or self.tcpdump.popen.poll() is not None:
                raise RuntimeError(f"tcpdump did not start: {open(self.err_path).read()}")
            time.sleep(0.05)

    def stop(self):
        """Stops tcpdump (SIGINT makes it print its counters), lets zstd finish; returns the counters
        and the final CPU seconds of both processes."""
        cpu = self.tcpdump.stop_with_cpu()
        self.zstd.stop_signal = 0  # zstd ends by itself at the end of its input
        cpu += self.zstd.stop_with_cpu()
        self.out.close()
        self.err.close()
        text = open(self.err_path).read()
        counters = {}
        for key, pattern in (("captured", r"(\d+) packets captured"), ("received", r"(\d+) packets received by filter"),
                             ("dropped", r"(\d+) packets dropped by kernel")):
            match = re.search(pattern, text)
            counters[key] = int(match.group(1)) if match else None
        counters["file_bytes"] = os.path.getsize(self.out_path)
        counters["cpu_total_s"] = cpu
        return counters


# -------------------------------------------------------------------------------------------------- wrk

def parse_duration_ms(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(ns, url, seconds, connections, threads=1, headers=()):
    args = ["ip", "netns", "exec", ns, "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
            "--latency", "--timeout", "5s"]
    for header in headers:
        args += ["-H", header]
    out = sh(*args, url, timeout=seconds + 30)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = parse_duration_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p99_ms": p99, "requests": total,
            "socket_errors": errors.group(1) if errors else "", "non2xx": int(non2xx.group(1)) if non2xx else 0}


# ------------------------------------------------------------------------------------------------ nginx

def self_signed_cert(directory):
    key, cert = os.path.join(directory, "key.pem"), os.path.join(directory, "cert.pem")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", key, "-out", cert, "-subj", "/CN=bench.tlstap", "-days", "2")
    return key, cert


def start_nginx(ns, directory, address, port=443, access_log=None):
    """nginx with one worker, keep-alive HTTPS with a tiny body; no session resumption, so every new
    connection is a full handshake."""
    os.makedirs(directory, exist_ok=True)
    key, cert = self_signed_cert(directory)
    for sub in ("logs", "tmp"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
    conf = os.path.join(directory, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
user root;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {access_log + ' combined' if access_log else 'off'};
    client_body_temp_path {directory}/tmp/body;
    proxy_temp_path {directory}/tmp/proxy;
    fastcgi_temp_path {directory}/tmp/fastcgi;
    uwsgi_temp_path {directory}/tmp/uwsgi;
    scgi_temp_path {directory}/tmp/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    server {{
        listen {address}:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_session_cache off;
        ssl_session_tickets off;
        location / {{ return 200 "hello from the tlstap bench\\n"; }}
    }}
}}
""")
    proc = Proc(["ip", "netns", "exec", ns, "nginx", "-p", directory, "-c", conf, "-g", "daemon off;"],
                stop_signal=signal.SIGQUIT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        probe = subprocess.run(["ip", "netns", "exec", ns, "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                                f"https://{address}:{port}/"], capture_output=True, text=True)
        if probe.stdout == "200":
            return proc
        if time.monotonic() > deadline or proc.popen.poll() is not None:
            raise RuntimeError(f"nginx did not come up: {open(directory + '/logs/error.log').read()}")
        time.sleep(0.1)


def foreign_uprobes(own_pid=None):
    """uprobes that processes other than our tlstap hold right now (other engineers' tlstap tests on a
    shared machine): they slow every libssl user, our 'bare' runs included. Count of attachments."""
    try:
        entries = json.loads(sh("bpftool", "perf", "list", "--json", check=False) or "[]")
    except (ValueError, RuntimeError):
        return None
    return sum(1 for e in entries if e.get("fd_type", "").startswith("uprobe") or e.get("fd_type") == "uretprobe"
               if e.get("pid") != own_pid)


class BpfStats:
    """kernel.bpf_stats_enabled=1 for as long as this is open (restored at cleanup): the kernel then
    counts run_cnt/run_time_ns per BPF program. A diagnostic only — it slows every BPF program a little."""

    def __init__(self):
        with open("/proc/sys/kernel/bpf_stats_enabled") as f:
            self.previous = f.read().strip()
        self._write("1")
        cleanup.push("restore kernel.bpf_stats_enabled", self.close)

    def _write(self, value):
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write(value)

    def close(self):
        self._write(self.previous)

    @staticmethod
    def tc_program_ids(ns, ifname):
        ids = []
        for direction in ("ingress", "egress"):
            out = sh("tc", "-n", ns, "filter", "show", "dev", ifname, direction, check=False)
            ids += [int(m) for m in re.findall(r" id (\d+)", out)]
        return ids

    @staticmethod
    def read(ids):
        runs = ns = 0
        for prog_id in ids:
            info = json.loads(sh("bpftool", "prog", "show", "id", str(prog_id), "--json"))
            runs += info.get("run_cnt", 0)
            ns += info.get("run_time_ns", 0)
        return runs, ns


# ------------------------------------------------------------------------------------- pcapng / tshark

def isb_drops(segment_paths):
    """Sum over segments of the last ISB ifdrop+osdrop of each interface (streams `zstd -dc`)."""
    total = {"ifdrop": 0, "osdrop": 0, "isbs": 0}
    for path in segment_paths:
        per_interface = {}
        proc = subprocess.Popen(["zstd", "-dc", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        stream = proc.stdout
        while True:
            head = stream.read(8)
            if len(head) < 8:
                break
            block_type, length = struct.unpack("<II", head)
            body = stream.read(length - 8)
            if block_type != 5:
                continue
            (interface_id,) = struct.unpack("<I", body[:4])
            offset, counters = 12, {}
            while offset + 4 <= len(body) - 4:
                code, size = struct.unpack("<HH", body[offset:offset + 4])
                if code == 0:
                    break
                if code in (5, 7) and size == 8:
                    counters[code] = struct.unpack("<Q", body[offset + 4:offset + 12])[0]
                offset += 4 + ((size + 3) & ~3)
            per_interface[interface_id] = counters
            total["isbs"] += 1
        proc.wait()
        for counters in per_interface.values():
            total["ifdrop"] += counters.get(5, 0)
            total["osdrop"] += counters.get(7, 0)
    return total


def tshark_count(path, display_filter, timeout=600):
    out = sh("tshark", "-n", "-r", path, "-Y", display_filter, "-T", "fields", "-e", "frame.number",
             check=False, timeout=timeout)
    return sum(1 for line in out.splitlines() if line.strip())


# ------------------------------------------------------------------------------------------------ stats

def median(values):
    return statistics.median(values) if values else None


def ratio(a, b):
    return round(a / b, 4) if a is not None and b else None


def emit(result, path=None):
    """Prints the result as one JSON document on stdout (what run-all.sh collects)."""
    text = json.dumps(result, indent=1, sort_keys=True)
    print(text, flush=True)
    if path:
        with open(path, "w") as f:
            f.write(text)


def binary_from_argv():
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        sys.exit(f"usage: {sys.argv[0]} /abs/path/to/tlstap [result.json]")
    return sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)


# ------------------------------------------------------------------------------------------------- labs

def two_namespace_lab(tag, subnet_index):
    """Namespaces bn-TAG-srv and bn-TAG-cli joined by veth bnTAGs (server end) / bnTAGc (client end),
    addresses 198.18.0.(4k+1) and (4k+2)."""
    server_ns, client_ns = add_netns(f"bn-{tag}-srv"), add_netns(f"bn-{tag}-cli")
    server_if, client_if = f"bn{tag}s", f"bn{tag}c"
    server_ip, client_ip = f"198.18.0.{4 * subnet_index + 1}", f"198.18.0.{4 * subnet_index + 2}"
    veth_between(server_ns, server_if, server_ip, client_ns, client_if, client_ip)
    return {"server_ns": server_ns, "client_ns": client_ns, "server_if": server_if, "client_if": client_if,
            "server_ip": server_ip, "client_ip": client_ip}


def interleaved(modes, rounds):
    """Round r runs the modes forwards when r is even and backwards when odd (A B C, C B A, …), so slow
    drifts of the machine hit every mode alike."""
    for r in range(rounds):
        yield r, (modes if r % 2 == 0 else list(reversed(modes)))
