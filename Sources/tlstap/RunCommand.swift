import ArgumentParser
import Daemon
import Logging
import ServiceLifecycle

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the capture service in the foreground (what tlstap.service starts).",
        discussion: """
            Captures every interface of every network namespace and the TLS secrets of OpenSSL users \
            into segments under --segment-dir. Flags beat the config file; the file beats the defaults. \
            SIGHUP re-reads the config file; SIGTERM or SIGINT finish the current segment and exit 0.
            """)

    @OptionGroup var options: RunOptions

    /// EX_CONFIG from sysexits.h: what systemd and init scripts read as "configuration error".
    static let configurationError: Int32 = 78

    func run() async throws {
        let config: TapConfig
        do {
            config = try options.resolve()
        } catch {
            // One line naming the file, line and key; no usage text, which would bury it.
            printError(error.description)
            throw ExitCode(Self.configurationError)
        }
        TapLogging.bootstrap(level: config.logLevel)
        let logger = Logger(label: "tlstap")
        let notifier = ServiceNotifier()
        let options = self.options
        let service = CaptureService(config: config, reload: { try options.resolve() }, notifier: notifier, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: service)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await group.run()
        } catch {
            logger.critical("tlstap stopped on an error: \(error)")
            throw ExitCode.failure
        }
    }
}
