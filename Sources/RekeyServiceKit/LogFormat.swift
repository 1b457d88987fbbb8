import Foundation
import Logging

/// How an executable writes its log: human-readable text or one JSON object per line, to stderr.
package enum LogFormat: String, Sendable, CaseIterable {
    case text
    case json

    /// Installs the process-wide log handler. Call once, at start-up.
    package func bootstrap(level: Logger.Level) {
        switch self {
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        case .json:
            LoggingSystem.bootstrap { label in
                JSONLogHandler(label: label, logLevel: level)
            }
        }
    }
}

/// The log settings every executable reads the same way: `log_level` (trace … critical, default
/// info) and `log_format` (text or json, default text).
package struct LogSettings: Sendable {
    package var level: Logger.Level
    package var format: LogFormat

    package init(_ settings: Settings) throws {
        self.level = try settings.value("log_level", default: .info, expected: "trace, debug, info, notice, warning, error or critical") {
            Logger.Level(rawValue: $0)
        }
        self.format = try settings.value("log_format", default: .text, expected: "text or json") { LogFormat(rawValue: $0) }
    }

    /// Installs the process-wide log handler. Call once, at start-up.
    package func bootstrap() {
        self.format.bootstrap(level: self.level)
    }
}

/// Writes each record as one JSON object on a line of stderr:
/// `{"time":"…","level":"info","logger":"…","message":"…","request.id":"…",…}`.
package struct JSONLogHandler: LogHandler {
    package var metadata: Logger.Metadata = [:]
    package var logLevel: Logger.Level
    private let label: String

    package init(label: String, logLevel: Logger.Level) {
        self.label = label
        self.logLevel = logLevel
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        var fields: [(String, String)] = [
            ("time", Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true))),
            ("level", event.level.rawValue),
            ("logger", self.label),
            ("message", "\(event.message)"),
        ]
        var merged = self.metadata
        merged.merge(event.metadata ?? [:]) { $1 }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            fields.append((key, "\(value)"))
        }
        let line = "{" + fields.map { "\(Self.quote($0.0)):\(Self.quote($0.1))" }.joined(separator: ",") + "}\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
