/// The gateway's pages: plain, server-rendered HTML that works without JavaScript.
enum HTML {
    static func escape(_ text: String) -> String {
        // Byte by byte: the five characters are ASCII, so no UTF-8 sequence can contain them, and
        // most text (ids, names, addresses) has none of them and is returned as it is.
        guard text.utf8.contains(where: { $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: ">") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "'") }) else {
            return text
        }
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count + 16)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "&"): out.append(contentsOf: "&amp;".utf8)
            case UInt8(ascii: "<"): out.append(contentsOf: "&lt;".utf8)
            case UInt8(ascii: ">"): out.append(contentsOf: "&gt;".utf8)
            case UInt8(ascii: "\""): out.append(contentsOf: "&quot;".utf8)
            case UInt8(ascii: "'"): out.append(contentsOf: "&#39;".utf8)
            default: out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// An end-user page: one card under the brand, with the shared stylesheet.
    static func page(_ title: String, _ body: String) -> String {
        """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(escape(title)) · \(escape(Brand.current.name))</title>
        <link rel="stylesheet" href="\(Assets.stylesheetPath)">
        <link rel="icon" href="\(Assets.iconPath)" type="image/svg+xml">
        </head>
        <body>
        <div class="card-page">
        <header>\(brandMark(link: "/"))</header>
        <main class="card">
        <h1>\(escape(title))</h1>
        \(body)
        </main>
        </div>
        </body>
        </html>
        """
    }

    /// The logo (or the name's first letter) and the product name, linking to `link`.
    static func brandMark(link: String, suffix: String = "") -> String {
        let brand = Brand.current
        let mark = brand.logoURL.map { "<img src=\"\(escape($0))\" alt=\"\">" }
            ?? "<span class=\"mark\" aria-hidden=\"true\">\(escape(String(brand.name.prefix(1)).uppercased()))</span>"
        return "<a class=\"brand\" href=\"\(escape(link))\">\(mark)<span>\(escape(brand.name))\(suffix.isEmpty ? "" : " " + escape(suffix))</span></a>"
    }

    static func csrfField(_ token: String) -> String {
        "<input type=\"hidden\" name=\"csrf\" value=\"\(escape(token))\">"
    }

    static func notice(_ text: String?) -> String {
        text.map { "<p class=\"notice\">\(escape($0))</p>" } ?? ""
    }

    static func errors(_ problems: [String]) -> String {
        guard !problems.isEmpty else { return "" }
        return "<div class=\"error\" role=\"alert\"><ul>" + problems.map { "<li>\(escape($0))</li>" }.joined() + "</ul></div>"
    }

    static func signOn(csrf: String, notice: String?, errors: [String], email: String, next: String? = nil) -> String {
        page("Sign in", """
            \(Self.notice(notice))\(Self.errors(errors))
            <form method="post" action="/signin">
            \(csrfField(csrf))\(next.map { "<input type=\"hidden\" name=\"next\" value=\"\(escape($0))\">" } ?? "")
            <label for="email">Email address</label>
            <input id="email" name="email" type="email" autocomplete="username" required value="\(escape(email))">
            <label for="password">Password</label>
            <input id="password" name="password" type="password" autocomplete="current-password" required>
            <button type="submit">Sign in</button>
            </form>
            <p><a href="/password/forgot">Forgot password?</a></p>
            """)
    }

    static func signedIn(csrf: String, name: String, email: String, staff: Bool) -> String {
        page("Signed in", """
            <p>You are signed in as <strong>\(escape(name))</strong> (\(escape(email))).</p>
            \(staff ? "<p><a class=\"button\" href=\"/console\">Open the admin console</a></p>" : "")
            <form method="post" action="/signout">\(csrfField(csrf))<button type="submit" class="secondary">Sign out</button></form>
            """)
    }

    static func forgot(csrf: String, errors: [String]) -> String {
        page("Forgot password", """
            \(Self.errors(errors))
            <p>Enter the email address of your account. We will send a link to choose a new password.</p>
            <form method="post" action="/password/forgot">
            \(csrfField(csrf))
            <label for="email">Email address</label>
            <input id="email" name="email" type="email" autocomplete="username" required>
            <button type="submit">Send the link</button>
            </form>
            <p><a href="/">Back to sign in</a></p>
            """)
    }

    static var forgotSent: String { page("Check your email", """
        <p class="notice">If an account exists for that address, we have sent a link to reset the password. \
        It can take a few minutes to arrive; check the spam or junk folder too.</p>
        <p><a href="/">Back to sign in</a></p>
        """) }

    static func resetForm(csrf: String, token: String, errors: [String]) -> String {
        page("Choose a new password", """
            \(Self.errors(errors))
            <form method="post" action="/password/reset">
            \(csrfField(csrf))
            <input type="hidden" name="token" value="\(escape(token))">
            <label for="password">New password (at least 12 characters)</label>
            <input id="password" name="password" type="password" autocomplete="new-password" required minlength="12" maxlength="128">
            <label for="confirm">The same password again</label>
            <input id="confirm" name="confirm" type="password" autocomplete="new-password" required>
            <button type="submit">Set the password</button>
            </form>
            """)
    }

    static var resetInvalid: String { page("This link cannot be used", """
        <p class="error">The link is unknown, was already used, or has expired (reset links work once, for a short time).</p>
        <p><a href="/password/forgot">Ask for a new link</a></p>
        """) }

    static func verifyForm(csrf: String, token: String) -> String {
        page("Confirm your email address", """
            <form method="post" action="/email/verify">
            \(csrfField(csrf))
            <input type="hidden" name="token" value="\(escape(token))">
            <button type="submit">Confirm my email address</button>
            </form>
            """)
    }

    static var verifyInvalid: String { page("This link cannot be used", """
        <p class="error">The link is unknown, was already used, or has expired. Ask your administrator to send a new one.</p>
        """) }

    static var verified: String { page("Email address confirmed", """
        <p class="notice">Thank you: your email address is confirmed.</p>
        <p><a href="/">Sign in</a></p>
        """) }

    static var unavailable: String { page("Temporarily unavailable", """
        <p class="error">Something we depend on is not answering right now. Please try again in a minute.</p>
        """) }

    static var forbidden: String { page("Please try again", """
        <p class="error">This form has expired or was not sent from this site. Go back, reload the page and try again.</p>
        """) }

    static var notFound: String { page("Not found", "<p>There is no page here. <a href=\"/\">Sign in</a></p>") }
}
