#!/usr/bin/env python3
"""Benchmark 1 — what watching costs an HTTPS service.

nginx (1 worker, keep-alive HTTPS, self-signed P-256 cert) in bn-h-srv, wrk (1 thread) in bn-h-cli.
Three modes, interleaved A B C / C B A for BENCH_ROUNDS rounds of BENCH_SECONDS each:
  bare     nothing watching
  tcpdump  tcpdump -i bnhs -w - | zstd -3 > file   (in the server namespace)
  tlstap   tlstap run --interfaces bnhs             (capture + whatever key capture the binary has)
Reports requests/s and p99 per run, medians, and ratios to bare. Also the CPU/RSS of the watcher under
this load, and keeps nothing on disk.

usage: https_cost.py /abs/path/tlstap [result.json]"""
import os

from benchlib import (Sampler, TcpdumpZstd, Tlstap, binary_from_argv, emit, interleaved, libraries_summary, log,
                      median, ratio, start_nginx, status_counters, two_namespace_lab, workdir, wrk, isb_drops,
                      segments, segment_bytes)

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))


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
    for r, modes in interleaved(["bare", "tcpdump", "tlstap"], ROUNDS):
        for mode in modes:
            run = {"round": r, "mode": mode}
            watcher = None
            if mode == "tcpdump":
                watcher = TcpdumpZstd(lab["server_ns"], lab["server_if"], os.path.join(scratch, f"td{r}.pcap.zst"))
                pids = watcher.pids
            elif mode == "tlstap":
                segdir = os.path.join(scratch, f"seg{r}")
                watcher = Tlstap(binary, segdir, "--interfaces", lab["server_if"])
                run["ready_s"] = round(watcher.wait_ready(), 3)
                pids = [watcher.pid]
            sampler = Sampler(pids).start() if watcher else None
            run.update(wrk(lab["client_ns"], url, SECONDS, CONNECTIONS))
            if mode == "tlstap":
                run["watcher"] = sampler.stop()
            if mode == "tcpdump":
                sampler.poll()
                run["tcpdump"] = watcher.stop()
                run["watcher"] = sampler.stop(final_cpu=run["tcpdump"]["cpu_total_s"])
                os.unlink(watcher.out_path)
            elif mode == "tlstap":
                status = watcher.fresh_status()
                run["tlstap"] = status_counters(status)
                libraries = libraries_summary(status)
                watcher.stop()
                run["tlstap"]["segment_bytes"] = segment_bytes(segdir)
                run["tlstap"]["isb"] = isb_drops(segments(segdir))
                for path in segments(segdir):
                    os.unlink(path)
            log(f"round {r} {mode}: {run['rps']:.0f} req/s p99 {run['p99_ms']:.2f} ms"
                + (f" watcher {run['watcher']}" if "watcher" in run else ""))
            runs.append(run)

    summary = {}
    for mode in ("bare", "tcpdump", "tlstap"):
        mine = [x for x in runs if x["mode"] == mode]
        summary[mode] = {"rps_median": median([x["rps"] for x in mine]),
                         "p99_ms_median": median([x["p99_ms"] for x in mine])}
        if mode != "bare":
            summary[mode]["watcher_cpu_share_median"] = median([x["watcher"]["cpu_share"] for x in mine])
            summary[mode]["watcher_rss_mb_max"] = max(x["watcher"]["rss_mb"] for x in mine)
    bare = summary["bare"]
    for mode in ("tcpdump", "tlstap"):
        summary[mode]["rps_vs_bare"] = ratio(summary[mode]["rps_median"], bare["rps_median"])
        summary[mode]["p99_vs_bare"] = ratio(summary[mode]["p99_ms_median"], bare["p99_ms_median"])
    # Per-round pairing: each tlstap run against the bare run of the same round (robust to drift).
    paired = []
    for r in range(ROUNDS):
        by_mode = {x["mode"]: x for x in runs if x["round"] == r}
        paired.append(ratio(by_mode["tlstap"]["rps"], by_mode["bare"]["rps"]))
    summary["tlstap"]["rps_vs_bare_per_round"] = paired
    summary["tlstap_vs_tcpdump_rps"] = ratio(summary["tlstap"]["rps_median"], summary["tcpdump"]["rps_median"])
    summary["target_met"] = bool(summary["tlstap"]["rps_vs_bare"] >= 0.97
                                 and summary["tlstap"]["rps_median"] > summary["tcpdump"]["rps_median"])
    emit({"benchmark": "https_cost", "rounds": ROUNDS, "seconds": SECONDS, "connections": CONNECTIONS,
          "libraries": libraries, "commands": {
              "server": "nginx worker_processes 1, keep-alive HTTPS, return 200 (29 bytes), TLS 1.3 P-256",
              "load": f"wrk -t1 -c{CONNECTIONS} -d{SECONDS}s --latency {url}",
              "tcpdump": f"tcpdump -n -i {lab['server_if']} -s 262144 -w - | zstd -3 -q -c > file",
              "tlstap": f"tlstap run --segment-dir DIR --interfaces {lab['server_if']}"},
          "runs": runs, "summary": summary}, out)


if __name__ == "__main__":
    main()
