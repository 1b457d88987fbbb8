import Crypto
import Foundation
import RekeyInput
import SwiftASN1
import X509

/// The certificates of one Rekey deployment: a CA of its own, and short-lived certificates that
/// name each workload as a SPIFFE ID (`spiffe://<trust domain>/<workload>`), for mutual TLS
/// between the services. Keys are ECDSA P-256; files are PEM (keys in PKCS #8).
package enum DeploymentPKI {
    /// The workloads that hold certificates: the four processes, and `healthcheck`-style tools use
    /// the certificate of the service they check.
    package static let workloads = ["gateway", "directory", "reset-token", "notifier"]

    package struct Failure: Error, CustomStringConvertible {
        package var description: String
        package init(_ description: String) { self.description = description }
    }

    /// A certificate and its private key, as PEM text.
    package struct Issued: Sendable {
        package var certificatePEM: String
        package var keyPEM: String
        package var notValidAfter: Date
    }

    /// A new deployment CA, valid from five minutes ago (clocks differ) for `validity`.
    package static func makeCA(trustDomain: String, validity: TimeInterval = 10 * 365 * 86_400, now: Date = Date()) throws -> Issued {
        guard SPIFFEID.validTrustDomain(trustDomain) else {
            throw Failure("trust domain `\(trustDomain.prefix(80))` must be 1-255 of a-z, 0-9, '.', '-' and '_'")
        }
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            OrganizationName("Rekey")
            CommonName("Rekey deployment CA (\(trustDomain))")
        }
        let notAfter = now.addingTimeInterval(validity)
        let certificate = try Certificate(
            version: .v3,
            serialNumber: .init(),
            publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: notAfter,
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: Certificate.PublicKey(key.publicKey))
                // The CA may only issue names in its trust domain.
                Critical(NameConstraints(permittedURIDomains: [trustDomain]))
            },
            issuerPrivateKey: .init(key)
        )
        return Issued(certificatePEM: try certificate.serializeAsPEM().pemString, keyPEM: key.pemRepresentation, notValidAfter: notAfter)
    }

    /// A certificate for `workload`, signed by the CA (its PEM certificate and key), valid from
    /// five minutes ago for `validity`. `dnsNames` and `ipAddresses` are added for clients that
    /// check host names (Python's `ssl`); Rekey's own clients check the SPIFFE ID.
    package static func issue(
        workload: String,
        caCertificatePEM: String,
        caKeyPEM: String,
        validity: TimeInterval = 30 * 86_400,
        dnsNames: [String] = [],
        ipAddresses: [String] = [],
        now: Date = Date()
    ) throws -> Issued {
        guard SPIFFEID.validWorkload(workload) else {
            throw Failure("workload `\(workload.prefix(80))` must be 1-64 of a-z, 0-9, '.', '-' and '_'")
        }
        let ca: Certificate
        let caKey: P256.Signing.PrivateKey
        do {
            ca = try Certificate(pemEncoded: caCertificatePEM)
        } catch {
            throw Failure("the CA certificate is not a PEM certificate: \(error)")
        }
        do {
            caKey = try P256.Signing.PrivateKey(pemRepresentation: caKeyPEM)
        } catch {
            throw Failure("the CA key is not a PEM P-256 private key (made by `rekey certs init`): \(error)")
        }
        guard ca.publicKey == Certificate.PublicKey(caKey.publicKey) else {
            throw Failure("the CA key does not belong to the CA certificate")
        }
        guard let trustDomain = Self.trustDomain(ofCA: ca) else {
            throw Failure("the CA certificate does not name a trust domain (not made by `rekey certs init`)")
        }
        var names: [GeneralName] = [.uniformResourceIdentifier(SPIFFEID.make(trustDomain: trustDomain, workload: workload))]
        for name in dnsNames {
            guard IDNA.asciiDomain(name) == name, name.utf8.allSatisfy({ $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") || (0x30...0x39).contains($0) || (0x61...0x7A).contains($0) || (0x41...0x5A).contains($0) }) else {
                throw Failure("`\(name.prefix(80))` is not a DNS name such as directory.internal")
            }
            names.append(.dnsName(name))
        }
        for text in ipAddresses {
            guard let bytes = Self.addressBytes(text) else {
                throw Failure("`\(text.prefix(80))` is not an IPv4 or IPv6 address")
            }
            names.append(.ipAddress(ASN1OctetString(contentBytes: bytes[...])))
        }
        let key = P256.Signing.PrivateKey()
        let notAfter = min(now.addingTimeInterval(validity), ca.notValidAfter)
        let certificate = try Certificate(
            version: .v3,
            serialNumber: .init(),
            publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: notAfter,
            issuer: ca.subject,
            subject: try DistinguishedName {
                OrganizationName("Rekey")
                CommonName(workload)
            },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames(names)
                AuthorityKeyIdentifier(keyIdentifier: try ca.extensions.subjectKeyIdentifier?.keyIdentifier)
            },
            issuerPrivateKey: .init(caKey)
        )
        return Issued(certificatePEM: try certificate.serializeAsPEM().pemString, keyPEM: key.pemRepresentation, notValidAfter: notAfter)
    }

    /// When a PEM certificate ends; nil when the text is not one.
    package static func notValidAfter(certificatePEM: String) -> Date? {
        (try? Certificate(pemEncoded: certificatePEM))?.notValidAfter
    }

    /// The trust domain a CA made by ``makeCA`` is constrained to.
    static func trustDomain(ofCA ca: Certificate) -> String? {
        guard let constraints = try? ca.extensions.nameConstraints else { return nil }
        return constraints.permittedURIDomains.first
    }

    static func addressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }
}
