import Attach
import Discover
import Foundation
import Testing

extension TLSKeysTests {
    /// What the uprobes cost the programs they watch: nginx serving HTTPS under wrk, runs without and
    /// with the uprobes alternating in the same test. Keep-alive (the contract's measure, target ≥ 97%)
    /// and one-request-per-connection (every request a full handshake: the worst case for these hooks).
    /// Timing-sensitive on a shared machine, so it runs only with TLSTAP_MEASURE_OVERHEAD=1.
    @Suite(.enabled(if: ProcessInfo.processInfo.environment["TLSTAP_MEASURE_OVERHEAD"] == "1"))
    struct OverheadTests {
        static let port = 18810

        static func startNginx(in directory: URL, cert: (cert: String, key: String)) throws -> Process {
            let config = """
                daemon off;
                master_process off;  # one process, so stopping it stops everything
                pid \(directory.path)/nginx.pid;
                error_log \(directory.path)/error.log;
                events { worker_connections 1024; }
                http {
                    access_log off;
                    client_body_temp_path \(directory.path);
                    proxy_temp_path \(directory.path);
                    fastcgi_temp_path \(directory.path);
                    uwsgi_temp_path \(directory.path);
                    scgi_temp_path \(directory.path);
                    keepalive_requests 1000000;
                    server {
                        listen 127.0.0.1:\(port) ssl;
                        ssl_certificate \(cert.cert);
                        ssl_certificate_key \(cert.key);
                        ssl_session_cache off;
                        ssl_session_tickets off;
                        location / { return 200 "ok\\n"; }
                    }
                }
                """
            let path = directory.appending(path: "nginx.conf").path
            try config.write(toFile: path, atomically: true, encoding: .utf8)
            let nginx = Process()
            nginx.executableURL = URL(fileURLWithPath: "/usr/sbin/nginx")
            nginx.arguments = ["-c", path, "-p", directory.path]
            try nginx.run()
            for _ in 0..<200 {
                if (try? Fixture.run(["curl", "-sk", "-o", "/dev/null", "https://127.0.0.1:\(port)/"], timeout: 2)) != nil { return nginx }
                usleep(20_000)
            }
            Fixture.stop(nginx)
            throw FixtureError("nginx did not serve on \(port)")
        }

        struct Run {
            var requestsPerSecond: Double
            var requests: Double
            /// nginx's user+system CPU ticks during the run: less sensitive than throughput to the other
            /// work on a shared machine.
            var cpuTicks: Double
            var cpuTicksPerRequest: Double { cpuTicks / requests }
        }

        static func cpuTicks(of pid: Int32) throws -> Double {
            let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
            let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
            return Double(fields[11])! + Double(fields[12])!  // utime, stime: fields 14 and 15 of stat(5)
        }

        /// One wrk run, draining the tap's ring meanwhile if there is one.
        static func wrk(_ extra: [String], nginx: Process, tap: KeyTap?) throws -> Run {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/wrk")
            process.arguments = ["-t1", "-c32", "-d3s"] + extra + ["https://127.0.0.1:\(port)/"]
            let output = Pipe()
            process.standardOutput = output
            let cpuBefore = try cpuTicks(of: nginx.processIdentifier)
            try process.run()
            while process.isRunning { if let tap { tap.drain(milliseconds: 50) } else { usleep(50_000) } }
            let cpu = try cpuTicks(of: nginx.processIdentifier) - cpuBefore
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let rate = try #require(text.split(separator: "\n").first { $0.hasPrefix("Requests/sec:") })
            let total = try #require(text.split(separator: "\n").first { $0.contains(" requests in ") })
            return Run(requestsPerSecond: try #require(Double(rate.split(separator: " ").last!)),
                       requests: try #require(Double(total.split(separator: " ").first!)), cpuTicks: cpu)
        }

        /// Keep-alive: the hooks fire only on the 32 handshakes per run, so the true cost is ~0.1% and the
        /// bound leaves room for the ±3% CPU-per-request noise of this shared VM. One connection per
        /// request: five hook hits per TLS 1.3 handshake at ~10 µs each (FIELD-NOTES) against ~1 ms of
        /// handshake CPU — a real cost of several percent, bounded here so a regression shows.
        @Test(arguments: [("keep-alive", [String](), 0.95), ("new connection per request", ["-H", "Connection: close"], 0.85)])
        func throughputWithUprobesVersusWithout(load: String, headers: [String], minimumCPURatio: Double) throws {
            let directory = try Fixture.temporaryDirectory()
            let cert = try Fixture.makeCertificate(in: directory)
            let nginx = try Self.startNginx(in: directory, cert: cert)
            defer { Fixture.stop(nginx) }
            let scanner = LibSSLScanner(logger: Fixture.logger)
            let targets = scanner.initialScan()
            var bare: [Run] = [], attached: [Run] = []
            var events = 0
            _ = try Self.wrk(headers, nginx: nginx, tap: nil)  // warm-up
            for _ in 0..<5 {
                bare.append(try Self.wrk(headers, nginx: nginx, tap: nil))
                let tap = try KeyTap()
                #expect(tap.attach(targets).contains { $0.displayPath.hasSuffix("libssl.so.3") && $0.state == .attached })
                attached.append(try Self.wrk(headers, nginx: nginx, tap: tap))
                tap.drain(milliseconds: 100)
                events += tap.events.count
            }
            let pairRatios = zip(attached, bare).map { $0.requestsPerSecond / $1.requestsPerSecond }.sorted()
            let throughputRatio = pairRatios[pairRatios.count / 2]
            let cpuPerRequest = { (runs: [Run]) in runs.map(\.cpuTicks).reduce(0, +) / runs.map(\.requests).reduce(0, +) }
            let cpuRatio = cpuPerRequest(bare) / cpuPerRequest(attached)
            print("overhead \(load): bare \(bare.map { Int($0.requestsPerSecond) }) req/s, with uprobes \(attached.map { Int($0.requestsPerSecond) }) req/s; "
                  + "median paired throughput ratio \(String(format: "%.3f", throughputRatio)); nginx CPU per request bare/with "
                  + "\(String(format: "%.3f", cpuRatio)); \(events) secrets captured")
            #expect(events > 0, "the uprobes fired during the attached runs")
            // nginx's CPU per request is the cost the uprobes add to the watched process; throughput on a
            // shared 2-core machine swings by ±30% between identical runs and is reported, not judged.
            #expect(cpuRatio >= minimumCPURatio, "nginx CPU per request without/with uprobes \(cpuRatio) (\(load))")
        }
    }
}
