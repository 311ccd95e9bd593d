#!/usr/bin/env python3
"""Benchmark 1 — what watching costs an HTTPS service.

nginx (1 worker, keep-alive HTTPS, self-signed P-256 cert) in bn-h-srv, wrk (1 thread) in bn-h-cli.
Four modes, interleaved A B C D / D C B A for BENCH_ROUNDS rounds of BENCH_SECONDS each:
  bare       nothing watching
  busy-loop  a process spinning ~0.17 of a core, capturing nothing (a calibration, below)
  tcpdump    tcpdump -i bnhs -w - | zstd -3 > file   (in the server namespace)
  tlstap     tlstap run --interfaces bnhs             (capture + whatever key capture the binary has)
Reports requests/s and p99 per run, medians, and ratios to bare. Also the CPU/RSS of the watcher under
this load, and keeps nothing on disk.

With BENCH_BASELINE=/abs/path/other-tlstap a fifth mode, `baseline`, runs that binary the same way in
the same rounds: a before/after of a change measured side by side rather than across runs.

The mode `busy-loop` is a calibration: no capture at all, just a process spinning 1 ms out of every
5.5 ms (~0.17 of a core, about what tlstap uses here). What it costs the service is what any watcher
with that CPU would cost on this machine, whatever it does with the CPU.

usage: https_cost.py /abs/path/tlstap [result.json]"""
import json
import os

from benchlib import (foreign_uprobes, sh, BpfStats, Proc, Sampler, context_switches, TcpdumpZstd, Tlstap, binary_from_argv, emit, interleaved, libraries_summary, log,
                      median, ratio, start_nginx, status_counters, two_namespace_lab, workdir, wrk, isb_drops,
                      segments, segment_bytes)

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
BASELINE = os.environ.get("BENCH_BASELINE")
BUSY_LOOP = ("import time\n"
             "while True:\n"
             "    end = time.perf_counter() + 0.001\n"
             "    while time.perf_counter() < end: pass\n"
             "    time.sleep(0.0045)\n")


def main():
    binary, out = binary_from_argv()
    scratch = workdir("https")
    lab = two_namespace_lab("h", 0)
    nginx = start_nginx(lab["server_ns"], os.path.join(scratch, "nginx"), lab["server_ip"])
    url = f"https://{lab['server_ip']}/"
    log(f"warm-up wrk {url}")
    wrk(lab["client_ns"], url, 2, CONNECTIONS)

    runs = []
    libraries = None
    tlstap_modes = {"tlstap": binary, **({"baseline": BASELINE} if BASELINE else {})}
    for r, modes in interleaved(["bare", "busy-loop", "tcpdump", *tlstap_modes], ROUNDS):
        for mode in modes:
            run = {"round": r, "mode": mode}
            watcher = None
            if mode == "busy-loop":
                watcher = Proc(["python3", "-c", BUSY_LOOP])
                pids = [watcher.pid]
            elif mode == "tcpdump":
                watcher = TcpdumpZstd(lab["server_ns"], lab["server_if"], os.path.join(scratch, f"td{r}.pcap.zst"))
                pids = watcher.pids
            elif mode in tlstap_modes:
                segdir = os.path.join(scratch, f"seg{r}")
                watcher = Tlstap(tlstap_modes[mode], segdir, "--interfaces", lab["server_if"])
                run["ready_s"] = round(watcher.wait_ready(), 3)
                pids = [watcher.pid]
            sampler = Sampler(pids).start() if watcher else None
            run["foreign_uprobes"] = foreign_uprobes(watcher.pid if mode in tlstap_modes else None)
            run.update(wrk(lab["client_ns"], url, SECONDS, CONNECTIONS))
            if mode in tlstap_modes or mode == "busy-loop":
                run["watcher"] = sampler.stop()
            if mode == "busy-loop":
                watcher.stop()
            if mode == "tcpdump":
                sampler.poll()
                run["tcpdump"] = watcher.stop()
                run["watcher"] = sampler.stop(final_cpu=run["tcpdump"]["cpu_total_s"])
                os.unlink(watcher.out_path)
            elif mode in tlstap_modes:
                status = watcher.fresh_status()
                run["tlstap"] = status_counters(status)
                if mode == "tlstap":
                    libraries = libraries_summary(status)
                watcher.stop()
                run["tlstap"]["segment_bytes"] = segment_bytes(segdir)
                run["tlstap"]["isb"] = isb_drops(segments(segdir))
                for path in segments(segdir):
                    os.unlink(path)
            log(f"round {r} {mode}: {run['rps']:.0f} req/s p99 {run['p99_ms']:.2f} ms"
                + (f" watcher {run['watcher']}" if "watcher" in run else ""))
            runs.append(run)

    diagnostics = diagnose(binary, lab, url, scratch) if os.environ.get("BENCH_DIAGNOSE", "1") == "1" else None

    summary = {}
    for mode in ("bare", "busy-loop", "tcpdump", *tlstap_modes):
        mine = [x for x in runs if x["mode"] == mode]
        summary[mode] = {"rps_median": median([x["rps"] for x in mine]),
                         "p99_ms_median": median([x["p99_ms"] for x in mine])}
        if mode != "bare":
            summary[mode]["watcher_cpu_share_median"] = median([x["watcher"]["cpu_share"] for x in mine])
            summary[mode]["watcher_rss_mb_max"] = max(x["watcher"]["rss_mb"] for x in mine)
    bare = summary["bare"]
    for mode in ("busy-loop", "tcpdump", *tlstap_modes):
        summary[mode]["rps_vs_bare"] = ratio(summary[mode]["rps_median"], bare["rps_median"])
        summary[mode]["p99_vs_bare"] = ratio(summary[mode]["p99_ms_median"], bare["p99_ms_median"])
    # Per-round pairing: each tlstap run against the bare run of the same round (robust to drift).
    paired = []
    for r in range(ROUNDS):
        by_mode = {x["mode"]: x for x in runs if x["round"] == r}
        paired.append(ratio(by_mode["tlstap"]["rps"], by_mode["bare"]["rps"]))
    summary["tlstap"]["rps_vs_bare_per_round"] = paired
    summary["tlstap_vs_tcpdump_rps"] = ratio(summary["tlstap"]["rps_median"], summary["tcpdump"]["rps_median"])
    if BASELINE:
        summary["tlstap_vs_baseline_rps"] = ratio(summary["tlstap"]["rps_median"], summary["baseline"]["rps_median"])
    summary["target_met"] = bool(summary["tlstap"]["rps_vs_bare"] >= 0.97
                                 and summary["tlstap"]["rps_median"] > summary["tcpdump"]["rps_median"])
    emit({"benchmark": "https_cost", "rounds": ROUNDS, "seconds": SECONDS, "connections": CONNECTIONS,
          "libraries": libraries, "commands": {
              "server": "nginx worker_processes 1, keep-alive HTTPS, return 200 (29 bytes), TLS 1.3 P-256",
              "load": f"wrk -t1 -c{CONNECTIONS} -d{SECONDS}s --latency {url}",
              "busy-loop": "python3: spin 1 ms, sleep 4.5 ms, forever (no capture; a CPU calibration)",
              "tcpdump": f"tcpdump -n -i {lab['server_if']} -s 262144 -w - | zstd -3 -q -c > file",
              "tlstap": f"tlstap run --segment-dir DIR --interfaces {lab['server_if']}",
              **({"baseline": f"{BASELINE} run --segment-dir DIR --interfaces {lab['server_if']}"} if BASELINE else {})},
          "runs": runs, "summary": summary, "diagnostics": diagnostics}, out)


def own_uprobe_program_ids(pid):
    """BPF programs behind the uprobes tlstap holds (its key capture), from `bpftool perf list`."""
    entries = json.loads(sh("bpftool", "perf", "list", "--json", check=False) or "[]")
    return sorted({e["prog_id"] for e in entries if e.get("pid") == pid and "uprobe" in e.get("fd_type", "")})


def diagnose_tlstap(binary, lab, url, segdir):
    """tlstap's CPU and context switches per packet, its tc programs' kernel run time and its uprobes'."""
    stats = BpfStats()
    try:
        tap = Tlstap(binary, segdir, "--interfaces", lab["server_if"])
        tap.wait_ready()
        ids = BpfStats.tc_program_ids(lab["server_ns"], lab["server_if"])
        runs0, ns0 = BpfStats.read(ids)
        uprobe_ids = own_uprobe_program_ids(tap.pid)
        uruns0, uns0 = BpfStats.read(uprobe_ids)
        before = status_counters(tap.fresh_status())
        sampler = Sampler([tap.pid]).start()
        load = wrk(lab["client_ns"], url, SECONDS, CONNECTIONS)
        used = sampler.stop()
        runs1, ns1 = BpfStats.read(ids)
        uruns1, uns1 = BpfStats.read(uprobe_ids)
        after = status_counters(tap.fresh_status())
        tap.stop()
    finally:
        stats.close()
    packets = max(1, after["packets"] - before["packets"])
    for path in segments(segdir):
        os.unlink(path)
    return {"rps": load["rps"], "packets": packets, "cpu_s": used["cpu_s"],
            "cpu_us_per_packet": round(used["cpu_s"] * 1e6 / packets, 2),
            "context_switches": used["context_switches"],
            "context_switches_per_1000_packets": round(used["context_switches"] * 1000 / packets, 1),
            "bpf_program_ids": ids, "bpf_runs": runs1 - runs0,
            "bpf_ns_per_run": round((ns1 - ns0) / max(1, runs1 - runs0), 1),
            "bpf_cpu_s": round((ns1 - ns0) / 1e9, 3),
            "uprobe_programs": len(uprobe_ids), "uprobe_runs": uruns1 - uruns0,
            "uprobe_runs_per_request": round((uruns1 - uruns0) / max(1, load["requests"]), 4),
            "uprobe_ns_per_run": round((uns1 - uns0) / max(1, uruns1 - uruns0), 1)}


def diagnose(binary, lab, url, scratch):
    """One extra run of each watcher (not in the medians) that says where the cost goes: watcher CPU
    and context switches per captured packet, and — for tlstap — the kernel's own run time of the tc
    programs (kernel.bpf_stats_enabled, switched on only for this run)."""
    result = {}
    watcher = TcpdumpZstd(lab["server_ns"], lab["server_if"], os.path.join(scratch, "diag.pcap.zst"))
    sampler = Sampler(watcher.pids).start()
    load = wrk(lab["client_ns"], url, SECONDS, CONNECTIONS)
    switches = sum(context_switches(p) for p in watcher.pids) - sampler.switches0
    sampler.poll()
    counters = watcher.stop()
    used = sampler.stop(final_cpu=counters["cpu_total_s"])
    os.unlink(watcher.out_path)
    packets = counters["captured"] or 1
    result["tcpdump"] = {"rps": load["rps"], "packets": counters["captured"], "cpu_s": used["cpu_s"],
                         "cpu_us_per_packet": round(used["cpu_s"] * 1e6 / packets, 2),
                         "context_switches": switches,
                         "context_switches_per_1000_packets": round(switches * 1000 / packets, 1)}
    segdir = os.path.join(scratch, "seg-diag")
    for mode, path in (("tlstap", binary), *((("baseline", BASELINE),) if BASELINE else ())):
        result[mode] = diagnose_tlstap(path, lab, url, segdir)
    log(f"diagnostics: {result}")
    return result


if __name__ == "__main__":
    main()
