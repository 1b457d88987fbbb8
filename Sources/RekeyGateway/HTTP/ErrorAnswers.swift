import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import RekeyAdminModel

/// The one place errors become HTTP answers: an ``AdminError`` (what every error is first turned
/// into) gets its status here, and is rendered as JSON for the admin API or as a page.
enum ErrorAnswers {
    static func status(_ kind: AdminError.Kind) -> HTTPResponse.Status {
        switch kind {
        case .invalidArgument: return .badRequest
        case .unauthenticated: return .unauthorized
        case .permissionDenied: return .forbidden
        case .notFound: return .notFound
        case .conflict: return .conflict
        case .tooLarge: return .contentTooLarge
        case .tooManyRequests: return .tooManyRequests
        case .unavailable: return .serviceUnavailable
        case .internalError: return .internalServerError
        }
    }

    /// `{"error": {"code", "message"}}` with the status, and `Retry-After` when there is one.
    static func json(_ failure: AdminError, requestID: String) -> Response {
        var message = failure.message
        if failure.kind == .internalError { message = "something went wrong; quote request id \(requestID)" }
        var response = Self.json(Admin.ErrorBody(code: failure.code, message: message), status: Self.status(failure.kind))
        if let retry = failure.retryAfter { response.headers[.retryAfter] = retry }
        return response
    }

    /// The "temporarily unavailable" page for a service that did not answer (503, Retry-After)
    /// and for anything unexpected (500).
    static func page(_ failure: AdminError) -> Response {
        guard failure.kind == .unavailable else { return Web.html(HTML.unavailable, status: .internalServerError) }
        var response = Web.html(HTML.unavailable, status: .serviceUnavailable)
        response.headers[.retryAfter] = failure.retryAfter ?? "30"
        return response
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        // The admin model's types always encode; a failure here is a programming error.
        let body = (try? Admin.encoder().encode(value)) ?? Data(#"{"error":{"code":"internal","message":"the answer could not be encoded"}}"#.utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// Logs what operators should hear about: services not answering, and anything unexpected.
    static func log(_ failure: AdminError, _ error: any Error, requestID: String, logger: Logger) {
        switch failure.kind {
        case .unavailable:
            logger.warning("a service did not answer", metadata: ["request.id": "\(requestID)", "error": "\(error)"])
        case .internalError:
            logger.error("request failed", metadata: ["request.id": "\(requestID)", "error": "\(error)"])
        default:
            break
        }
    }
}

/// Answers every error of the admin API's routes as JSON (installed on its route group).
struct APIErrorMiddleware: RouterMiddleware {
    typealias Context = GatewayContext
    let logger: Logger

    func handle(_ request: Request, context: GatewayContext, next: (Request, GatewayContext) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPResponseError {
            throw error
        } catch {
            let failure = AdminError(error)
            ErrorAnswers.log(failure, error, requestID: context.requestID, logger: self.logger)
            return ErrorAnswers.json(failure, requestID: context.requestID)
        }
    }
}
