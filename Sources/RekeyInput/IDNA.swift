import Foundation

/// Internationalised domain names (RFC 5890/5891, RFC 3492): each label with non-ASCII characters
/// becomes `xn--` and its Punycode, after NFC and lower-casing, so that an address such as
/// `jane@exämple.org` travels as `jane@xn--exmple-cua.org` to any server. The notifier writes the
/// envelope with it; the directory refuses an address whose domain cannot be written so.
package enum IDNA {
    /// The ASCII form of `domain`; nil when a label is empty or too long (63 a label, 253 in all).
    package static func asciiDomain(_ domain: String) -> String? {
        if domain.utf8.allSatisfy({ $0 < 0x80 }) {
            // Already ASCII: only the lengths to check.
            let labels = domain.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
            return domain.utf8.count <= 253 && labels.allSatisfy({ (1...63).contains($0.count) }) ? domain : nil
        }
        let labels = domain.precomposedStringWithCanonicalMapping.lowercased().split(separator: ".", omittingEmptySubsequences: false)
        var out: [String] = []
        for label in labels {
            guard !label.isEmpty else { return nil }
            if label.unicodeScalars.allSatisfy(\.isASCII) {
                out.append(String(label))
            } else {
                guard let encoded = Self.punycode(Array(label.unicodeScalars)) else { return nil }
                out.append("xn--" + encoded)
            }
            guard out.last!.utf8.count <= 63 else { return nil }
        }
        let result = out.joined(separator: ".")
        return result.utf8.count <= 253 ? result : nil
    }

    /// `address` with its domain in ASCII; the local part as it is.
    package static func asciiDomainAddress(_ address: String) -> String? {
        guard let at = address.lastIndex(of: "@") else { return nil }
        return Self.asciiDomain(String(address[address.index(after: at)...])).map { String(address[...at]) + $0 }
    }

    /// RFC 3492's encoder (base 36, the bias adaptation of section 6.1).
    static func punycode(_ input: [Unicode.Scalar]) -> String? {
        let base = 36, tMin = 1, tMax = 26, skew = 38, damp = 700, initialBias = 72, initialN = 128
        func digit(_ value: Int) -> Character {
            Character(Unicode.Scalar(UInt8(value < 26 ? value + 97 : value + 22)))
        }
        func adapt(_ delta: Int, _ count: Int, _ first: Bool) -> Int {
            var delta = first ? delta / damp : delta / 2
            delta += delta / count
            var k = 0
            while delta > ((base - tMin) * tMax) / 2 {
                delta /= base - tMin
                k += base
            }
            return k + (base - tMin + 1) * delta / (delta + skew)
        }
        var output = String(String.UnicodeScalarView(input.filter(\.isASCII)))
        let basic = output.unicodeScalars.count
        var handled = basic
        if basic > 0 { output.append("-") }
        var n = initialN, delta = 0, bias = initialBias
        let codes = input.map { Int($0.value) }
        while handled < codes.count {
            guard let m = codes.filter({ $0 >= n }).min() else { return nil }
            let (product, overflow) = (m - n).multipliedReportingOverflow(by: handled + 1)
            guard !overflow, delta <= Int(Int32.max) - product else { return nil }
            delta += product
            n = m
            for code in codes {
                if code < n { delta += 1 }
                if code == n {
                    var q = delta
                    var k = base
                    while true {
                        let t = k <= bias ? tMin : (k >= bias + tMax ? tMax : k - bias)
                        if q < t { break }
                        output.append(digit(t + (q - t) % (base - t)))
                        q = (q - t) / (base - t)
                        k += base
                    }
                    output.append(digit(q))
                    bias = adapt(delta, handled + 1, handled == basic)
                    delta = 0
                    handled += 1
                }
            }
            delta += 1
            n += 1
        }
        return output
    }
}
