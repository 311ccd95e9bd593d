import Logging
import ServiceLifecycle
import UnixSignals

/// `tlstap run` as a swift-service-lifecycle `Service`: starts the runtime, says READY=1 once the
/// initial interfaces and libssl targets are attached, re-reads the config on SIGHUP, and on
/// graceful shutdown (SIGTERM/SIGINT) says STOPPING=1 and stops the runtime in reverse order.
public struct CaptureService: Service {
    private let loadConfig: @Sendable () throws -> TapConfig
    private let initialConfig: TapConfig
    private let notifier: ServiceNotifier
    private let logger: Logger

    public init(config: TapConfig, reload: @escaping @Sendable () throws -> TapConfig, notifier: ServiceNotifier, logger: Logger) {
        self.initialConfig = config
        self.loadConfig = reload
        self.notifier = notifier
        self.logger = logger
    }

    public func run() async throws {
        let runtime = try DaemonRuntime(config: initialConfig, notifier: notifier, logger: logger)
        notifier.ready(status: runtime.statusLine)
        logger.notice("ready", metadata: ["segment_dir": "\(initialConfig.segmentDirectory)"])

        await withGracefulShutdownHandler {
            for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
                notifier.reloading()
                do {
                    let config = try loadConfig()
                    TapLogging.setLevel(config.logLevel)
                    runtime.reload(config)
                    logger.notice("configuration reloaded")
                } catch {
                    logger.error("configuration not reloaded, keeping the running one: \(error)")
                }
                notifier.ready(status: runtime.statusLine)
            }
        } onGracefulShutdown: {
            notifier.stopping()
        }
        runtime.stop()
        logger.notice("stopped")
    }
}
