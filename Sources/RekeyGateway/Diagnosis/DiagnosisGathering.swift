import RekeyDirectoryAPI
import RekeyNotifierAPI
import RekeyRPC
import RekeyTokensAPI

/// Asks the three services what they know about a user: who and where (directory), what was
/// asked (reset-token), what the mail system did and how it is doing (notifier). Side by side;
/// a service that does not answer is noted in `unreachable`, never fatal.
struct DiagnosisGathering: Sendable {
    let backends: Backends

    /// The most messages and tokens of the window a diagnosis reads (newest first).
    static let maximumItems = 2000

    /// Throws only what the directory says about the input itself (a query it refuses).
    func gather(input: String, since: Int64, canSeeAddresses: Bool, requestID: String) async throws -> DiagnosisEvidence {
        var evidence = DiagnosisEvidence(input: input, since: since, canSeeAddresses: canSeeAddresses)
        let options = Backends.options(requestID)

        // 1. Who and where.
        do {
            (evidence.user, evidence.matched, evidence.candidates) = try await self.resolve(evidence, options: options)
        } catch let error where Self.isDown(error) {
            evidence.unreachable.append("directory")
        }

        // 2-4, side by side: what was asked, what the mail system did, how the platform is.
        let found = evidence
        let user = found.user
        async let events = self.events(user, found, options)
        async let tokens = self.tokens(user, found, options)
        async let limits = self.limits(user, options)
        async let messages = self.messages(user, found, options)
        async let suppression = self.suppression(found.primary?.address ?? (input.contains("@") ? input : nil), options)
        async let stats = self.stats(options)
        async let domainCheck = self.domainCheck(options)

        let eventsDown, tokensDown, messagesDown, suppressionDown, statsDown: Bool
        (evidence.events, eventsDown) = await events
        (evidence.tokens, tokensDown) = await tokens
        (evidence.limits, _) = await limits
        (evidence.messages, messagesDown) = await messages
        (evidence.suppression, suppressionDown) = await suppression
        (evidence.queue, statsDown) = await stats
        evidence.domainCheck = await domainCheck
        if eventsDown || tokensDown { evidence.unreachable.append("reset-token") }
        if messagesDown || suppressionDown || statsDown { evidence.unreachable.append("notifier") }
        evidence.unreachable = Array(Set(evidence.unreachable)).sorted()
        return evidence
    }

    private func resolve(_ evidence: DiagnosisEvidence, options: CallOptions) async throws -> (Rekey_Directory_V1_User?, Rekey_Directory_V1_EmailIdentity?, [String]) {
        let directory = self.backends.directory
        let input = evidence.input
        if input.contains("@") {
            var find = Rekey_Directory_V1_FindUserByEmailRequest()
            find.email = input
            do {
                let found = try await directory.findUserByEmail(find, options: options)
                return (found.user, found.matched, [])
            } catch let error as RPCError where error.code == .notFound || error.code == .invalidArgument {
                return (nil, nil, [])
            }
        }
        if input.hasPrefix("u_") {
            var get = Rekey_Directory_V1_GetUserRequest()
            get.userID = input
            do {
                return (try await directory.getUser(get, options: options).user, nil, [])
            } catch let error as RPCError where error.code == .notFound || error.code == .invalidArgument {
                return (nil, nil, [])
            }
        }
        var search = Rekey_Directory_V1_SearchUsersRequest()
        search.query = input
        search.scope = .all
        search.pageSize = 10
        let users = try await directory.searchUsers(search, options: options).users
        if users.count == 1 { return (users[0], nil, []) }
        return (nil, nil, users.map { "\($0.id)  \($0.name)  <\(evidence.mask($0.emails.first(where: \.primary)?.address ?? ""))>" })
    }

    private static func isDown(_ error: any Error) -> Bool {
        guard let error = error as? RPCError else { return true }
        return error.code == .unavailable || error.code == .deadlineExceeded
    }

    private func events(_ user: Rekey_Directory_V1_User?, _ evidence: DiagnosisEvidence, _ options: CallOptions) async -> ([Rekey_Tokens_V1_TokenEvent], Bool) {
        guard let user else { return ([], false) }
        var request = Rekey_Tokens_V1_ListUserEventsRequest()
        request.userID = user.id
        request.sinceUnixMs = evidence.since
        request.limit = 500
        do {
            return (try await self.backends.tokens.listUserEvents(request, options: options).events, false)
        } catch {
            return ([], Self.isDown(error))
        }
    }

    private func tokens(_ user: Rekey_Directory_V1_User?, _ evidence: DiagnosisEvidence, _ options: CallOptions) async -> ([Rekey_Tokens_V1_TokenInfo], Bool) {
        guard let user else { return ([], false) }
        var request = Rekey_Tokens_V1_ListUserTokensRequest()
        request.userID = user.id
        request.pageSize = 100
        var tokens: [Rekey_Tokens_V1_TokenInfo] = []
        do {
            // Newest first: stop at the window's start, or at the cap.
            while tokens.count < Self.maximumItems {
                let page = try await self.backends.tokens.listUserTokens(request, options: options)
                tokens += page.tokens.filter { $0.issuedAtUnixMs >= evidence.since }
                guard !page.nextPageToken.isEmpty, page.tokens.last.map({ $0.issuedAtUnixMs >= evidence.since }) == true else { break }
                request.pageToken = page.nextPageToken
            }
            return (tokens, false)
        } catch {
            return (tokens, Self.isDown(error))
        }
    }

    private func limits(_ user: Rekey_Directory_V1_User?, _ options: CallOptions) async -> ([Rekey_Tokens_V1_RateLimit], Bool) {
        guard let user else { return ([], false) }
        var request = Rekey_Tokens_V1_GetRateLimitStatusRequest()
        request.userID = user.id
        request.purpose = .passwordReset
        do {
            return (try await self.backends.tokens.getRateLimitStatus(request, options: options).limits, false)
        } catch {
            return ([], Self.isDown(error))
        }
    }

    private func messages(_ user: Rekey_Directory_V1_User?, _ evidence: DiagnosisEvidence, _ options: CallOptions) async -> ([Rekey_Notifier_V1_Message], Bool) {
        var request = Rekey_Notifier_V1_ListMessagesRequest()
        if let user {
            request.userID = user.id
        } else if evidence.input.contains("@") {
            request.toAddress = evidence.input
        } else {
            return ([], false)
        }
        request.sinceUnixMs = evidence.since
        request.pageSize = 100
        var messages: [Rekey_Notifier_V1_Message] = []
        do {
            while messages.count < Self.maximumItems {
                let page = try await self.backends.notifier.listMessages(request, options: options)
                messages += page.messages
                guard !page.nextPageToken.isEmpty else { break }
                request.pageToken = page.nextPageToken
            }
            return (messages, false)
        } catch {
            return (messages, Self.isDown(error))
        }
    }

    private func suppression(_ address: String?, _ options: CallOptions) async -> (Rekey_Notifier_V1_Suppression?, Bool) {
        guard let address else { return (nil, false) }
        var request = Rekey_Notifier_V1_ListSuppressionsRequest()
        request.address = address
        do {
            return (try await self.backends.notifier.listSuppressions(request, options: options).suppressions.first, false)
        } catch {
            return (nil, Self.isDown(error))
        }
    }

    /// The last domain check (the notifier keeps one for a minute); a failure here is not the
    /// notifier being down (an older notifier does not have the call), so it only goes missing.
    private func domainCheck(_ options: CallOptions) async -> Rekey_Notifier_V1_CheckDomainResponse? {
        try? await self.backends.notifier.checkDomain(.init(), options: options)
    }

    private func stats(_ options: CallOptions) async -> (Rekey_Notifier_V1_QueueStats?, Bool) {
        do {
            return (try await self.backends.notifier.getQueueStats(.init(), options: options), false)
        } catch {
            return (nil, Self.isDown(error))
        }
    }
}
