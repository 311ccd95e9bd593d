"""Issue 4 acceptance: namespaces and interfaces created after `tlstap run` is ready are captured, and
what lands in the segments equals what tcpdump sees on the same interfaces — per interface and
direction: the same packets, the same bytes, timestamps within 1 ms, in time order."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import need, run
from daemon import Daemon
from lab import Lab, netns_inode
from pcapfile import interface_statistics, read_pcap


def tshark_fields(path, *fields, display_filter=None):
    cmd = ["tshark", "-r", path, "-T", "fields", "-E", "separator=|"]
    for field in fields:
        cmd += ["-e", field]
    if display_filter:
        cmd += ["-Y", display_filter]
    return [line.split("|") for line in run(cmd).stdout.splitlines()]


def start_tcpdumps(lab, directory):
    dumps = []
    for ns, ifname in lab.interfaces():
        for direction in ("in", "out"):
            path = os.path.join(directory, f"{ns.name}-{ifname}-{direction}.pcap")
            proc = ns.popen("tcpdump", "-i", ifname, "-Q", direction, "-s", "0", "-U", "-n",
                            "--time-stamp-precision=nano", "-w", path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            dumps.append((ns, ifname, direction, path, proc))
    for *_, proc in dumps:  # tcpdump says "listening on" once its socket is bound
        line = proc.stderr.readline()
        assert "listening" in line, line
    return dumps


def test_namespaces_created_after_ready_are_captured_like_tcpdump(tlstap, segment_dir, make_netns, tmp_path):
    need("tcpdump")
    need("tshark")
    # Only the lab's interfaces, so the test neither depends on nor disturbs the rest of the host.
    # Every copy on its own interface (--duplicates keep), to compare interface by interface.
    daemon = Daemon(tlstap, segment_dir, "--rotate-every", "1m", "--flush-every", "200ms", "--interfaces", "lab*",
                    "--duplicates", "keep", env={"RUNTIME_DIRECTORY": str(tmp_path)})
    try:
        daemon.wait_ready()
        lab = Lab(make_netns)          # made only now: tlstap must discover and attach live
        time.sleep(0.5)
        dumps = start_tcpdumps(lab, tmp_path)
        # Compare from here on: both tools are listening, and the packets the lab made while it was
        # being set up (before tcpdump started) are not tcpdump's to know.
        time.sleep(0.2)
        since_ns = time.time_ns()
        server = lab.b.popen("python3", "-m", "http.server", "--bind", "198.18.7.2", "18080",
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(50):
                if lab.a.exec("curl", "-s", "-o", "/dev/null", "http://198.18.7.2:18080/", check=False).returncode == 0:
                    break
                time.sleep(0.1)
            lab.a.exec("ping", "-c", "5", "-i", "0.05", "198.18.7.2")
            for _ in range(3):
                lab.a.exec("curl", "-sf", "-o", "/dev/null", "http://198.18.7.2:18080/")
        finally:
            server.terminate()
            server.wait()
        time.sleep(1.0)
        for *_, proc in dumps:
            proc.send_signal(signal.SIGINT)
            proc.wait(10)
        assert daemon.stop() == 0, daemon.stderr()
        segments = daemon.finished_segments()
        assert segments, "no finished segment"

        compared = 0
        for ns, ifname, direction, path, _ in dumps:
            expected = [p for p in read_pcap(path) if p[0] >= since_ns]
            name = f"netns:{netns_inode(ns.name)}/{ifname}"
            flag = 1 if direction == "in" else 2
            got = []
            for segment in segments:
                out = str(tmp_path / "extract.pcap")
                run(["tshark", "-r", segment, "-Y",
                     f'frame.interface_name == "{name}" && frame.packet_flags_direction == {flag}',
                     "-F", "nsecpcap", "-w", out])
                got += [p for p in read_pcap(out) if p[0] >= since_ns]
            assert len(got) == len(expected), (
                f"{name} {direction}: tlstap {len(got)} packets, tcpdump {len(expected)}\n{daemon.stderr()}")
            for (t_ts, t_len, t_data), (d_ts, d_len, d_data) in zip(got, expected):
                assert t_data == d_data and t_len == d_len, f"{name} {direction}: bytes differ"
                assert abs(t_ts - d_ts) < 1_000_000, f"{name} {direction}: time off by {abs(t_ts - d_ts)} ns"
            compared += len(expected)
        assert compared > 50, f"too little traffic compared ({compared})"

        # Each IDB names its namespace's origin (the test's `ip netns` name) in if_description.
        info = run(["capinfos", segments[0]]).stdout
        assert f"Description = ip netns {lab.a.name}" in info, info

        for segment in segments:
            times = [int(row[0].replace(".", "")) for row in tshark_fields(segment, "frame.time_epoch")]
            assert times == sorted(times), f"{segment}: packets out of time order"
    finally:
        daemon.close()


def tlstap_filters(ns=None):
    """Interfaces (in `ns`, or the host) that carry a tlstap tc filter, as 'ifname/direction'."""
    prefix = ["ip", "netns", "exec", ns.name] if ns else []
    links = run(prefix + ["ip", "-o", "link", "show"]).stdout.splitlines()
    found = []
    for line in links:
        ifname = line.split(":")[1].strip().split("@")[0]
        for direction in ("ingress", "egress"):
            shown = run(prefix + ["tc", "filter", "show", "dev", ifname, direction], check=False).stdout
            if "tlstap_" in shown:
                found.append(f"{ifname}/{direction}")
    return found


def wait_until(predicate, timeout=5.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_interfaces_and_namespaces_come_and_go_without_leaks(tlstap, segment_dir, make_netns, tmp_path):
    daemon = Daemon(tlstap, segment_dir, "--interfaces", "lab*", env={"RUNTIME_DIRECTORY": str(tmp_path)})
    try:
        daemon.wait_ready()
        ns = make_netns("labc")
        ns.exec("ip", "link", "add", "labx0", "type", "veth", "peer", "name", "labx1")
        ns.exec("ip", "link", "set", "labx0", "up")
        assert wait_until(lambda: "labx0/ingress" in tlstap_filters(ns), 1.0), "new interface not attached within 1 s"
        started = time.monotonic()
        ns.exec("ip", "link", "add", "laby0", "type", "veth", "peer", "name", "laby1")
        assert wait_until(lambda: {"laby0/ingress", "laby0/egress"} <= set(tlstap_filters(ns)), 1.0)
        print(f"attach latency (incl. polling tc): {(time.monotonic() - started) * 1000:.0f} ms")
        ns.exec("ip", "link", "del", "labx0")
        assert wait_until(lambda: not any(f.startswith("labx") for f in tlstap_filters(ns)))

        pid = daemon.process.pid
        time.sleep(0.5)
        baseline = fd_count(pid)
        for _ in range(50):
            cycle = make_netns("labd")
            cycle.exec("ip", "link", "add", "labz0", "type", "veth", "peer", "name", "labz1")
            cycle.delete()
        assert wait_until(lambda: fd_count(pid) <= baseline, 10.0), f"fds: {baseline} before, {fd_count(pid)} after"
        assert daemon.process.poll() is None, daemon.stderr()
        assert "error" not in daemon.stderr().lower(), daemon.stderr()
    finally:
        assert daemon.stop() == 0, daemon.stderr()
        daemon.close()
    left = tlstap_filters(ns)
    assert left == [], f"filters left after SIGTERM: {left}\n{daemon.stderr()}"


def test_no_stale_filters_after_kill_and_restart(tlstap, segment_dir, make_netns, tmp_path):
    ns = make_netns("labk")
    ns.exec("ip", "link", "add", "labk0", "type", "veth", "peer", "name", "labk1")
    ns.exec("ip", "link", "set", "labk0", "up")
    first = Daemon(tlstap, segment_dir, "--interfaces", "lab*", env={"RUNTIME_DIRECTORY": str(tmp_path)})
    try:
        first.wait_ready()
        assert "labk0/ingress" in tlstap_filters(ns)
        first.stop(signal.SIGKILL)
    finally:
        first.close()
    assert "labk0/ingress" in tlstap_filters(ns), "kill -9 should leave classic tc filters (the restart cleans them)"
    second = Daemon(tlstap, segment_dir, "--interfaces", "lab*", env={"RUNTIME_DIRECTORY": str(tmp_path)})
    try:
        second.wait_ready()
        assert "removed stale tlstap tc filters" in second.stderr()
    finally:
        assert second.stop() == 0
        second.close()
    assert tlstap_filters(ns) == [], "stale filters left after restart and SIGTERM"
    # The torn segment of the killed daemon was repaired into a finished one.
    assert not [f for f in os.listdir(segment_dir) if f.endswith(".partial")]


def test_ring_overflow_is_counted_in_isbs_and_status(tlstap, segment_dir, make_netns, tmp_path):
    """A flood larger than a deliberately tiny ring: the loss shows in the ISBs and in `tlstap status`."""
    ns = make_netns("labf")
    ns.exec("ip", "link", "add", "labf0", "type", "veth", "peer", "name", "labf1")
    ns.exec("ip", "addr", "add", "198.18.8.1/24", "dev", "labf0")
    ns.exec("ip", "link", "set", "labf0", "up")
    ns.exec("ip", "link", "set", "labf1", "up")
    ns.exec("ip", "neigh", "add", "198.18.8.2", "lladdr", "02:00:00:00:00:02", "dev", "labf0")  # no ARP wait
    env = {"RUNTIME_DIRECTORY": str(tmp_path)}
    daemon = Daemon(tlstap, segment_dir, "--interfaces", "labf0", "--ring-buffer-size", "64K", env=env)
    try:
        daemon.wait_ready()
        # Unanswered UDP into the veth as fast as one core can send: far more than 64 KiB of ring
        # can hold between two polls.
        ns.exec("python3", "-c", """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + 1.0
while time.monotonic() < end:
    for _ in range(100):
        s.sendto(b'x' * 200, ('198.18.8.2', 9))
""")
        time.sleep(1.5)  # the status file is refreshed once a second
        status = json.loads(run([tlstap, "status", "--json"], env={**os.environ, **env}).stdout)
        assert status["drops"] > 0, status
        ring_drops = [i["droppedByRing"] for n in status["namespaces"] for i in n["interfaces"] if i["name"].endswith("/labf0")]
        assert ring_drops and ring_drops[0] > 0, status
    finally:
        assert daemon.stop() == 0, daemon.stderr()
        daemon.close()
    segments = daemon.finished_segments()
    assert segments
    blob = run(["zstd", "-dc", segments[-1]], text=False).stdout
    stats = interface_statistics(blob)
    assert stats, "no ISB in the segment"
    dropped = sum(s["ifdrop"] or 0 for s in stats.values())
    received = sum(s["ifrecv"] or 0 for s in stats.values())
    assert dropped > 0, f"ring overflow not reported in ISBs: {stats}"
    assert received > dropped, stats


def test_default_records_each_packet_once_on_the_first_interface(tlstap, segment_dir, make_netns, tmp_path):
    """By default a packet that crosses A's veth, two bridge ports and B's veth is recorded once, on
    A's interface where it was first seen; what tcpdump sees on A's interface is all there."""
    daemon = Daemon(tlstap, segment_dir, "--interfaces", "lab*", env={"RUNTIME_DIRECTORY": str(tmp_path)})
    try:
        daemon.wait_ready()
        lab = Lab(make_netns)
        time.sleep(0.3)
        lab.a.exec("ping", "-c", "5", "-i", "0.05", Lab.B_IP)
        time.sleep(1.0)
    finally:
        assert daemon.stop() == 0, daemon.stderr()
        daemon.close()
    rows = [row for segment in daemon.finished_segments()
            for row in tshark_fields(segment, "icmp.type", "frame.interface_name", display_filter="icmp")]
    requests = [r for r in rows if r[0] == "8"]
    replies = [r for r in rows if r[0] == "0"]
    a_name = f"netns:{netns_inode(lab.a.name)}/labeth0"
    b_name = f"netns:{netns_inode(lab.b.name)}/labeth0"
    assert len(requests) == 5 and all(r[1] == a_name for r in requests), requests
    assert len(replies) == 5 and all(r[1] == b_name for r in replies), replies


def test_loopback_records_each_packet_once(tlstap, segment_dir, make_netns, tmp_path):
    """A packet on lo passes its egress and its ingress hook; the segment holds it once, as tcpdump shows it."""
    ns = make_netns("labl")
    daemon = Daemon(tlstap, segment_dir, "--interfaces", f"netns:{netns_inode(ns.name)}/lo",
                    env={"RUNTIME_DIRECTORY": str(tmp_path)})
    try:
        daemon.wait_ready()
        ns.exec("ping", "-c", "3", "-i", "0.05", "127.0.0.1")
        time.sleep(1.0)
    finally:
        assert daemon.stop() == 0, daemon.stderr()
        daemon.close()
    types = [row[0] for segment in daemon.finished_segments()
             for row in tshark_fields(segment, "icmp.type", display_filter="icmp")]
    assert sorted(types) == ["0"] * 3 + ["8"] * 3, types
