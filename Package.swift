// swift-tools-version:6.0
import PackageDescription

/// Rekey: a self-hosted password-reset system.
///
/// Layout: C libraries are wrapped in system-library targets; `RekeyProtobuf` is the runtime the
/// generated message code uses; `RekeyRPC` is the transport-free RPC core; `RekeyRPCNIO` is the TCP
/// transport; services are library targets with thin executables.
let package = Package(
    name: "Rekey",
    platforms: [.macOS(.v15)],
    products: [],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        // MARK: C libraries
        .systemLibrary(
            name: "CProtobufC",
            pkgConfig: "libprotobuf-c",
            providers: [.apt(["libprotobuf-c-dev"])]
        ),
        .systemLibrary(
            name: "CCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        /// The protobuf-c code generated from `proto/` by `make proto`. Never edited by hand.
        .target(
            name: "CRekeyProto",
            dependencies: ["CProtobufC"],
            cSettings: [.define("NDEBUG", .when(configuration: .release))]
        ),

        // MARK: Runtime
        .target(
            name: "RekeyProtobuf",
            dependencies: ["CProtobufC"]
        ),
        .target(
            name: "RekeyRPC",
            dependencies: [
                "RekeyInput",
                "RekeyProtobuf",
                "CRekeyProto",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "RekeyRPCNIO",
            dependencies: [
                "RekeyInput",
                "RekeyRPC",
                "RekeyProtobuf",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ]
        ),
        .target(
            name: "RekeyPKI",
            dependencies: [
                "RekeyInput",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        .target(
            name: "RekeyCrypto",
            dependencies: ["CCrypto"]
        ),
        .target(
            name: "RekeySQLite",
            dependencies: [
                "CSQLite",
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        /// PostgreSQL, the option for deployments that outgrow one machine: connection strings,
        /// each service's own schema and its forward-only migrations (postgres-nio).
        .target(
            name: "RekeyPostgres",
            dependencies: [
                "RekeyRPC",
                "RekeySQLite",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        /// What every service executable shares: settings, logging, the server runner, healthcheck.
        .target(
            name: "RekeyServiceKit",
            dependencies: [
                "RekeyInput",
                "RekeySQLite",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                "RekeyRPC",
                "RekeyRPCNIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        /// Wall-clock time behind a protocol, so tests can move it.
        .target(name: "RekeyClock"),

        /// Bounded numbers from outside, parsed one way everywhere (no Foundation, no traps).
        .target(name: "RekeyInput"),

        // MARK: rekey-reset-token
        /// The `rekey.tokens.v1` contract: generated messages and stubs, for the service and its callers.
        .target(
            name: "RekeyTokensAPI",
            dependencies: ["RekeyProtobuf", "RekeyRPC", "CRekeyProto", "CProtobufC"]
        ),
        .target(
            name: "RekeyTokenService",
            dependencies: [
                "RekeyInput",
                "RekeyClock",
                "RekeyTokensAPI",
                "RekeyRPC",
                "RekeyCrypto",
                "RekeySQLite",
                "RekeyPostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "rekey-reset-token",
            dependencies: [
                "RekeyClock",
                "RekeyTokenService",
                "RekeyServiceKit",
                "RekeySQLite",
                "RekeyPostgres",
                "RekeyRPCNIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),

        // MARK: rekey-directory
        /// The `rekey.directory.v1` contract: generated messages and stubs.
        .target(
            name: "RekeyDirectoryAPI",
            dependencies: ["RekeyProtobuf", "RekeyRPC", "CRekeyProto", "CProtobufC"]
        ),
        .target(
            name: "RekeyDirectoryService",
            dependencies: [
                "RekeyInput",
                "RekeyClock",
                "RekeyDirectoryAPI",
                "RekeyRPC",
                "RekeyCrypto",
                "RekeySQLite",
                "RekeyPostgres",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            resources: [.copy("Resources/common-passwords.txt")]
        ),

        .executableTarget(
            name: "rekey-directory",
            dependencies: [
                "RekeyClock",
                "RekeyCrypto",
                "RekeyDirectoryAPI",
                "RekeyDirectoryService",
                "RekeyServiceKit",
                "RekeySQLite",
                "RekeyRPCNIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),

        // MARK: rekey-notifier
        /// The `rekey.notifier.v1` contract: generated messages and stubs.
        .target(
            name: "RekeyNotifierAPI",
            dependencies: ["RekeyProtobuf", "RekeyRPC", "CRekeyProto", "CProtobufC"]
        ),
        .target(
            name: "RekeyNotifierService",
            dependencies: [
                "RekeyInput",
                "RekeyClock",
                "RekeyNotifierAPI",
                "RekeyRPC",
                "RekeyCrypto",
                "RekeySQLite",
                "RekeyPostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "rekey-notifier",
            dependencies: [
                "RekeyClock",
                "RekeyInput",
                "RekeyNotifierAPI",
                "RekeyNotifierService",
                "RekeyServiceKit",
                "RekeySQLite",
                "RekeyPostgres",
                "RekeyRPCNIO",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),

        // MARK: rekey-gateway and the rekey CLI
        /// The admin API's request and response bodies (Foundation only): encoded by the gateway,
        /// decoded by the CLI.
        .target(name: "RekeyAdminModel"),
        /// The web pages, the admin API and the flows that call the three services.
        .target(
            name: "RekeyGateway",
            dependencies: [
                "RekeyAdminModel",
                "RekeyInput",
                "RekeyClock",
                "RekeyCrypto",
                "RekeyDirectoryAPI",
                "RekeyNotifierAPI",
                "RekeyTokensAPI",
                "RekeyRPC",
                "RekeyRPCNIO",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            resources: [.copy("Resources/openapi.json")]
        ),
        .executableTarget(
            name: "rekey-gateway",
            dependencies: [
                "RekeyGateway",
                "RekeyRPCNIO",
                "RekeyServiceKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "rekey",
            dependencies: [
                "RekeyAdminModel",
                "RekeyInput",
                "RekeyPKI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // MARK: Test support and benchmarks
        /// The `rekey.testing.v1` messages and Echo service, and helpers shared by tests and benchmarks.
        .target(
            name: "RekeyTesting",
            dependencies: [
                "RekeyProtobuf",
                "RekeyRPC",
                "RekeyRPCNIO",
                "CRekeyProto",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        /// Traits for the test targets (Swift Testing), apart from RekeyTesting so that the
        /// benchmark, which uses RekeyTesting, never links the testing library.
        .target(
            name: "RekeyTestTraits"
        ),
        /// The whole system in one process (services called through `InProcessTransport`), and
        /// the harness that starts the real executables, a browser's worth of HTTP and the CLI.
        .target(
            name: "RekeyGatewayTesting",
            dependencies: [
                "RekeyClock", "RekeyCrypto", "RekeyDirectoryAPI", "RekeyDirectoryService", "RekeyGateway", "RekeyNotifierAPI",
                "RekeyNotifierService", "RekeyRPC", "RekeyRPCNIO", "RekeySQLite", "RekeyTesting", "RekeyTokenService", "RekeyTokensAPI",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "RekeyBenchmark",
            dependencies: [
                "RekeyPKI",
                "RekeyRPC",
                "RekeyTokensAPI",
                "RekeyDirectoryAPI",
                "RekeyDirectoryService",
                "RekeyNotifierAPI",
                "RekeyRPCNIO",
                "RekeySQLite",
                "RekeyClock",
                "RekeyTesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/RekeyBenchmark"
        ),

        // MARK: Fuzzing (`make fuzz`): each main.swift holds only LLVMFuzzerTestOneInput; built with
        // --sanitize=fuzzer they are libFuzzer programs, in a normal build empty executables.
        /// The fuzz targets as functions, for the Fuzz* executables and for the replay test.
        .target(
            name: "RekeyFuzzing",
            dependencies: [
                "RekeyProtobuf", "RekeyRPC", "RekeyRPCNIO", "RekeyDirectoryAPI", "RekeyNotifierAPI", "RekeyTokensAPI",
                "RekeyDirectoryService", "RekeyGateway", "RekeyNotifierService",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .executableTarget(name: "FuzzFrames", dependencies: ["RekeyFuzzing"], path: "Fuzz/FuzzFrames"),
        .executableTarget(name: "FuzzMessages", dependencies: ["RekeyFuzzing"], path: "Fuzz/FuzzMessages"),
        .executableTarget(name: "FuzzCSV", dependencies: ["RekeyFuzzing"], path: "Fuzz/FuzzCSV"),
        .executableTarget(name: "FuzzForms", dependencies: ["RekeyFuzzing"], path: "Fuzz/FuzzForms"),
        .executableTarget(name: "FuzzMIME", dependencies: ["RekeyFuzzing"], path: "Fuzz/FuzzMIME"),
        .executableTarget(name: "FuzzSMTPReply", dependencies: ["RekeyFuzzing"], path: "Fuzz/FuzzSMTPReply"),

        // MARK: Tests
        .testTarget(
            name: "RekeyProtobufTests",
            dependencies: ["RekeyProtobuf", "RekeyRPC", "RekeyTesting"]
        ),
        .testTarget(
            name: "RekeyRPCTests",
            dependencies: [
                "RekeyRPC",
                "RekeyTesting",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "RekeyRPCNIOTests",
            dependencies: [
                "RekeyTestTraits",
                "RekeyPKI",
                "RekeyRPC",
                "RekeyRPCNIO",
                "RekeyTesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "RekeyCryptoTests",
            dependencies: ["RekeyCrypto"]
        ),
        .testTarget(
            name: "RekeySQLiteTests",
            dependencies: ["RekeySQLite", "RekeyTesting"]
        ),
        .testTarget(
            name: "RekeyServiceKitTests",
            dependencies: ["RekeyServiceKit"]
        ),
        .testTarget(
            name: "RekeyInputTests",
            dependencies: ["RekeyInput"]
        ),
        .testTarget(
            name: "RekeyFuzzingTests",
            dependencies: ["RekeyFuzzing"]
        ),
        .testTarget(
            name: "RekeyDirectoryServiceTests",
            dependencies: [
                "RekeyTestTraits",
                "RekeyClock",
                "RekeyInput",
                "RekeyCrypto",
                "RekeyDirectoryService",
                "RekeyDirectoryAPI",
                "RekeyRPC",
                "RekeyRPCNIO",
                "RekeySQLite",
                "RekeyPostgres",
                "RekeyTesting",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "RekeyPostgresTests",
            dependencies: [
                "RekeyPostgres",
                "RekeySQLite",
                "RekeyRPC",
                "RekeyTesting",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        .testTarget(
            name: "RekeyTokenServiceTests",
            dependencies: [
                "RekeyTestTraits",
                "RekeyClock",
                "RekeyTokenService",
                "RekeyTokensAPI",
                "RekeyRPC",
                "RekeyRPCNIO",
                "RekeySQLite",
                "RekeyPostgres",
                "RekeyTesting",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
            .testTarget(
            name: "RekeyNotifierServiceTests",
            dependencies: [
                "RekeyTestTraits",
                "RekeyClock",
                "RekeyInput",
                "RekeyNotifierService",
                "RekeyNotifierAPI",
                "RekeyRPC",
                "RekeyRPCNIO",
                "RekeySQLite",
                "RekeyPostgres",
                "RekeyTesting",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
            .testTarget(
            name: "RekeyGatewayTests",
            dependencies: [
                "RekeyTestTraits",
                "RekeyPKI",
                "RekeyAdminModel",
                "RekeyClock",
                "RekeyDirectoryAPI",
                "RekeyDirectoryService",
                "RekeyGateway",
                "RekeyGatewayTesting",
                "RekeyNotifierAPI",
                "RekeyNotifierService",
                "RekeySQLite",
                "RekeyTesting",
                "RekeyTokensAPI",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
    ]
)
