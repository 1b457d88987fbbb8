import NIOCore
import RekeyDirectoryAPI
import RekeyDirectoryService
import RekeyGateway
import RekeyNotifierAPI
import RekeyNotifierService
import RekeyProtobuf
import RekeyRPC
import RekeyRPCNIO
import RekeyTokensAPI

/// The fuzz targets of `make fuzz`, one function per input format: each must never trap on any
/// input, and checks what must hold of whatever it accepted. The `Fuzz*` executables hand
/// libFuzzer's inputs to them; the tests replay the committed seeds and crash cases.
package enum FuzzTargets {
    /// Every target by name, for the replay test.
    package static let all: [String: @Sendable ([UInt8]) -> Void] = [
        "FuzzFrames": frames, "FuzzMessages": messages, "FuzzCSV": csv, "FuzzForms": forms, "FuzzMIME": mime, "FuzzSMTPReply": smtpReply,
    ]

    /// the RPC frame decoder, fed the input in pieces of the sizes its first byte
    /// picks, as a socket would. Must never trap; frames it yields must be within the limit.
    package static func frames(_ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        let step = Int(first % 17) + 1
        var decoder = FrameDecoder(maxFrameSize: 4096)
        var buffer = ByteBuffer()
        var index = 1
        while index < bytes.count {
            buffer.writeBytes(bytes[index..<min(index + step, bytes.count)])
            index += step
            do {
                while let frame = try decoder.decode(buffer: &buffer) {
                    precondition(frame.readableBytes <= 4096, "a frame over the limit was accepted")
                }
            } catch {
                return  // refusing a frame is fine; the connection would be closed
            }
        }
        _ = try? decoder.decodeLast(buffer: &buffer, seenEOF: true)
    }

    /// the envelope and every request message of the three services, decoded with
    /// protobuf-c (and the string checks), then encoded again and decoded once more: whatever decodes
    /// must survive the round trip unchanged. The first byte picks the message type.
    package static func messages(_ bytes: [UInt8]) {
        guard let selector = bytes.first else { return }
        let payload = Array(bytes.dropFirst())
        let decoders: [() -> Void] = [
            { roundTrip(Rekey_Rpc_V1_Request.self, payload) },
            { roundTrip(Rekey_Health_V1_HealthCheckRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_AddEmailRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_AppendImportRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_AuthenticateApiKeyRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_BeginImportRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_CheckPasswordPolicyRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_CheckPermissionRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_CommitImportRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_CreateApiKeyRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_CreateOrganizationRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_CreateRoleRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_CreateSessionRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_CreateUserRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_DeleteOrganizationRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_EmailChangeRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_FindUserByEmailRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_GetOrganizationRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_GetUserRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_ImportUsersRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_ListAuditRecordsRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_ListOrganizationsRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_ListRolesRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_ListUsersRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_RevokeApiKeyRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_RevokeSessionsRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_SearchUsersRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_SetPasswordRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_SetUserStateRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_UpdateOrganizationRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_UpdateUserRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_ValidateSessionRequest.self, payload) },
            { roundTrip(Rekey_Directory_V1_VerifyPasswordRequest.self, payload) },
            { roundTrip(Rekey_Notifier_V1_EnqueueRequest.self, payload) },
            { roundTrip(Rekey_Notifier_V1_GetMessageRequest.self, payload) },
            { roundTrip(Rekey_Notifier_V1_GetQueueStatsRequest.self, payload) },
            { roundTrip(Rekey_Notifier_V1_ListMessagesRequest.self, payload) },
            { roundTrip(Rekey_Notifier_V1_ListSuppressionsRequest.self, payload) },
            { roundTrip(Rekey_Notifier_V1_RemoveSuppressionRequest.self, payload) },
            { roundTrip(Rekey_Notifier_V1_SendTestRequest.self, payload) },
            { roundTrip(Rekey_Tokens_V1_GetRateLimitStatusRequest.self, payload) },
            { roundTrip(Rekey_Tokens_V1_IssueTokenRequest.self, payload) },
            { roundTrip(Rekey_Tokens_V1_ListUserEventsRequest.self, payload) },
            { roundTrip(Rekey_Tokens_V1_ListUserTokensRequest.self, payload) },
            { roundTrip(Rekey_Tokens_V1_PeekTokenRequest.self, payload) },
            { roundTrip(Rekey_Tokens_V1_RedeemTokenRequest.self, payload) },
            { roundTrip(Rekey_Tokens_V1_RevokeUserTokensRequest.self, payload) },
        ]
        decoders[Int(selector) % decoders.count]()
    }

    /// the CSV reader of imports. Must never trap; every record it yields has a line.
    package static func csv(_ bytes: [UInt8]) {
        var line = 0
        for record in CSVReader.records(bytes) {
            precondition(record.line > line, "records go forward through the file")
            line = record.line
        }
    }

    /// the gateway's HTML form parser (application/x-www-form-urlencoded).
    package static func forms(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        let form = Web.parseForm(text)
        precondition(form.count <= text.utf8.count + 1, "more fields than the body could hold")
    }

    /// the MIME header encoder. Whatever text comes in (a user's name, a subject),
    /// the header lines that go out are 7-bit, without bare CR or LF, and at most 998 characters.
    package static func mime(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        guard (try? MIMEMessage.checkHeaderValue(text, field: "subject")) != nil else { return }
        let header = MIMEMessage.fold("Subject", MIMEMessage.encodedWords(text))
        for line in header.split(separator: "\r\n", omittingEmptySubsequences: false) {
            precondition(line.utf8.count <= 998, "a header line over 998 characters")
            precondition(line.utf8.allSatisfy { $0 < 0x80 && $0 != 0x0D && $0 != 0x0A }, "a header line that is not 7-bit or holds a line break")
        }
    }

    /// the SMTP reply parser, a line at a time as the relay sends them, and the
    /// enhanced status code read from a reply's text.
    package static func smtpReply(_ bytes: [UInt8]) {
        var lines: [String] = []
        var code = 0
        for raw in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
            let line = raw.last == 0x0D ? Array(raw.dropLast()) : Array(raw)
            guard let parsed = SMTPReplyLine(parsing: line) else { return }
            precondition((0...999).contains(parsed.code))
            lines.append(parsed.text)
            code = parsed.code
            if parsed.isLast { break }
        }
        let (status, _) = SMTPReply(code: code, lines: lines).enhancedStatusAndText
        precondition(status.isEmpty || status.first.map { "245".contains($0) } == true)
    }
}

/// Decodes `bytes` as `M`; whatever decodes must encode and decode again to the same message.
private func roundTrip<M: ProtobufMessage & Equatable>(_ type: M.Type, _ bytes: [UInt8]) {
    guard let message = try? M(serializedBytes: bytes) else { return }
    guard let encoded = try? message.serializedBytes() else {
        preconditionFailure("\(M.self) decoded but does not encode again")
    }
    let again = try? M(serializedBytes: encoded)
    precondition(again == message, "\(M.self) changed in a round trip")
}
