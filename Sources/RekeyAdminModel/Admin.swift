import Foundation

/// The admin API's request and response bodies, `/api/admin/v1/…`: what the gateway encodes and
/// the `rekey` CLI decodes, one definition for both. Foundation only, so any Swift client can use it.
///
/// On the wire names are snake_case (``Admin/encoder()``, ``Admin/decoder()``); times are ISO 8601
/// in UTC; an absent optional is left out. `docs/openapi.json` describes the same shapes for
/// clients in other languages, and a test keeps the two in step.
package enum Admin {
    /// The encoder of every admin API body: snake_case keys, sorted, ISO 8601 dates as text.
    package static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }

    /// The decoder matching ``encoder()``.
    package static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }

    /// `{"error": {"code": "…", "message": "…"}}`: every error answer. `code` is stable
    /// (`invalid_argument`, `not_found`, `permission_denied`, `outranked`, `unavailable`, …).
    package struct ErrorBody: Codable, Sendable, Equatable {
        package struct Detail: Codable, Sendable, Equatable {
            package var code: String
            package var message: String

            package init(code: String, message: String) {
                self.code = code
                self.message = message
            }
        }

        package var error: Detail

        package init(code: String, message: String) {
            self.error = Detail(code: code, message: message)
        }
    }

    /// An ISO 8601 UTC time from Unix milliseconds; nil for 0 (never).
    package static func time(_ unixMilliseconds: Int64) -> String? {
        guard unixMilliseconds > 0 else { return nil }
        return Date(timeIntervalSince1970: Double(unixMilliseconds) / 1000).ISO8601Format()
    }
}
