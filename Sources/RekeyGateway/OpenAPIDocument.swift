import Foundation

/// The admin API's OpenAPI 3.1 description, `Resources/openapi.json`, served at
/// `/api/admin/v1/openapi.json`. It travels in the gateway's resource bundle
/// (`Rekey_RekeyGateway.resources`, installed beside `rekey-gateway`); read once, at start.
enum OpenAPIDocument {
    static let bytes: [UInt8] = {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "json"), let data = try? Data(contentsOf: url) else {
            fatalError("openapi.json is missing from Rekey_RekeyGateway.resources; install that folder next to the executable")
        }
        return Array(data)
    }()
}
