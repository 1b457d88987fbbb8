/// Workload identities for mutual TLS between the services: `spiffe://<trust domain>/<workload>`,
/// carried as a URI subject alternative name in each certificate.
package enum SPIFFEID {
    /// A trust domain: 1-255 of lower-case letters, digits, `.`, `-` and `_` (the SPIFFE ID spec).
    package static func validTrustDomain(_ value: String) -> Bool {
        (1...255).contains(value.utf8.count) && value.utf8.allSatisfy(Self.isAllowed)
    }

    /// A workload name (one path segment): 1-64 of the same characters.
    package static func validWorkload(_ value: String) -> Bool {
        (1...64).contains(value.utf8.count) && value.utf8.allSatisfy(Self.isAllowed)
    }

    package static func make(trustDomain: String, workload: String) -> String {
        "spiffe://\(trustDomain)/\(workload)"
    }

    /// The workload of `uri` in `trustDomain`, or nil when it is not a SPIFFE ID of that domain
    /// with a one-segment path.
    package static func workload(of uri: String, trustDomain: String) -> String? {
        let prefix = "spiffe://\(trustDomain)/"
        guard uri.hasPrefix(prefix) else { return nil }
        let workload = String(uri.dropFirst(prefix.count))
        return Self.validWorkload(workload) ? workload : nil
    }

    private static func isAllowed(_ byte: UInt8) -> Bool {
        (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
    }
}
