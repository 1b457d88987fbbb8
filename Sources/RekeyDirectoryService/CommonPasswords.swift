import Foundation

/// The 10,000 most common passwords, lower-cased: `Resources/common-passwords.txt`, written by
/// `scripts/make-common-passwords.py` and read once, on first use.
///
/// The file travels in the target's resource bundle, `Rekey_RekeyDirectoryService.resources`,
/// which SwiftPM puts next to the executable; a deployment installs it beside `rekey-directory`
/// (the Dockerfile does).
enum CommonPasswords {
    static let words: Set<Substring> = {
        guard let url = Bundle.module.url(forResource: "common-passwords", withExtension: "txt"),
              let text = try? String(contentsOf: url, encoding: .utf8)
        else {
            fatalError("common-passwords.txt is missing from Rekey_RekeyDirectoryService.resources; install that folder next to the executable")
        }
        return Set(text.split(separator: "\n").filter { !$0.hasPrefix("#") })
    }()
}
