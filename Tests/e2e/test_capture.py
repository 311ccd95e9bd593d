"""Issue 4 acceptance: namespaces and interfaces created after `tlstap run` is ready are captured, and
what lands in the segments equals what tcpdump sees on the same interfaces — per interface and
direction: the same packets, the same bytes, timestamps within 1 ms, in time order."""
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import need, run
from daemon import Daemon
from pcapfile import read_pcap


def tshark_fields(path, *fields, display_filter=None):
    cmd = ["tshark", "-r", path, "-T", "fields", "-E", "separator=|"]
    for field in fields:
        cmd += ["-e", field]
    if display_filter:
        cmd += ["-Y", display_filter]
    return [line.split("|") for line in run(cmd).stdout.splitlines()]


def netns_inode(name):
    return os.stat(f"/run/netns/{name}").st_ino


class Lab:
    """Two hosts (A, B) on a bridge that lives in a third namespace, all made by the test."""

    def __init__(self, make_netns):
        self.a, self.b, self.switch = make_netns("laba"), make_netns("labb"), make_netns("labs")
        self.switch.exec("ip", "link", "add", "labbr0", "type", "bridge")
        for host, ip in ((self.a, "198.18.7.1"), (self.b, "198.18.7.2")):
            for ns in (host, self.switch):
                ns.exec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
                ns.exec("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            peer = f"labp{host.name[-6:]}"
            host.exec("ip", "link", "add", "labeth0", "type", "veth", "peer", "name", peer, "netns", self.switch.name)
            host.exec("ip", "addr", "add", f"{ip}/24", "dev", "labeth0")
            host.exec("ip", "link", "set", "labeth0", "up")
            self.switch.exec("ip", "link", "set", peer, "master", "labbr0")
            self.switch.exec("ip", "link", "set", peer, "up")
        self.switch.exec("ip", "link", "set", "labbr0", "up")

    def interfaces(self):
        """(netns, ifname) for every interface the traffic crosses."""
        ports = [line.split(":")[1].strip().split("@")[0]
                 for line in self.switch.exec("ip", "-o", "link", "show", "master", "labbr0").stdout.splitlines()]
        return [(self.a, "labeth0"), (self.b, "labeth0"), (self.switch, "labbr0")] + [(self.switch, p) for p in ports]


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
    daemon = Daemon(tlstap, segment_dir, "--rotate-every", "1m", "--flush-every", "200ms", "--interfaces", "lab*",
                    env={"RUNTIME_DIRECTORY": str(tmp_path)})
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

        for segment in segments:
            times = [int(row[0].replace(".", "")) for row in tshark_fields(segment, "frame.time_epoch")]
            assert times == sorted(times), f"{segment}: packets out of time order"
    finally:
        daemon.close()
