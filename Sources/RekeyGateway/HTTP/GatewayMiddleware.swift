import Foundation
import HTTPTypes
import Hummingbird
import Logging
import RekeyRPC

/// Gives each request its id (from `X-Request-Id` when it is acceptable), finds the client's
/// address, sends the id back, and adds the security headers every response carries. An error no
/// route group answered becomes a page (or JSON under `/api/`) through ``ErrorAnswers``; nothing
/// reaches the client as a stack trace.
struct GatewayMiddleware: RouterMiddleware {
    typealias Context = GatewayContext
    let logger: Logger
    /// Proxies (load balancers) whose `X-Forwarded-For` is believed.
    let trustedProxies: Set<String>
    /// What every page of this gateway is branded with (``Brand/current`` while answering).
    let brand: Brand

    func handle(_ request: Request, context: GatewayContext, next: (Request, GatewayContext) async throws -> Response) async throws -> Response {
        var context = context
        if let given = request.headers[.xRequestID], RequestID.isAcceptable(given) {
            context.requestID = given
        } else {
            context.requestID = RequestID.make()
        }
        if self.trustedProxies.contains(context.clientAddress), let forwarded = request.headers[.xForwardedFor],
           let last = forwarded.split(separator: ",").last?.trimmingCharacters(in: .whitespaces), !last.isEmpty, last.count <= 64 {
            context.clientAddress = last
        }
        let isAPI = request.uri.path.hasPrefix("/api/")
        var response: Response
        do {
            response = try await Brand.$current.withValue(self.brand) { try await next(request, context) }
        } catch let error as HTTPResponseError {
            throw error
        } catch {
            let failure = AdminError(error)
            ErrorAnswers.log(failure, error, requestID: context.requestID, logger: self.logger)
            if !isAPI, failure.kind != .unavailable, failure.kind != .internalError {
                // A page handles the answers it expects; anything else a service said is a surprise.
                self.logger.error("unexpected answer from a service", metadata: ["request.id": "\(context.requestID)", "error": "\(error)"])
            }
            response = isAPI ? ErrorAnswers.json(failure, requestID: context.requestID) : Brand.$current.withValue(self.brand) { ErrorAnswers.page(failure) }
        }
        response.headers[.xRequestID] = context.requestID
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.xFrameOptions] = "DENY"
        response.headers[.referrerPolicy] = "no-referrer"
        if response.headers[.cacheControl] == nil {
            response.headers[.cacheControl] = "no-store"
        }
        if !isAPI {
            response.headers[.contentSecurityPolicy] = self.brand.contentSecurityPolicy
        }
        return response
    }
}

extension HTTPField.Name {
    static let xRequestID = Self("X-Request-Id")!
    static let xForwardedFor = Self("X-Forwarded-For")!
    static let xFrameOptions = Self("X-Frame-Options")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
    static let secFetchSite = Self("Sec-Fetch-Site")!
    static let idempotencyKey = Self("Idempotency-Key")!
}
