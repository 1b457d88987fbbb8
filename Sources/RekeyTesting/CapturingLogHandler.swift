import Logging
import Synchronization

/// Keeps every log record in memory so a test can check what was (and was not) logged.
package final class LogCapture: Sendable {
    package struct Record: Sendable {
        package var level: Logger.Level
        package var message: String
        package var metadata: Logger.Metadata
    }

    private let records = Mutex<[Record]>([])

    package init() {}

    /// A logger whose records land here.
    package func logger(label: String = "rekey.test", level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: label) { _ in Handler(capture: self) }
        logger.logLevel = level
        return logger
    }

    package var all: [Record] { self.records.withLock { $0 } }

    /// Every record flattened to one line of text: message and metadata.
    package var lines: [String] {
        self.all.map { record in
            let metadata = record.metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            return "\(record.level) \(record.message) \(metadata)"
        }
    }

    fileprivate func append(_ record: Record) {
        self.records.withLock { $0.append(record) }
    }

    private struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var merged = self.metadata
            merged.merge(event.metadata ?? [:]) { $1 }
            self.capture.append(Record(level: event.level, message: "\(event.message)", metadata: merged))
        }
    }
}
