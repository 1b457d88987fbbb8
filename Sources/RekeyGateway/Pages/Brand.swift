import Foundation

/// The product name, logo and accent colour on every page (`brand_name`, `brand_logo_url`,
/// `brand_color`). The gateway sets it for each request (``GatewayMiddleware``), so renderers
/// read ``Brand/current`` instead of passing it through every call.
package struct Brand: Sendable, Equatable {
    package var name: String
    /// An https URL or a path on this host; nil for none.
    package var logoURL: String?
    /// `#rrggbb`.
    package var color: String

    package static let rekey = Brand(name: "Rekey", logoURL: nil, color: "#2f5fd0")

    /// The brand of the request being answered.
    @TaskLocal package static var current = Brand.rekey

    package init(name: String, logoURL: String?, color: String) {
        self.name = name
        self.logoURL = logoURL
        self.color = color
    }

    /// Checks each setting, naming the one that is wrong.
    package static func make(name: String?, logoURL: String?, color: String?) throws(BrandError) -> Brand {
        var brand = Brand.rekey
        if let name {
            let trimmed = name.trimmingCharacters(in: .whitespaces)
            guard (1...60).contains(trimmed.count), !trimmed.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw BrandError("`brand_name` must be 1 to 60 characters without control characters")
            }
            brand.name = trimmed
        }
        if let logoURL, !logoURL.isEmpty {
            guard logoURL.utf8.count <= 500, Self.logoOrigin(logoURL) != nil || (logoURL.hasPrefix("/") && !logoURL.hasPrefix("//")),
                  !logoURL.contains(where: { $0 == "\"" || $0 == "'" || $0 == " " || $0 == ";" })
            else {
                throw BrandError("`brand_logo_url` must be an https URL or a path on this host (starting with one /), at most 500 bytes")
            }
            brand.logoURL = logoURL
        }
        if let color {
            let hex = color.hasPrefix("#") ? color.dropFirst() : Substring(color)
            guard hex.count == 6 || hex.count == 3, hex.allSatisfy(\.isHexDigit) else {
                throw BrandError("`brand_color` must be a colour as #rrggbb or #rgb")
            }
            brand.color = "#" + (hex.count == 3 ? hex.map { "\($0)\($0)" }.joined() : String(hex)).lowercased()
        }
        return brand
    }

    /// `https://host[:port]` of an absolute logo URL, for the Content-Security-Policy.
    static func logoOrigin(_ url: String) -> String? {
        guard let components = URLComponents(string: url), components.scheme == "https", let host = components.host, !host.isEmpty else { return nil }
        return "https://" + host + (components.port.map { ":\($0)" } ?? "")
    }

    /// The Content-Security-Policy of the pages: scripts and styles only from this host, images
    /// from this host and the logo's.
    var contentSecurityPolicy: String {
        let images = ["'self'"] + (self.logoURL.flatMap(Self.logoOrigin).map { [$0] } ?? [])
        return "default-src 'none'; script-src 'self'; style-src 'self'; img-src \(images.joined(separator: " ")); connect-src 'self'; "
            + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    }
}

package struct BrandError: Error, CustomStringConvertible {
    package let description: String

    init(_ description: String) {
        self.description = description
    }
}
