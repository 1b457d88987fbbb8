import Foundation

/// Says what was wrong with a JSON body in the request's own terms (`$.name must be a string`),
/// never in the decoder's (`DecodingError.typeMismatch(Swift.String, …)`).
enum JSONBodyError {
    static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "the body is not valid JSON" }
        switch error {
        case .typeMismatch(let type, let context):
            return "\(Self.path(context.codingPath)) must be \(Self.kind(type))"
        case .valueNotFound(let type, let context):
            return "\(Self.path(context.codingPath)) must be \(Self.kind(type)), not null"
        case .keyNotFound(let key, let context):
            return "\(Self.path(context.codingPath + [key])) is required"
        case .dataCorrupted(let context):
            // Foundation reports a number it cannot hold (1e309, 2^63, 1.5 for a whole number) as
            // invalid JSON without a path, so the message covers both.
            return context.codingPath.isEmpty
                ? "the body is not valid JSON, or a number in it is not a whole number within range"
                : "\(Self.path(context.codingPath)) is not a valid value (numbers must be whole and in range)"
        @unknown default:
            return "the body is not the JSON this call takes"
        }
    }

    /// `$.organization_id`, `$.domains[2]`: the JSON path with the API's snake_case names.
    static func path(_ codingPath: [any CodingKey]) -> String {
        codingPath.reduce("$") { path, key in
            if let index = key.intValue { return path + "[\(index)]" }
            return path + "." + Self.snakeCase(key.stringValue)
        }
    }

    static func snakeCase(_ name: String) -> String {
        var out = ""
        for character in name {
            if character.isUppercase {
                out += "_" + character.lowercased()
            } else {
                out.append(character)
            }
        }
        return out
    }

    static func kind(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        case is Int.Type, is Int64.Type, is UInt32.Type, is Int32.Type: return "a whole number"
        case is [String].Type: return "an array of strings"
        default: return type is any Collection.Type ? "an array" : "an object"
        }
    }
}
