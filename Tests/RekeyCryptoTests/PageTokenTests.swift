import RekeyCrypto
import Testing

@Suite("Page tokens")
struct PageTokenTests {
    @Test("a token reads back as the fields it was made of, only for its own kind")
    func roundTrip() {
        let token = PageToken.encode("s2", ["1", "42", "abc", "name|with|bars"])
        #expect(PageToken.fields(token, kind: "s2", count: 4) == ["1", "42", "abc", "name|with|bars"])
        #expect(PageToken.fields(token, kind: "l1", count: 4) == nil, "another list's token")
        #expect(PageToken.fields(PageToken.encode("t1", ["5"]), kind: "t1", count: 2) == nil, "too few fields")
        #expect(PageToken.position(PageToken.encode("a1", 7), kind: "a1") == 7)
        #expect(PageToken.position(PageToken.encode("a1", 0), kind: "a1") == nil, "positions are positive")
        #expect(PageToken.position("not base64!", kind: "a1") == nil)
        #expect(PageToken.position("", kind: "a1") == nil)
    }

    @Test("a search cursor holding the longest name of four-byte characters (CJK Extension B) still reads back")
    func longNames() {
        let name = String(repeating: "𠀀", count: 200)
        let token = PageToken.encode("s2", ["0", "1", "ff", name])
        #expect(PageToken.fields(token, kind: "s2", count: 4)?.last.map(String.init) == name)
        #expect(PageToken.fields(String(repeating: "A", count: 10_000), kind: "s2", count: 4) == nil, "absurdly long input is refused unread")
    }
}
