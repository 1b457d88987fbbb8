import Foundation
import Mustache

/// The mail templates: a subject, a text part and an HTML part per template and locale.
///
/// English and German ship built in. Ops can override any of them from a folder holding files
/// named `TEMPLATE.LOCALE.subject.mustache`, `TEMPLATE.LOCALE.text.mustache` and
/// `TEMPLATE.LOCALE.html.mustache` (for example `password_reset.en.html.mustache`); a file there
/// wins over the built-in one. A locale such as `de-CH` falls back to `de`, then to `en`.
///
/// Variables: `name` (the recipient's name, may be empty), `brand_name` and `brand_color` (the
/// notifier's settings), and each template's own (see
/// ``MailTemplate/requiredVariables``). HTML parts escape what they insert; subject and text
/// parts use triple braces.
package struct MailTemplates: Sendable {
    package enum Part: String, CaseIterable, Sendable {
        case subject, text, html
    }

    private let templates: [String: MustacheTemplate]

    /// The built-in templates, with any found in `overrideFolder` in their place.
    package init(overrideFolder: String? = nil) throws {
        var templates: [String: MustacheTemplate] = [:]
        for (key, source) in BuiltinTemplates.all {
            templates[key] = try MustacheTemplate(string: source)
        }
        if let overrideFolder {
            let names: [String]
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: overrideFolder)
            } catch {
                throw NotifierError.failedPrecondition("cannot read the templates folder \(overrideFolder)")
            }
            for name in names where name.hasSuffix(".mustache") {
                let key = String(name.dropLast(".mustache".count))
                let parts = key.split(separator: ".")
                guard parts.count == 3, MailTemplate(rawValue: String(parts[0])) != nil, Part(rawValue: String(parts[2])) != nil else {
                    throw NotifierError.failedPrecondition(
                        "\(overrideFolder)/\(name) is not named TEMPLATE.LOCALE.(subject|text|html).mustache with a known template"
                    )
                }
                guard let data = FileManager.default.contents(atPath: overrideFolder + "/" + name),
                      let source = String(data: data, encoding: .utf8)
                else {
                    throw NotifierError.failedPrecondition("cannot read \(overrideFolder)/\(name) as UTF-8")
                }
                do {
                    templates[key] = try MustacheTemplate(string: source)
                } catch {
                    throw NotifierError.failedPrecondition("\(overrideFolder)/\(name) is not a valid Mustache template: \(error)")
                }
            }
        }
        self.templates = templates
    }

    /// The HTML part as a whole document: the product name in its colour over the template's
    /// content, in a card, styled inline (mail clients ignore style sheets). A template that is a
    /// whole document already (an override starting with `<!doctype` or `<html`) is left alone.
    package static func branded(_ content: String, name: String, color: String, locale: String) -> String {
        let start = content.prefix(20).lowercased()
        guard !start.hasPrefix("<!doctype"), !start.hasPrefix("<html") else { return content }
        let escapedName = name.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        let safeColor = color.count == 7 && color.hasPrefix("#") && color.dropFirst().allSatisfy(\.isHexDigit) ? color : "#2f5fd0"
        let language = locale.allSatisfy({ $0.isASCII && ($0.isLetter || $0 == "-") }) ? locale : "en"
        return """
            <!doctype html>
            <html lang="\(language)">
            <head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>\(escapedName)</title></head>
            <body style="margin:0;padding:24px 12px;background:#f5f7fa;color:#1d2430;font:16px/1.5 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif">
            <div style="max-width:560px;margin:0 auto;background:#ffffff;border:1px solid #dfe3ea;border-radius:10px;padding:24px">
            <div style="font-weight:700;font-size:18px;color:\(safeColor);margin:0 0 16px">\(escapedName)</div>
            \(content)
            </div>
            </body>
            </html>
            """
    }

    /// The locales tried for `locale`, most specific first.
    static func fallbacks(_ locale: String) -> [String] {
        var result: [String] = []
        var current = locale.lowercased()
        while !current.isEmpty {
            result.append(current)
            guard let dash = current.lastIndex(of: "-") else { break }
            current = String(current[..<dash])
        }
        if !result.contains("en") { result.append("en") }
        return result
    }

    /// Renders one part, in the most specific locale that has it.
    /// Template hygiene, for the start-up log and the domain check: every template has a text and
    /// an HTML part in every locale, and no HTML part loads a remote image (a tracking pixel, or a
    /// logo that spam filters and privacy-minded clients hold against the mail).
    package func hygieneFindings() -> [DomainCheck.Finding] {
        var findings: [DomainCheck.Finding] = []
        let locales = Set(self.templates.keys.compactMap { $0.split(separator: ".").dropFirst().first.map(String.init) }).sorted()
        for template in MailTemplate.allCases {
            var variables = ["name": "Jane", "brand_name": "Rekey", "brand_color": "#2f5fd0"]
            for key in template.requiredVariables { variables[key] = key == "link" ? "https://example.invalid/x" : "x" }
            for locale in locales {
                let text = self.render(template, .text, locale: locale, variables: variables)
                let html = self.render(template, .html, locale: locale, variables: variables)
                for (part, rendered) in [("text", text), ("HTML", html)] where rendered.locale == locale
                    && rendered.text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                    findings.append(DomainCheck.Finding(
                        check: "template", status: .warning,
                        summary: "\(template.rawValue) (\(locale)) has an empty \(part) part: mail with only one part looks like spam to filters",
                        fix: "give \(template.rawValue).\(locale).\(part == "text" ? "text" : "html").mustache content in templates_dir"
                    ))
                }
                if html.locale == locale, html.text.range(of: #"<img[^>]*\ssrc\s*=\s*["']?(https?:)?//"#, options: [.regularExpression, .caseInsensitive]) != nil {
                    findings.append(DomainCheck.Finding(
                        check: "template", status: .warning,
                        summary: "\(template.rawValue) (\(locale)) loads a remote image: tracking pixels and remote images count against the mail in spam filters",
                        fix: "remove the <img> with a remote src from \(template.rawValue).\(locale).html.mustache"
                    ))
                }
            }
        }
        return findings
    }

    package func render(_ template: MailTemplate, _ part: Part, locale: String, variables: [String: String]) -> (text: String, locale: String) {
        for candidate in Self.fallbacks(locale) {
            if let found = self.templates["\(template.rawValue).\(candidate).\(part.rawValue)"] {
                return (found.render(variables), candidate)
            }
        }
        return ("", "en")
    }
}

/// The templates that ship with Rekey.
enum BuiltinTemplates {
    static let all: [String: String] = [
        "password_reset.en.subject": "Reset your password",
        "password_reset.en.text": """
            Hello{{#name}} {{{name}}}{{/name}},

            Someone asked to reset the password of your account. To choose a new password, open this link:

            {{{link}}}

            The link works once and expires in {{{expires_in}}}. If you did not ask for this, ignore this email: your password stays as it is.
            """,
        "password_reset.en.html": """
            <p>Hello{{#name}} {{name}}{{/name}},</p>
            <p>Someone asked to reset the password of your account. To choose a new password, open this link:</p>
            <p><a href="{{link}}" style="display:inline-block;background:{{brand_color}};color:#ffffff;padding:10px 18px;border-radius:6px;text-decoration:none;font-weight:600">Reset your password</a></p>
            <p>The link works once and expires in {{expires_in}}. If you did not ask for this, ignore this email: your password stays as it is.</p>
            """,
        "email_verification.en.subject": "Confirm your email address",
        "email_verification.en.text": """
            Hello{{#name}} {{{name}}}{{/name}},

            Please confirm that this is your email address by opening this link:

            {{{link}}}

            The link expires in {{{expires_in}}}.
            """,
        "email_verification.en.html": """
            <p>Hello{{#name}} {{name}}{{/name}},</p>
            <p>Please confirm that this is your email address:</p>
            <p><a href="{{link}}" style="display:inline-block;background:{{brand_color}};color:#ffffff;padding:10px 18px;border-radius:6px;text-decoration:none;font-weight:600">Confirm your email address</a></p>
            <p>The link expires in {{expires_in}}.</p>
            """,
        "password_changed.en.subject": "Your password was changed",
        "password_changed.en.text": """
            Hello{{#name}} {{{name}}}{{/name}},

            The password of your account was just changed. If this was you, there is nothing to do.

            If it was not you, reset your password at once{{#reset_link}}: {{{reset_link}}}{{/reset_link}}, and contact support.
            """,
        "password_changed.en.html": """
            <p>Hello{{#name}} {{name}}{{/name}},</p>
            <p>The password of your account was just changed. If this was you, there is nothing to do.</p>
            <p>If it was not you, reset your password at once{{#reset_link}} (<a href="{{reset_link}}">reset it here</a>){{/reset_link}}, and contact support.</p>
            """,
        "primary_email_changed.en.subject": "Your account's email address was changed",
        "primary_email_changed.en.text": """
            Hello{{#name}} {{{name}}}{{/name}},

            The email address of your account was changed from this address to {{{new_address}}} by {{{changed_by}}} on {{{changed_at}}}. Mail about your account, password resets included, now goes there.

            If you did not ask for this, contact support at once.
            """,
        "primary_email_changed.en.html": """
            <p>Hello{{#name}} {{name}}{{/name}},</p>
            <p>The email address of your account was changed from this address to <strong>{{new_address}}</strong> by {{changed_by}} on {{changed_at}}. Mail about your account, password resets included, now goes there.</p>
            <p>If you did not ask for this, contact support at once.</p>
            """,
        "test.en.subject": "{{{brand_name}}} test message",
        "test.en.text": """
            This is a test message from {{{brand_name}}}. It went through the same path as password reset email.
            If you can read it, mail to this address arrives.
            """,
        "test.en.html": """
            <p>This is a test message from {{brand_name}}. It went through the same path as password reset email.</p>
            <p>If you can read it, mail to this address arrives.</p>
            """,

        "password_reset.de.subject": "Passwort zurücksetzen",
        "password_reset.de.text": """
            Hallo{{#name}} {{{name}}}{{/name}},

            jemand hat darum gebeten, das Passwort Ihres Kontos zurückzusetzen. Um ein neues Passwort zu wählen, öffnen Sie diesen Link:

            {{{link}}}

            Der Link funktioniert einmal und läuft in {{{expires_in}}} ab. Wenn Sie das nicht waren, ignorieren Sie diese E-Mail: Ihr Passwort bleibt unverändert.
            """,
        "password_reset.de.html": """
            <p>Hallo{{#name}} {{name}}{{/name}},</p>
            <p>jemand hat darum gebeten, das Passwort Ihres Kontos zurückzusetzen. Um ein neues Passwort zu wählen, öffnen Sie diesen Link:</p>
            <p><a href="{{link}}" style="display:inline-block;background:{{brand_color}};color:#ffffff;padding:10px 18px;border-radius:6px;text-decoration:none;font-weight:600">Passwort zurücksetzen</a></p>
            <p>Der Link funktioniert einmal und läuft in {{expires_in}} ab. Wenn Sie das nicht waren, ignorieren Sie diese E-Mail: Ihr Passwort bleibt unverändert.</p>
            """,
        "email_verification.de.subject": "Bestätigen Sie Ihre E-Mail-Adresse",
        "email_verification.de.text": """
            Hallo{{#name}} {{{name}}}{{/name}},

            bitte bestätigen Sie mit diesem Link, dass dies Ihre E-Mail-Adresse ist:

            {{{link}}}

            Der Link läuft in {{{expires_in}}} ab.
            """,
        "email_verification.de.html": """
            <p>Hallo{{#name}} {{name}}{{/name}},</p>
            <p>bitte bestätigen Sie, dass dies Ihre E-Mail-Adresse ist:</p>
            <p><a href="{{link}}" style="display:inline-block;background:{{brand_color}};color:#ffffff;padding:10px 18px;border-radius:6px;text-decoration:none;font-weight:600">E-Mail-Adresse bestätigen</a></p>
            <p>Der Link läuft in {{expires_in}} ab.</p>
            """,
        "password_changed.de.subject": "Ihr Passwort wurde geändert",
        "password_changed.de.text": """
            Hallo{{#name}} {{{name}}}{{/name}},

            das Passwort Ihres Kontos wurde soeben geändert. Wenn Sie das waren, ist nichts weiter zu tun.

            Wenn nicht, setzen Sie Ihr Passwort sofort zurück{{#reset_link}}: {{{reset_link}}}{{/reset_link}}, und wenden Sie sich an den Support.
            """,
        "password_changed.de.html": """
            <p>Hallo{{#name}} {{name}}{{/name}},</p>
            <p>das Passwort Ihres Kontos wurde soeben geändert. Wenn Sie das waren, ist nichts weiter zu tun.</p>
            <p>Wenn nicht, setzen Sie Ihr Passwort sofort zurück{{#reset_link}} (<a href="{{reset_link}}">hier</a>){{/reset_link}}, und wenden Sie sich an den Support.</p>
            """,
        "primary_email_changed.de.subject": "Die E-Mail-Adresse Ihres Kontos wurde geändert",
        "primary_email_changed.de.text": """
            Hallo{{#name}} {{{name}}}{{/name}},

            die E-Mail-Adresse Ihres Kontos wurde von dieser Adresse auf {{{new_address}}} geändert, von {{{changed_by}}} am {{{changed_at}}}. Post zu Ihrem Konto, auch zum Zurücksetzen des Passworts, geht jetzt dorthin.

            Wenn Sie das nicht veranlasst haben, wenden Sie sich sofort an den Support.
            """,
        "primary_email_changed.de.html": """
            <p>Hallo{{#name}} {{name}}{{/name}},</p>
            <p>die E-Mail-Adresse Ihres Kontos wurde von dieser Adresse auf <strong>{{new_address}}</strong> geändert, von {{changed_by}} am {{changed_at}}. Post zu Ihrem Konto, auch zum Zurücksetzen des Passworts, geht jetzt dorthin.</p>
            <p>Wenn Sie das nicht veranlasst haben, wenden Sie sich sofort an den Support.</p>
            """,
        "test.de.subject": "{{{brand_name}}}: Testnachricht",
        "test.de.text": """
            Dies ist eine Testnachricht von {{{brand_name}}}. Sie lief über denselben Weg wie E-Mails zum Zurücksetzen des Passworts.
            Wenn Sie sie lesen können, kommt Post an diese Adresse an.
            """,
        "test.de.html": """
            <p>Dies ist eine Testnachricht von {{brand_name}}. Sie lief über denselben Weg wie E-Mails zum Zurücksetzen des Passworts.</p>
            <p>Wenn Sie sie lesen können, kommt Post an diese Adresse an.</p>
            """,
    ]
}
