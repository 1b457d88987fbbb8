import Foundation
import Hummingbird
import RekeyAdminModel
import RekeyInput

/// Reading what a request carries — path parameters, query parameters, JSON bodies — into
/// domain values, refusing what is out of bounds with a 400 that names the parameter.
enum RequestParsing {
    static func parameter(_ context: GatewayContext, _ name: String) throws(AdminError) -> String {
        guard let value = context.parameters.get(name) else { throw AdminError.invalid("missing \(name)") }
        return try Self.text(value.removingPercentEncoding ?? value, name)
    }

    /// A text query parameter; nil when absent. Control characters are refused here, in the
    /// request's terms, rather than by a service deeper down.
    static func query(_ request: Request, _ name: String) throws(AdminError) -> String? {
        guard let value = request.uri.queryParameters.get(name) else { return nil }
        return try Self.text(value, name)
    }

    static func text(_ value: String, _ name: String) throws(AdminError) -> String {
        guard !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw AdminError.invalid("\(name) must not contain control characters")
        }
        return value
    }

    /// A whole-number query parameter within `range`; the default when absent; a 400 naming the
    /// parameter and its range for anything else (empty, negative, too large, not a number).
    static func integer(_ request: Request, _ name: String, in range: ClosedRange<Int>, default defaultValue: Int) throws(AdminError) -> Int {
        do {
            return try Bounded.integer(request.uri.queryParameters.get(name), name, in: range, default: defaultValue)
        } catch {
            throw AdminError(error)
        }
    }

    /// `page_size` within `sizes` (default `defaultSize`) and `page_token`.
    static func page(_ request: Request, sizes: ClosedRange<Int>, default defaultSize: Int) throws(AdminError) -> PageRequest {
        PageRequest(size: try Self.integer(request, "page_size", in: sizes, default: defaultSize), token: try Self.query(request, "page_token") ?? "")
    }

    /// `true` or `false`; false when absent.
    static func flag(_ request: Request, _ name: String) throws(AdminError) -> Bool {
        switch request.uri.queryParameters.get(name) {
        case nil, "false": return false
        case "true": return true
        default: throw AdminError.invalid("\(name) must be true or false")
        }
    }

    /// A JSON body of at most `limit` bytes as `T`; a 400 saying what was wrong in JSON terms.
    static func body<T: Decodable>(_ request: Request, as type: T.Type, limit: Int = 1 << 20) async throws -> T {
        var request = request
        let buffer = try await request.collectBody(upTo: limit)
        do {
            return try Admin.decoder().decode(T.self, from: Data(buffer: buffer))
        } catch {
            throw AdminError.invalid(JSONBodyError.describe(error))
        }
    }

    /// Like ``body(_:as:limit:)``, but an empty body is `nil` (optional bodies).
    static func optionalBody<T: Decodable>(_ request: Request, as type: T.Type, limit: Int = 64 << 10) async throws -> T? {
        var request = request
        let buffer = try await request.collectBody(upTo: limit)
        guard buffer.readableBytes > 0 else { return nil }
        do {
            return try Admin.decoder().decode(T.self, from: Data(buffer: buffer))
        } catch {
            throw AdminError.invalid(JSONBodyError.describe(error))
        }
    }
}
