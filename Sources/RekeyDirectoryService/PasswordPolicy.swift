/// The rules a new password must follow: 12 to 128 characters, not one of the 10,000 most common
/// passwords, and not the user's own name or email address.
package struct PasswordPolicy: Sendable {
    package static let minimumLength = 12
    package static let maximumLength = 128

    private let common: Set<Substring>

    package init() {
        self.common = CommonPasswords.words
    }

    /// Every rule `password` breaks, in words a person can act on; empty when it is acceptable.
    package func problems(with password: String, name: String, emails: [String]) -> [String] {
        var problems: [String] = []
        let length = password.count
        if length < Self.minimumLength {
            problems.append("the password must have at least \(Self.minimumLength) characters (it has \(length))")
        }
        if length > Self.maximumLength {
            problems.append("the password must have at most \(Self.maximumLength) characters (it has \(length))")
        }
        let lowered = password.lowercased()
        if self.common.contains(Substring(lowered)) {
            problems.append("the password is one of the most common passwords")
        }
        var personal = [name.lowercased()]
        for email in emails {
            let address = email.lowercased()
            personal.append(address)
            if let local = address.split(separator: "@").first {
                personal.append(String(local))
            }
        }
        if personal.contains(where: { !$0.isEmpty && $0 == lowered }) {
            problems.append("the password must not be your name or email address")
        }
        return problems
    }
}
