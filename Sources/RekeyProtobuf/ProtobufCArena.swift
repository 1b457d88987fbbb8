import CProtobufC

/// Owns every C allocation made while building one protobuf-c message tree for encoding.
///
/// Generated code allocates structs, strings and arrays here, packs the tree, and the arena frees
/// everything at once when ``withArena(_:)`` returns. Trees built here are never passed to
/// `free_unpacked`: that is only for what protobuf-c unpacked itself. Allocation is a pointer bump
/// in chunks, so building a small message costs one `malloc`.
package final class ProtobufCArena {
    private static let firstChunkSize = 1024

    private var chunks: [UnsafeMutableRawPointer] = []
    private var cursor: UnsafeMutableRawPointer?
    private var remaining = 0
    private var nextChunkSize = ProtobufCArena.firstChunkSize

    private init() {}

    deinit {
        for chunk in self.chunks {
            chunk.deallocate()
        }
    }

    /// Runs `body` with a fresh arena and frees all of its memory afterwards.
    package static func withArena<R>(_ body: (ProtobufCArena) throws -> R) rethrows -> R {
        let arena = ProtobufCArena()
        return try withExtendedLifetime(arena) { try body(arena) }
    }

    /// Raw, uninitialised memory that lives as long as the arena.
    package func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer {
        if let cursor = self.cursor {
            let padding = (alignment - Int(bitPattern: cursor) % alignment) % alignment
            if padding + byteCount <= self.remaining {
                self.cursor = cursor + padding + byteCount
                self.remaining -= padding + byteCount
                return cursor + padding
            }
        }
        let size = max(self.nextChunkSize, byteCount + alignment)
        self.nextChunkSize = min(self.nextChunkSize * 2, 1 << 20)
        let chunk = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        self.chunks.append(chunk)
        self.cursor = chunk
        self.remaining = size
        return self.allocate(byteCount: byteCount, alignment: alignment)
    }

    /// A zeroed value of a C struct type, to be initialised by its generated `__init` function.
    package func allocateStruct<T>(_ type: T.Type) -> UnsafeMutablePointer<T> {
        let raw = self.allocate(byteCount: MemoryLayout<T>.stride, alignment: MemoryLayout<T>.alignment)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.stride)
        return raw.assumingMemoryBound(to: T.self)
    }

    /// A NUL-terminated copy of `string`.
    ///
    /// - Throws: ``ProtobufError/embeddedNUL(message:field:)`` when the string holds a NUL, which C
    ///   would silently cut.
    package func makeCString(_ string: String, message: String, field: String) throws -> UnsafeMutablePointer<CChar> {
        var string = string
        return try string.withUTF8 { utf8 in
            if utf8.contains(0) {
                throw ProtobufError.embeddedNUL(message: message, field: field)
            }
            let raw = self.allocate(byteCount: utf8.count + 1, alignment: 1)
            if let base = utf8.baseAddress {
                raw.copyMemory(from: base, byteCount: utf8.count)
            }
            raw.storeBytes(of: 0, toByteOffset: utf8.count, as: UInt8.self)
            return raw.assumingMemoryBound(to: CChar.self)
        }
    }

    /// A `ProtobufCBinaryData` holding a copy of `bytes`.
    package func makeBinaryData(_ bytes: [UInt8]) -> ProtobufCBinaryData {
        guard !bytes.isEmpty else {
            return ProtobufCBinaryData(len: 0, data: nil)
        }
        let raw = self.allocate(byteCount: bytes.count, alignment: 1)
        bytes.withUnsafeBytes { raw.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return ProtobufCBinaryData(len: bytes.count, data: raw.assumingMemoryBound(to: UInt8.self))
    }

    /// A C array holding `values` converted by `convert`, or `nil` when empty (protobuf-c's convention).
    package func makeArray<Element, C>(
        _ values: [Element],
        _ convert: (Element) throws -> C
    ) rethrows -> UnsafeMutablePointer<C>? {
        guard !values.isEmpty else {
            return nil
        }
        let raw = self.allocate(
            byteCount: MemoryLayout<C>.stride * values.count,
            alignment: MemoryLayout<C>.alignment
        )
        let array = raw.bindMemory(to: C.self, capacity: values.count)
        for (index, value) in values.enumerated() {
            (array + index).initialize(to: try convert(value))
        }
        return array
    }
}

/// Reading helpers for generated code: copy C values out into Swift values.
package enum ProtobufCRead {
    /// The Swift string for a protobuf-c `char *` field; protobuf-c has validated its UTF-8.
    @inlinable
    package static func string(_ pointer: UnsafePointer<CChar>?) -> String {
        guard let pointer else { return "" }
        return String(cString: pointer)
    }

    /// The bytes of a `ProtobufCBinaryData` field.
    @inlinable
    package static func bytes(_ data: ProtobufCBinaryData) -> [UInt8] {
        guard data.len > 0, let base = data.data else { return [] }
        return Array(UnsafeBufferPointer(start: base, count: data.len))
    }

    /// The elements of a repeated field, converted by `convert`.
    @inlinable
    package static func array<C, Element>(
        _ pointer: UnsafePointer<C>?,
        count: Int,
        _ convert: (C) throws -> Element
    ) rethrows -> [Element] {
        guard count > 0, let pointer else { return [] }
        return try UnsafeBufferPointer(start: pointer, count: count).map(convert)
    }

    /// A C enum's value as the proto3 integer it stands for.
    @inlinable
    package static func enumValue<E: RawRepresentable>(_ value: E) -> Int32 where E.RawValue: BinaryInteger {
        Int32(truncatingIfNeeded: value.rawValue)
    }
}

/// Writing helper for generated code: a proto3 integer as a C enum value.
@inlinable
package func protobufCEnum<E: RawRepresentable>(_ value: Int32, as type: E.Type = E.self) -> E
where E.RawValue: FixedWidthInteger {
    E(rawValue: E.RawValue(truncatingIfNeeded: value))!
}
