import RekeyGateway
import Testing

/// The pages' form parser (`application/x-www-form-urlencoded`), byte by byte.
@Suite("Form bodies")
struct FormParsingTests {
    @Test("names and values decoded: + is a space, %XX a byte, UTF-8 kept; the first value of a name wins", arguments: [
        ("email=jane%40example.com&csrf=abc", ["email": "jane@example.com", "csrf": "abc"]),
        ("name=Jos%C3%A9+O%27Hara&name=other", ["name": "José O'Hara"]),
        ("plus=%2B&space=a+b&equals=a==b", ["plus": "+", "space": "a b", "equals": "a==b"]),
        ("flag&=empty-name&&", ["flag": "", "": "empty-name"]),
        ("nul=%00", ["nul": "\u{0}"]),
        ("", [:]),
    ])
    func decoded(body: String, expected: [String: String]) {
        #expect(Web.parseForm(body) == expected)
    }

    @Test("a malformed escape or bytes that are not UTF-8 make that name or value empty, and nothing else", arguments: [
        ("a=%zz&b=ok", ["a": "", "b": "ok"]),
        ("a=%4&b=ok", ["a": "", "b": "ok"]),
        ("a=%&b=ok", ["a": "", "b": "ok"]),
        ("a=%FF%FE&b=ok", ["a": "", "b": "ok"]),
        ("%C3=x", ["": "x"]),
    ])
    func malformed(body: String, expected: [String: String]) {
        #expect(Web.parseForm(body) == expected)
    }
}
