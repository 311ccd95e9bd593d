#!/usr/bin/env python3
"""Benchmark 5 — scale of discovery: BENCH_NAMESPACES (200) network namespaces, each with one veth pair
(both ends inside it, up), created in one burst while tlstap --interfaces 'bnd*' runs.

Measured: how long the burst itself takes (`ip -batch`), the time from the start of the burst until
`status.json` lists every veth end (2 per namespace; status is refreshed about once a second, so
±1 s), cross-checked with `tc filter show dev X ingress` in a sample of namespaces; tlstap RSS and open
fds before and after, per namespace; then the same for deleting them all (detach time, and whether
memory and fds come back).

usage: discovery_scale.py /abs/path/tlstap [result.json]"""
import os
import subprocess
import time

from benchlib import (Tlstap, binary_from_argv, cleanup, emit, fd_count, log, rss_bytes, sh, workdir)

COUNT = int(os.environ.get("BENCH_NAMESPACES", "200"))
TIMEOUT = float(os.environ.get("BENCH_DISCOVERY_TIMEOUT", "120"))
DETACH_TIMEOUT = float(os.environ.get("BENCH_DETACH_TIMEOUT", "20"))
CYCLES = int(os.environ.get("BENCH_DISCOVERY_CYCLES", "3"))  # create+delete bursts; >1 tells caching from leaks


def names(i):
    return f"bn-d-{i:03d}", f"bnd{i:03d}a", f"bnd{i:03d}b"


def ip_batch(lines):
    subprocess.run(["ip", "-force", "-batch", "-"], input="\n".join(lines) + "\n", text=True, check=False,
                   capture_output=True, timeout=300)


def create_all():
    lines = []
    for i in range(COUNT):
        ns, a, b = names(i)
        lines += [f"netns add {ns}", f"link add {a} netns {ns} type veth peer name {b} netns {ns}",
                  f"netns exec {ns} ip link set {a} up", f"netns exec {ns} ip link set {b} up"]
    ip_batch(lines)


def delete_all():
    ip_batch([f"netns del {names(i)[0]}" for i in range(COUNT)
              if os.path.exists(f"/run/netns/{names(i)[0]}")])


def attached_count(tap):
    status = tap.fresh_status(timeout=3)
    return sum(1 for n in status["namespaces"] for i in n["interfaces"] if "/bnd" in i["name"]), status


def wait_count(tap, want, t0, timeout=TIMEOUT):
    """Seconds from t0 until the status shows `want` of our interfaces (None on timeout), and the
    (time, count) trace."""
    trace = []
    while time.monotonic() - t0 < timeout:
        count, _ = attached_count(tap)
        trace.append((round(time.monotonic() - t0, 2), count))
        if count == want:
            return trace[-1][0], trace
    return None, trace


def memory(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads"):
                fields[key] = int(value.split()[0])
    return {"rss_kb": fields.get("VmRSS"), "anon_kb": fields.get("RssAnon"), "file_kb": fields.get("RssFile"),
            "shmem_kb": fields.get("RssShmem"), "threads": fields.get("Threads"), "fds": fd_count(pid)}


def tc_attached(sample):
    """How many of a sample of namespaces have a tc ingress filter on their first veth end."""
    hits = 0
    for i in sample:
        ns, a, _ = names(i)
        if sh("tc", "-n", ns, "filter", "show", "dev", a, "ingress", check=False).strip():
            hits += 1
    return hits


def main():
    binary, out = binary_from_argv()
    scratch = workdir("discovery")
    cleanup.push(f"delete {COUNT} bn-d-* namespaces", delete_all)
    tap = Tlstap(binary, os.path.join(scratch, "seg"), "--interfaces", "bnd*")
    tap.wait_ready()
    time.sleep(2)
    before = memory(tap.pid)

    t0 = time.monotonic()
    create_all()
    burst_s = round(time.monotonic() - t0, 2)
    log(f"created {COUNT} namespaces in {burst_s} s")
    attach_s, attach_trace = wait_count(tap, 2 * COUNT, t0)
    log(f"all {2 * COUNT} interfaces attached after {attach_s} s")
    time.sleep(2)
    after = memory(tap.pid)
    sample = list(range(0, COUNT, max(1, COUNT // 20)))
    tc_ok = tc_attached(sample)
    _, status = attached_count(tap)
    per_namespace = {key: round((after[key] - before[key]) / COUNT, 2)
                     for key in ("rss_kb", "anon_kb", "file_kb", "shmem_kb", "fds")}

    t1 = time.monotonic()
    delete_all()
    delete_burst_s = round(time.monotonic() - t1, 2)
    detach_s, detach_trace = wait_count(tap, 0, t1, timeout=DETACH_TIMEOUT)
    time.sleep(2)
    after_delete = memory(tap.pid)
    log(f"deleted in {delete_burst_s} s, status empty after {detach_s} s; memory {after_delete}")
    repeats = []
    for cycle in range(2, CYCLES + 1):
        t2 = time.monotonic()
        create_all()
        attached, _ = wait_count(tap, 2 * COUNT, t2)
        t3 = time.monotonic()
        delete_all()
        detached, trace = wait_count(tap, 0, t3, timeout=DETACH_TIMEOUT)
        time.sleep(2)
        _, status = attached_count(tap)
        left = sorted(i["name"] for n in status["namespaces"] for i in n["interfaces"] if "/bnd" in i["name"])
        repeats.append(dict(memory(tap.pid), cycle=cycle, all_attached_s=attached, all_detached_s=detached,
                            still_listed_after_delete=left[:10], still_listed_count=len(left),
                            namespaces_in_status=len(status["namespaces"])))
        log(f"cycle {cycle}: attached after {attached} s, detached after {detached} s, memory {repeats[-1]}")
    rc = tap.stop()

    emit({"benchmark": "discovery_scale", "namespaces": COUNT,
          "commands": {"tlstap": "tlstap run --segment-dir DIR --interfaces 'bnd*'",
                       "burst": f"ip -force -batch - (netns add; link add A netns NS type veth peer name B netns NS;"
                                f" netns exec NS ip link set A/B up) x {COUNT}"},
          "create_burst_s": burst_s, "all_attached_s": attach_s, "attach_trace": attach_trace[-15:],
          "tc_filter_present_in_sample": f"{tc_ok}/{len(sample)}",
          "namespaces_in_status": len(status["namespaces"]),
          "memory_before": before, "memory_after": after, "per_namespace": per_namespace,
          "delete_burst_s": delete_burst_s, "all_detached_s": detach_s, "memory_after_delete": after_delete,
          "repeat_cycles": repeats, "tlstap_exit": rc, "summary": {
              "rss_mb_after_each_delete_vs_before": [round((m["rss_kb"] - before["rss_kb"]) / 1024, 1)
                                                     for m in [after_delete] + repeats],
              "fds_after_each_delete_vs_before": [m["fds"] - before["fds"] for m in [after_delete] + repeats],
              "all_attached_s": attach_s, "rss_kb_per_namespace": per_namespace["rss_kb"],
              "fds_per_namespace": per_namespace["fds"], "all_detached_s": detach_s,
              "rss_mb_after_delete_vs_before": round((after_delete["rss_kb"] - before["rss_kb"]) / 1024, 1),
              "fds_after_delete_vs_before": after_delete["fds"] - before["fds"]}}, out)


if __name__ == "__main__":
    main()
