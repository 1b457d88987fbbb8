import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import RekeyCrypto
import RekeyDirectoryAPI
import RekeyRPC
import Synchronization

/// The sign-on, password and verification pages.
package struct Web: Sendable {
    let flows: Flows
    /// Whether cookies get the Secure attribute (the public URL is https).
    let secureCookies: Bool

    /// Cookie names; with an https public URL they carry the `__Host-` prefix, so that no
    /// sibling domain can set them.
    let csrfCookie: String
    let sessionCookie: String
    /// Set with every form page (SameSite=Lax, so a click in a mail client carries it back): a
    /// link opened with it comes from a browser that was here before, not a link scanner. It
    /// holds no identifier, only `1`.
    let seenCookie: String
    /// Signs CSRF tokens, so that a pair a client made up (cookie and field alike) is refused.
    let csrfKey: [UInt8]
    /// Forgot-password answers take at least this long, so that the time does not tell whether
    /// the account exists.
    let forgotMinimumDuration: Duration
    /// Where the forgot-password flow finishes after its answer.
    let background: BackgroundQueue

    /// `secret` is the deployment's secret the CSRF key is derived from (the gateway passes its
    /// service credential, which every gateway replica of a deployment shares).
    package init(flows: Flows, secret: String, background: BackgroundQueue, forgotMinimumDuration: Duration = .milliseconds(400)) {
        self.flows = flows
        self.secureCookies = flows.publicURL.hasPrefix("https://")
        self.csrfCookie = self.secureCookies ? "__Host-rekey_csrf" : "rekey_csrf"
        self.sessionCookie = self.secureCookies ? "__Host-rekey_session" : "rekey_session"
        self.seenCookie = self.secureCookies ? "__Host-rekey_seen" : "rekey_seen"
        self.csrfKey = OpenSSL.hmacSHA256(key: Array(secret.utf8), Array("rekey csrf v1".utf8))
        self.forgotMinimumDuration = forgotMinimumDuration
        self.background = background
    }

    /// The pages' routes; the two that need to know who is signed in get ``SessionAuthenticator``.
    func add(to router: Router<GatewayContext>, authentication: AdminAuthentication) {
        let session = router.group().add(middleware: SessionAuthenticator(authentication: authentication, cookieName: self.sessionCookie))
        session.get("/") { request, context in try await self.home(request, context, notice: nil) }
        session.post("/signout") { request, context in try await self.signOut(request, context) }
        router.post("/signin") { request, context in try await self.signIn(request, context) }
        router.get("/password/forgot") { request, _ in self.withCSRF(request) { HTML.forgot(csrf: $0, errors: []) } }
        router.post("/password/forgot") { request, context in try await self.forgot(request, context) }
        router.get("/password/reset") { request, context in try await self.resetPage(request, context) }
        router.post("/password/reset") { request, context in try await self.reset(request, context) }
        router.get("/email/verify") { request, context in try await self.verifyPage(request, context) }
        // Link scanners often look with HEAD: recorded like a GET, and never spends the link.
        router.head("/password/reset") { request, context in try await self.resetPage(request, context) }
        router.head("/email/verify") { request, context in try await self.verifyPage(request, context) }
        router.post("/email/verify") { request, context in try await self.verify(request, context) }
    }

    // MARK: Pages

    func home(_ request: Request, _ context: GatewayContext, notice: String?) async throws -> Response {
        if let user = context.sessionUser {
            let email = user.emails.first(where: \.primary)?.address ?? ""
            return self.withCSRF(request) { HTML.signedIn(csrf: $0, name: user.name, email: email, staff: user.staff) }
        }
        let next = Self.consolePath(request.uri.queryParameters.get("next"))
        var notice = notice
        switch request.uri.queryParameters.get("done") {
        case "changed": notice = "Your password was changed. Sign in with the new one."
        case "signedout": notice = "You are signed out."
        default: break
        }
        return self.withCSRF(request) { HTML.signOn(csrf: $0, notice: notice, errors: [], email: "", next: next) }
    }

    /// `next` when it is a console page to come back to after signing in; nil for anything
    /// else (another host, a scheme, a path outside the console), so it is never an open redirect.
    static func consolePath(_ next: String?) -> String? {
        guard let next, next.utf8.count <= 1000, next == "/console" || next.hasPrefix("/console/") || next.hasPrefix("/console?"),
              !next.contains("//"), !next.contains("\\"), next.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7f })
        else { return nil }
        return next
    }

    func signIn(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let (form, csrf) = try await self.checkedForm(request)
        guard let csrf else { return Self.html(HTML.forbidden, status: .forbidden) }
        let email = form["email"] ?? ""
        let next = Self.consolePath(form["next"])
        let user: Rekey_Directory_V1_User
        do {
            user = try await self.flows.signIn(email: email, password: form["password"] ?? "", clientAddress: context.clientAddress, requestID: context.requestID)
        } catch let error as RPCError where error.code == .unauthenticated || error.code == .invalidArgument {
            return Self.html(
                HTML.signOn(csrf: csrf, notice: nil, errors: ["The email address or the password is not right."], email: email, next: next), status: .unauthorized
            )
        } catch let error as RPCError where error.code == .resourceExhausted {
            if let seconds = error.trailers[MetadataKey.retryAfterSeconds].flatMap(Int.init) {
                let minutes = max(1, (seconds + 59) / 60)
                var response = Self.html(
                    HTML.signOn(
                        csrf: csrf, notice: nil, errors: ["Too many attempts from your network. Try again in \(minutes) minute\(minutes == 1 ? "" : "s")."],
                        email: email, next: next
                    ),
                    status: .tooManyRequests
                )
                response.headers[.retryAfter] = "\(seconds)"
                return response
            }
            return Self.html(HTML.unavailable, status: .serviceUnavailable)
        }
        let session = try await self.flows.startSession(userID: user.id, requestID: context.requestID)
        // Staff land in the console (or the console page that sent them here); customers on the
        // signed-in page.
        var response = Self.redirect(user.staff ? (next ?? "/console") : "/")
        response.setCookie(Cookie(name: self.sessionCookie, value: session, path: "/", secure: self.secureCookies, httpOnly: true, sameSite: .lax))
        return response
    }

    func signOut(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let (_, csrf) = try await self.checkedForm(request)
        guard csrf != nil else { return Self.html(HTML.forbidden, status: .forbidden) }
        if let user = context.sessionUser {
            try await self.flows.endSessions(userID: user.id, clientAddress: context.clientAddress, requestID: context.requestID)
        }
        var response = Self.redirect("/?done=signedout")
        response.setCookie(Cookie(name: self.sessionCookie, value: "", maxAge: 0, path: "/", secure: self.secureCookies, httpOnly: true, sameSite: .lax))
        return response
    }

    func forgot(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let started = ContinuousClock.now
        let (form, csrf) = try await self.checkedForm(request)
        guard let csrf else { return Self.html(HTML.forbidden, status: .forbidden) }
        let email = (form["email"] ?? "").trimmingCharacters(in: .whitespaces)
        guard !email.isEmpty, email.count <= 254 else {
            return Self.html(HTML.forgot(csrf: csrf, errors: ["Enter the email address of your account."]), status: .badRequest)
        }
        // The flow runs in the background queue; the answer comes at the floor whatever the flow
        // is doing then, so its time never tells whether the account exists. A service that did
        // not answer before the floor still gets the "temporarily unavailable" page.
        let outcome = Mutex<(any Error)?>(nil)
        let (flows, clientAddress, requestID) = (self.flows, context.clientAddress, context.requestID)
        let queued = self.background.submit {
            do {
                try await flows.forgotPassword(email: email, clientAddress: clientAddress, requestID: requestID)
            } catch {
                flows.logger.warning("forgot-password flow failed", metadata: ["request.id": "\(requestID)", "error": "\(error)"])
                outcome.withLock { $0 = error }
            }
        }
        let elapsed = ContinuousClock.now - started
        if elapsed < self.forgotMinimumDuration {
            try await Task.sleep(for: self.forgotMinimumDuration - elapsed)
        }
        guard queued else {
            var response = Self.html(HTML.unavailable, status: .serviceUnavailable)
            response.headers[.retryAfter] = "30"
            return response
        }
        if let failure = outcome.withLock({ $0 }) {
            throw failure
        }
        return Self.html(HTML.forgotSent)
    }

    /// How the request opening a link came: its method, whether it carried this site's cookies
    /// (the browser that asked for the reset does: ``seenCookie``), the User-Agent's class.
    func opening(_ request: Request) -> Flows.LinkOpening {
        let ours = [self.seenCookie, self.csrfCookie, self.sessionCookie].contains { request.cookies[$0] != nil }
        return Flows.LinkOpening(method: request.method == .head ? "HEAD" : "GET", hadCookies: ours, userAgent: request.headers[.userAgent])
    }

    func resetPage(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let token = request.uri.queryParameters.get("token") ?? ""
        let live = try await self.flows.peek(
            token, purpose: .passwordReset, clientAddress: context.clientAddress, opening: self.opening(request), requestID: context.requestID
        )
        guard live != nil else {
            return Self.html(HTML.resetInvalid, status: .gone)
        }
        return self.withCSRF(request) { HTML.resetForm(csrf: $0, token: token, errors: []) }
    }

    func reset(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let (form, csrf) = try await self.checkedForm(request)
        guard let csrf else { return Self.html(HTML.forbidden, status: .forbidden) }
        let token = form["token"] ?? ""
        let password = form["password"] ?? ""
        guard password == form["confirm"] else {
            return Self.html(HTML.resetForm(csrf: csrf, token: token, errors: ["The two passwords are not the same."]), status: .unprocessableContent)
        }
        switch try await self.flows.resetPassword(token: token, password: password, clientAddress: context.clientAddress, requestID: context.requestID) {
        case .changed:
            return Self.redirect("/?done=changed")
        case .invalidToken:
            return Self.html(HTML.resetInvalid, status: .gone)
        case .refused(let problems):
            return Self.html(HTML.resetForm(csrf: csrf, token: token, errors: problems.map { $0.prefix(1).uppercased() + $0.dropFirst() + "." }), status: .unprocessableContent)
        }
    }

    func verifyPage(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let token = request.uri.queryParameters.get("token") ?? ""
        let live = try await self.flows.peek(
            token, purpose: .emailVerification, clientAddress: context.clientAddress, opening: self.opening(request), requestID: context.requestID
        )
        guard live != nil else {
            return Self.html(HTML.verifyInvalid, status: .gone)
        }
        return self.withCSRF(request) { HTML.verifyForm(csrf: $0, token: token) }
    }

    func verify(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let (form, csrf) = try await self.checkedForm(request)
        guard csrf != nil else { return Self.html(HTML.forbidden, status: .forbidden) }
        guard try await self.flows.verifyEmail(token: form["token"] ?? "", clientAddress: context.clientAddress, requestID: context.requestID) else {
            return Self.html(HTML.verifyInvalid, status: .gone)
        }
        return Self.html(HTML.verified)
    }

    // MARK: Helpers

    /// A page with a form: reuses the browser's CSRF cookie or sets a new one.
    func withCSRF(_ request: Request, _ render: (String) -> String) -> Response {
        let (token, cookie) = self.csrfToken(request)
        var response = Self.html(render(token))
        if let cookie { response.setCookie(cookie) }
        if request.cookies[self.seenCookie] == nil {
            response.setCookie(Cookie(name: self.seenCookie, value: "1", maxAge: 30 * 86400, path: "/", secure: self.secureCookies, httpOnly: true, sameSite: .lax))
        }
        return response
    }

    /// The browser's CSRF token when its cookie holds one this deployment signed; otherwise a
    /// new one, with the cookie to set.
    func csrfToken(_ request: Request) -> (token: String, cookie: Cookie?) {
        if let existing = request.cookies[self.csrfCookie]?.value, self.isSigned(existing) {
            return (existing, nil)
        }
        let nonce = (try? SecretToken.generate().value) ?? ""
        let token = nonce + "." + self.signature(nonce)
        return (token, Cookie(name: self.csrfCookie, value: token, path: "/", secure: self.secureCookies, httpOnly: true, sameSite: .strict))
    }

    /// The posted form, and the CSRF token when the form's matches the cookie (double submit).
    /// The form is refused (nil token) when it comes from another site (`Sec-Fetch-Site:
    /// cross-site`, or an `Origin` that is neither this host nor the public URL's), or when the
    /// cookie is not a token this deployment signed, or the field differs from the cookie.
    func checkedForm(_ request: Request) async throws -> (form: [String: String], csrf: String?) {
        var request = request
        let body = try await request.collectBody(upTo: 64 * 1024)
        let form = Self.parseForm(String(buffer: body))
        guard !self.isCrossSite(request),
              let cookie = request.cookies[self.csrfCookie]?.value, let given = form["csrf"], self.isSigned(cookie),
              OpenSSL.constantTimeEquals(Array(cookie.utf8), Array(given.utf8))
        else { return (form, nil) }
        return (form, cookie)
    }

    func isCrossSite(_ request: Request) -> Bool {
        if let site = request.headers[.secFetchSite], site == "cross-site" || site == "same-site" {
            return true
        }
        // Browsers send `Origin: null` for a form posted from a page with `Referrer-Policy:
        // no-referrer` (ours): that says nothing, so `Sec-Fetch-Site` and the signed token decide.
        guard let origin = request.headers[.origin], origin != "null" else { return false }
        let host = request.head.authority ?? ""
        return origin != self.flows.publicURL && origin != "http://\(host)" && origin != "https://\(host)"
    }

    /// `nonce.mac`: 43 characters of random nonce, a dot, the nonce's HMAC in 43 characters.
    func isSigned(_ token: String) -> Bool {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].utf8.count == 43, parts[1].utf8.count == 43 else { return false }
        return OpenSSL.constantTimeEquals(Array(self.signature(String(parts[0])).utf8), Array(parts[1].utf8))
    }

    func signature(_ nonce: String) -> String {
        Base64URL.encode(OpenSSL.hmacSHA256(key: self.csrfKey, Array(nonce.utf8)))
    }

    /// `application/x-www-form-urlencoded`: the first value of each name. A name or value with a
    /// malformed escape (`%` not followed by two hex digits) or whose bytes are not UTF-8 reads
    /// as empty.
    package static func parseForm(_ text: String) -> [String: String] {
        var form: [String: String] = [:]
        for pair in text.utf8.split(separator: UInt8(ascii: "&")) {
            let parts = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            let name = Self.formDecode(parts[0])
            if form[name] == nil {
                form[name] = parts.count > 1 ? Self.formDecode(parts[1]) : ""
            }
        }
        return form
    }

    /// One name or value: `+` is a space, `%XX` a byte. Byte by byte: Foundation's
    /// `replacingOccurrences` and `removingPercentEncoding` took a tenth of the gateway's CPU on
    /// the forgot-password form.
    static func formDecode(_ bytes: Substring.UTF8View) -> String {
        func hex(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var decoded: [UInt8] = []
        decoded.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            index = bytes.index(after: index)
            switch byte {
            case UInt8(ascii: "+"):
                decoded.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard index < bytes.endIndex, let high = hex(bytes[index]) else { return "" }
                index = bytes.index(after: index)
                guard index < bytes.endIndex, let low = hex(bytes[index]) else { return "" }
                index = bytes.index(after: index)
                decoded.append(high << 4 | low)
            default:
                decoded.append(byte)
            }
        }
        return String(validating: decoded, as: UTF8.self) ?? ""
    }

    static func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location])
    }
}
