/// A reader of RFC 4180 CSV: fields separated by commas, records by CRLF or LF, fields in double
/// quotes may hold commas, line breaks and doubled quotes. A leading UTF-8 byte order mark is
/// skipped; blank lines are ignored. Each record keeps the line it starts on, and a record that
/// cannot be read (a stray quote, an unterminated quoted field, bytes that are not UTF-8) is
/// returned with the reason instead of its fields, so one bad row never hides the others.
package struct CSVReader {
    package struct Record: Sendable, Hashable {
        /// 1-based line the record starts on.
        package var line: Int
        package var fields: [String]
        /// Why the record could not be read; `fields` is empty then.
        package var error: String?
    }

    package static func records(_ bytes: [UInt8]) -> [Record] {
        var start = 0
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { start = 3 }
        var records: [Record] = []
        var fields: [[UInt8]] = []
        var field: [UInt8] = []
        var line = 1
        var recordLine = 1
        var error: String?
        var inQuotes = false
        var quotedField = false
        var index = start

        func endRecord() {
            fields.append(field)
            field = []
            let blank = fields.count == 1 && fields[0].isEmpty && !quotedField
            if let reason = error {
                records.append(Record(line: recordLine, fields: [], error: reason))
            } else if !blank {
                var decoded: [String] = []
                for raw in fields {
                    guard let text = String(validating: raw, as: UTF8.self) else {
                        records.append(Record(line: recordLine, fields: [], error: "line \(recordLine) is not valid UTF-8; save the file as UTF-8"))
                        decoded = []
                        break
                    }
                    decoded.append(text)
                }
                if decoded.count == fields.count {
                    records.append(Record(line: recordLine, fields: decoded, error: nil))
                }
            }
            fields = []
            error = nil
            quotedField = false
        }

        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            if inQuotes {
                if byte == UInt8(ascii: "\"") {
                    if index < bytes.count, bytes[index] == UInt8(ascii: "\"") {
                        field.append(byte)
                        index += 1
                    } else {
                        inQuotes = false
                    }
                } else {
                    if byte == UInt8(ascii: "\n") { line += 1 }
                    field.append(byte)
                }
                continue
            }
            switch byte {
            case UInt8(ascii: ","):
                fields.append(field)
                field = []
            case UInt8(ascii: "\r") where index < bytes.count && bytes[index] == UInt8(ascii: "\n"):
                break
            case UInt8(ascii: "\n"):
                endRecord()
                line += 1
                recordLine = line
            case UInt8(ascii: "\""):
                if field.isEmpty {
                    inQuotes = true
                    quotedField = true
                } else if error == nil {
                    error = "line \(line) has a quote inside an unquoted field; put the field in double quotes and double the quote"
                }
            default:
                field.append(byte)
            }
        }
        if inQuotes {
            error = "line \(recordLine) opens a quoted field that is never closed"
        }
        if !fields.isEmpty || !field.isEmpty || error != nil || quotedField {
            endRecord()
        }
        return records
    }
}
