// swift-tools-version: 6.1
// The folders under Sources/ follow the path a packet and a key take:
// Discover → Attach → RingBuffer → Reorder → PcapNG/Segments → Retention, with Daemon (config, notify,
// journald, the pipeline) and the tlstap CLI on top. C libraries come in through pkg-config shims.
import PackageDescription

/// Release builds of the modules on the per-packet path optimise across modules (it crosses Reorder,
/// Segments and PcapNG) and leave exclusivity to the compiler's static checks: the run-time checks,
/// which the class-held state of the pipeline triggers on every packet, were 8 % of the daemon's CPU.
let perPacketPath: [SwiftSetting] = [.unsafeFlags(["-cross-module-optimization", "-enforce-exclusivity=unchecked"],
                                                  .when(configuration: .release))]

let package = Package(
    name: "tlstap",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tlstap", targets: ["tlstap"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // C libraries, each through pkg-config; the shims hold only what Swift cannot express.
        .systemLibrary(name: "CLibBPF", pkgConfig: "libbpf", providers: [.apt(["libbpf-dev", "libelf-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),

        // Shared vocabulary: packets, secrets, interfaces, clocks, units, the syscall gateway.
        .target(name: "TapCore", dependencies: [
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: perPacketPath),

        // 1. discover: network namespaces, interfaces (rtnetlink), cgroups, libssl targets.
        .target(name: "Discover", dependencies: ["TapCore", "CLibBPF",
            .product(name: "Logging", package: "swift-log")]),
        // 2. attach: tc programs and uprobes, via libbpf; the BPF objects are compiled from bpf/ and embedded.
        .target(name: "Attach", dependencies: ["TapCore", "Discover", "CLibBPF",
            .product(name: "Logging", package: "swift-log")],
            plugins: ["EmbedBPF"]),
        // 3. ring buffer: the libbpf consumer on its own thread.
        .target(name: "RingBuffer", dependencies: ["TapCore", "CLibBPF", "Attach"], swiftSettings: perPacketPath),
        // 4. reorder: packets held back by kernel time so keys can be written first.
        .target(name: "Reorder", dependencies: ["TapCore",
            .product(name: "DequeModule", package: "swift-collections")], swiftSettings: perPacketPath),
        // 5. segment writer: PcapNG blocks, DSBs, zstd frames, rotation, crash repair.
        .target(name: "PcapNG", dependencies: ["TapCore"], swiftSettings: perPacketPath),
        .target(name: "Segments", dependencies: ["TapCore", "PcapNG", "CZstd",
            .product(name: "Logging", package: "swift-log")], swiftSettings: perPacketPath),
        // Secrets: the TLS session table — dedupe of both ends, live sessions for each segment's head.
        .target(name: "Secrets", dependencies: ["TapCore"]),
        // 6. retention: oldest-first deletion by size and age.
        .target(name: "Retention", dependencies: ["TapCore", "Segments",
            .product(name: "Logging", package: "swift-log")]),
        // The service shell: config, sd_notify, journald, the run pipeline.
        .target(name: "Daemon", dependencies: [
            "TapCore", "Discover", "Attach", "RingBuffer", "Reorder", "PcapNG", "Segments", "Retention", "Secrets", "CSystemd",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            .product(name: "TOMLKit", package: "TOMLKit"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: perPacketPath), // the pipeline thread lives here
        .executableTarget(name: "tlstap", dependencies: [
            "Daemon", "TapCore", "Segments", "PcapNG", "Attach",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),

        // Test-only (not shipped): drives SegmentWriter from a process for the e2e tests — replays a
        // capture plus key log, or generates packets, with chosen rotation and flush periods.
        .executableTarget(name: "segment-replay", dependencies: [
            "Segments", "PcapNG", "Retention", "TapCore",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], path: "Tests/Tools/segment-replay"),

        // Build-time: compiles bpf/*.bpf.c with clang and embeds the objects as Swift source.
        .executableTarget(name: "BPFEmbedTool"),
        .plugin(name: "EmbedBPF", capability: .buildTool(), dependencies: ["BPFEmbedTool"]),

        // Unit tests, one target per stage so a stage builds and tests on its own.
        .testTarget(name: "TapCoreTests", dependencies: ["TapCore"]),
        .testTarget(name: "PcapNGTests", dependencies: ["PcapNG", "TapCore"]),
        .testTarget(name: "SegmentsTests", dependencies: ["Segments", "PcapNG", "Retention", "TapCore"]),
        .testTarget(name: "ReorderTests", dependencies: ["Reorder", "TapCore"]),
        .testTarget(name: "SecretsTests", dependencies: ["Secrets", "TapCore"]),
        .testTarget(name: "CaptureTests", dependencies: ["Discover", "Attach", "RingBuffer", "TapCore", "CLibBPF",
            .product(name: "Logging", package: "swift-log")]),
        // Test helper for CaptureTests: attaches the capture programs and waits to be killed (-9),
        // leaving stale filters for the stale-cleanup test to find.
        .executableTarget(name: "capture-probe", dependencies: ["Attach", "Discover", "TapCore"], path: "Tests/CaptureProbe"),
        .testTarget(name: "DaemonTests", dependencies: ["Daemon", "TapCore"]),
        .testTarget(name: "DiscoverTests", dependencies: ["Discover", "TapCore"]),
        .testTarget(name: "TLSKeysTests", dependencies: ["Attach", "Discover", "Secrets", "RingBuffer", "TapCore"]),
    ]
)
