import RekeyNotifierAPI
import RekeyTokensAPI

/// The services' enum values by the names a diagnosis shows.
enum DiagnosisNames {

    static func kind(_ kind: Rekey_Tokens_V1_TokenEvent.Kind) -> String {
        switch kind {
        case .issued: return "issued"
        case .redeemed: return "redeemed"
        case .redeemFailed: return "redeem_failed"
        case .rateLimited: return "rate_limited"
        case .revoked: return "revoked"
        case .opened: return "opened"
        default: return "unknown"
        }
    }

    static func purpose(_ purpose: Rekey_Tokens_V1_Purpose) -> String {
        switch purpose {
        case .passwordReset: return "password_reset"
        case .emailVerification: return "email_verification"
        default: return "unknown"
        }
    }

    static func state(_ state: Rekey_Tokens_V1_TokenState) -> String {
        switch state {
        case .live: return "live"
        case .used: return "used"
        case .expired: return "expired"
        case .revoked: return "revoked"
        default: return "unknown"
        }
    }

    /// A message's state, as the admin API names it.
    static func state(_ state: Rekey_Notifier_V1_MessageState) -> String {
        MessageNames.state(state)
    }

    static func outcome(_ outcome: Rekey_Notifier_V1_AttemptOutcome) -> String {
        switch outcome {
        case .accepted: return "accepted"
        case .temporaryFailure: return "temporary failure"
        case .permanentFailure: return "permanent failure"
        case .interrupted: return "interrupted"
        default: return "in progress"
        }
    }

    /// How a link was opened, in words: "3 s after delivery by a link scanner (HEAD, no cookies)".
    static func opening(_ event: Rekey_Tokens_V1_TokenEvent, deliveredAt: Int64?) -> String {
        let who = switch event.userAgentClass {
        case "browser": "from a browser"
        case "scanner": "by a link scanner"
        case "headless": "by a headless browser"
        case "tool": "by a program (not a browser)"
        case "empty": "by a client that sent no User-Agent"
        default: "by an unknown client"
        }
        let how = event.method.isEmpty ? "" : " (\(event.method), \(event.hadCookies ? "with this site's cookies" : "no cookies"))"
        guard let deliveredAt, event.atUnixMs >= deliveredAt else { return who + how }
        let seconds = (event.atUnixMs - deliveredAt) / 1000
        let after = seconds < 120 ? "\(seconds) s" : seconds < 7200 ? "\(seconds / 60) min" : "\(seconds / 3600) h"
        return "\(after) after delivery \(who)\(how)"
    }
}
