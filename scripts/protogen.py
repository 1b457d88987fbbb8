#!/usr/bin/env python3
"""Generates Rekey's Swift code from a protobuf FileDescriptorSet.

For every message: a Swift value type with proto3 semantics and its conversion to and from the
structs that protoc-c generates. For every service: a namespace with method descriptors, a
service protocol of typed handlers and a typed client.

Usage (the Makefile's `proto` target runs this):
    protogen.py --descriptor-set set.pb --map rekey.rpc.v1=Sources/RekeyRPC/Generated ...

Each `--map PACKAGE=DIR` sends the Swift for the .proto files of PACKAGE to DIR, which must be
`Sources/<Module>/Generated` (or any `<...>/<Module>/Generated`): the module name decides imports.

Supported: every scalar type, string, bytes, enums (open, unknown values kept), messages, nested
types, repeated fields, oneofs. Not supported (the generator stops with an error): maps, proto3
`optional`, groups, proto2 files.
"""

import argparse
import os
import sys

from google.protobuf import descriptor_pb2

FD = descriptor_pb2.FieldDescriptorProto

SWIFT_KEYWORDS = {
    "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import",
    "init", "inout", "internal", "let", "open", "operator", "private", "precedencegroup",
    "protocol", "public", "rethrows", "static", "struct", "subscript", "typealias", "var",
    "break", "case", "catch", "continue", "default", "defer", "do", "else", "fallthrough", "for",
    "guard", "if", "in", "repeat", "return", "throw", "switch", "where", "while", "as", "false",
    "is", "nil", "self", "Self", "super", "throws", "true", "try", "Type", "package", "some", "any",
}

C_KEYWORDS = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
    "enum", "extern", "float", "for", "goto", "if", "int", "long", "register", "return", "short",
    "signed", "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void",
    "volatile", "while", "inline", "restrict", "bool", "_Bool",
}

SCALARS = {
    # type: (Swift type, default literal)
    FD.TYPE_DOUBLE: ("Double", "0"),
    FD.TYPE_FLOAT: ("Float", "0"),
    FD.TYPE_INT64: ("Int64", "0"),
    FD.TYPE_UINT64: ("UInt64", "0"),
    FD.TYPE_INT32: ("Int32", "0"),
    FD.TYPE_FIXED64: ("UInt64", "0"),
    FD.TYPE_FIXED32: ("UInt32", "0"),
    FD.TYPE_BOOL: ("Bool", "false"),
    FD.TYPE_UINT32: ("UInt32", "0"),
    FD.TYPE_SFIXED32: ("Int32", "0"),
    FD.TYPE_SFIXED64: ("Int64", "0"),
    FD.TYPE_SINT32: ("Int32", "0"),
    FD.TYPE_SINT64: ("Int64", "0"),
    FD.TYPE_STRING: ("String", '""'),
    FD.TYPE_BYTES: ("[UInt8]", "[]"),
}


class GeneratorError(Exception):
    pass


# --- naming, following protoc-c's rules -----------------------------------------------------------

def to_camel(name):
    """protoc-c's ToCamel: upper-case the first letter and each letter after '_', dropping '_'."""
    out = []
    upper_next = True
    for ch in name:
        if ch == "_":
            upper_next = True
        elif upper_next:
            out.append(ch.upper())
            upper_next = False
        else:
            out.append(ch)
    return "".join(out)


def camel_to_lower(name):
    """protoc-c's CamelToLower: 'EchoRequest' -> 'echo_request', 'HTTPRequest' -> 'httprequest'."""
    out = []
    was_upper = True
    for ch in name:
        is_upper = ch.isupper()
        if is_upper and not was_upper:
            out.append("_")
        out.append(ch.lower())
        was_upper = is_upper
    return "".join(out)


def c_type_name(full_name):
    return "__".join(to_camel(part) for part in full_name.split("."))


def c_function_prefix(full_name):
    return "__".join(camel_to_lower(part) for part in full_name.split("."))


def c_field_name(name):
    lowered = name.lower()
    return lowered + "_" if lowered in C_KEYWORDS else lowered


def lower_camel(snake):
    """'an_int32' -> 'anInt32', 'invalid_argument' -> 'invalidArgument', 'call_id' -> 'callID'."""
    parts = [p for p in snake.split("_") if p]
    if not parts:
        return snake
    # Like SwiftProtobuf: initialisms stay upper case after the first word (`user_id` -> `userID`).
    initialisms = {"id": "ID", "url": "URL", "ip": "IP"}
    return parts[0].lower() + "".join(initialisms.get(p.lower(), p[0].upper() + p[1:].lower()) for p in parts[1:])


def swift_identifier(name):
    return "`%s`" % name if name in SWIFT_KEYWORDS else name


def swift_package_prefix(package):
    return "".join(to_camel(part) + "_" for part in package.split(".")) if package else ""


def upper_snake(camel):
    return camel_to_lower(camel).upper()


# --- the type table ---------------------------------------------------------------------------------

class MessageInfo:
    def __init__(self, proto, full_name, swift_name, package, parent):
        self.proto = proto
        self.full_name = full_name
        self.swift_name = swift_name
        self.package = package
        self.parent = parent
        self.c_type = c_type_name(full_name)
        self.c_prefix = c_function_prefix(full_name)


class EnumInfo:
    def __init__(self, proto, full_name, swift_name, package):
        self.proto = proto
        self.full_name = full_name
        self.swift_name = swift_name
        self.package = package
        self.c_type = c_type_name(full_name)


def collect_types(file_set):
    messages, enums = {}, {}

    def visit_message(proto, scope, swift_scope, package, parent):
        full = scope + "." + proto.name if scope else proto.name
        swift = swift_scope + "." + proto.name if parent else swift_scope + proto.name
        info = MessageInfo(proto, full, swift, package, parent)
        messages["." + full] = info
        for nested in proto.nested_type:
            visit_message(nested, full, swift, package, info)
        for enum in proto.enum_type:
            enums["." + full + "." + enum.name] = EnumInfo(enum, full + "." + enum.name, swift + "." + enum.name, package)

    for f in file_set.file:
        prefix = swift_package_prefix(f.package)
        for m in f.message_type:
            visit_message(m, f.package, prefix, f.package, None)
        for e in f.enum_type:
            full = f.package + "." + e.name if f.package else e.name
            enums["." + full] = EnumInfo(e, full, prefix + e.name, f.package)
    return messages, enums


# --- code emission -----------------------------------------------------------------------------------

class Writer:
    def __init__(self):
        self.lines = []
        self.depth = 0

    def __call__(self, line=""):
        self.lines.append(("    " * self.depth + line) if line else "")

    def indent(self):
        self.depth += 1

    def dedent(self):
        self.depth -= 1

    def text(self):
        return "\n".join(self.lines) + "\n"


def doc(w, text):
    for line in text.strip().splitlines():
        w("/// " + line.strip() if line.strip() else "///")


def enum_case_names(info):
    prefix = upper_snake(info.proto.name) + "_"
    seen_numbers = set()
    cases = []
    for value in info.proto.value:
        if value.number in seen_numbers:
            continue  # an alias: the first name stands for the number
        seen_numbers.add(value.number)
        name = value.name
        if name.startswith(prefix) and len(name) > len(prefix) and not name[len(prefix)].isdigit():
            name = name[len(prefix):]
        cases.append((swift_identifier(lower_camel(name.lower())), value.number))
    return cases


def emit_enum(w, info):
    cases = enum_case_names(info)
    local = info.swift_name.split(".")[-1]
    doc(w, "The proto3 enum `%s`. Open: values this contract does not know are kept as `unrecognized`." % info.full_name)
    w("package enum %s: Sendable, Hashable {" % local)
    w.indent()
    for name, number in cases:
        w("case %s  // = %d" % (name, number))
    w("case unrecognized(Int32)")
    w()
    w("package init() {")
    w("    self = .%s" % cases[0][0])
    w("}")
    w()
    w("package init(rawValue: Int32) {")
    w.indent()
    w("switch rawValue {")
    for name, number in cases:
        w("case %d: self = .%s" % (number, name))
    w("default: self = .unrecognized(rawValue)")
    w("}")
    w.dedent()
    w("}")
    w()
    w("package var rawValue: Int32 {")
    w.indent()
    w("switch self {")
    for name, number in cases:
        w("case .%s: return %d" % (name, number))
    w("case .unrecognized(let value): return value")
    w("}")
    w.dedent()
    w("}")
    w.dedent()
    w("}")


class FieldModel:
    """What the generator needs to know about one field."""

    def __init__(self, field, message, messages, enums):
        if field.label == FD.LABEL_REQUIRED:
            raise GeneratorError("%s.%s: required fields are not proto3" % (message.full_name, field.name))
        if field.type == FD.TYPE_GROUP:
            raise GeneratorError("%s.%s: groups are not supported" % (message.full_name, field.name))
        if field.proto3_optional:
            raise GeneratorError("%s.%s: proto3 optional is not supported; use a wrapper message" % (message.full_name, field.name))
        self.field = field
        self.name = field.name
        self.number = field.number
        self.swift = swift_identifier(lower_camel(field.name))
        self.c = c_field_name(field.name)
        self.repeated = field.label == FD.LABEL_REPEATED
        self.type = field.type
        self.in_oneof = field.HasField("oneof_index")
        if field.type == FD.TYPE_MESSAGE:
            target = messages.get(field.type_name)
            if target is None:
                raise GeneratorError("%s.%s: unknown type %s" % (message.full_name, field.name, field.type_name))
            if target.proto.options.map_entry:
                raise GeneratorError("%s.%s: map fields are not supported; use a repeated message" % (message.full_name, field.name))
            self.target = target
            self.swift_type = target.swift_name
        elif field.type == FD.TYPE_ENUM:
            target = enums.get(field.type_name)
            if target is None:
                raise GeneratorError("%s.%s: unknown type %s" % (message.full_name, field.name, field.type_name))
            self.target = target
            self.swift_type = target.swift_name
        else:
            self.target = None
            self.swift_type = SCALARS[field.type][0]

    def declared_type(self):
        if self.repeated:
            return "[%s]" % self.swift_type
        if self.type == FD.TYPE_MESSAGE:
            return self.swift_type + "?"
        return self.swift_type

    def default(self):
        if self.repeated:
            return "[]"
        if self.type == FD.TYPE_MESSAGE:
            return "nil"
        if self.type == FD.TYPE_ENUM:
            return "%s()" % self.swift_type
        return SCALARS[self.type][1]

    def read(self, expr):
        """Swift expression turning the C value `expr` into the Swift value."""
        t = self.type
        if t == FD.TYPE_STRING:
            return "ProtobufCRead.string(%s)" % expr
        if t == FD.TYPE_BYTES:
            return "ProtobufCRead.bytes(%s)" % expr
        if t == FD.TYPE_BOOL:
            return "(%s != 0)" % expr
        if t == FD.TYPE_ENUM:
            return "%s(rawValue: ProtobufCRead.enumValue(%s))" % (self.swift_type, expr)
        if t == FD.TYPE_MESSAGE:
            return "%s(cValue: %s)" % (self.swift_type, expr)
        return expr

    def write(self, expr, message):
        """Swift expression turning the Swift value `expr` into the C value."""
        t = self.type
        if t == FD.TYPE_STRING:
            return 'try arena.makeCString(%s, message: "%s", field: "%s")' % (expr, message.full_name, self.name)
        if t == FD.TYPE_BYTES:
            return "arena.makeBinaryData(%s)" % expr
        if t == FD.TYPE_BOOL:
            return "(%s ? 1 : 0)" % expr
        if t == FD.TYPE_ENUM:
            return "protobufCEnum(%s.rawValue, as: %s.self)" % (expr, self.target.c_type)
        if t == FD.TYPE_MESSAGE:
            return "try %s.makeCValue(in: arena)" % expr
        return expr

    def can_hold_nul_risk(self):
        return self.type == FD.TYPE_STRING


def message_fields(info, messages, enums):
    return [FieldModel(f, info, messages, enums) for f in info.proto.field]


def emit_message_struct(w, info, messages, enums):
    fields = message_fields(info, messages, enums)
    local = info.swift_name.split(".")[-1]
    doc(w, "The proto3 message `%s`." % info.full_name)
    w("package struct %s: Sendable, Hashable {" % local)
    w.indent()
    oneofs = info.proto.oneof_decl
    for f in fields:
        if f.in_oneof:
            continue
        w("package var %s: %s = %s" % (f.swift, f.declared_type(), f.default()))
    for index, oneof in enumerate(oneofs):
        w("package var %s: OneOf_%s? = nil" % (swift_identifier(lower_camel(oneof.name)), to_camel(oneof.name)))
    w()
    w("package init() {}")
    for index, oneof in enumerate(oneofs):
        w()
        doc(w, "The fields of the oneof `%s`; at most one is set." % oneof.name)
        w("package enum OneOf_%s: Sendable, Hashable {" % to_camel(oneof.name))
        w.indent()
        for f in fields:
            if f.in_oneof and f.field.oneof_index == index:
                w("case %s(%s)" % (f.swift, f.swift_type))
        w.dedent()
        w("}")
    for nested in info.proto.nested_type:
        if nested.options.map_entry:
            continue
        w()
        emit_message_struct(w, messages["." + info.full_name + "." + nested.name], messages, enums)
    for enum in info.proto.enum_type:
        w()
        emit_enum(w, enums["." + info.full_name + "." + enum.name])
    w.dedent()
    w("}")


def has_strings(info, messages, enums, seen=None):
    """Whether a message, or any message inside it, has a string field."""
    seen = set() if seen is None else seen
    if info.full_name in seen:
        return False
    seen.add(info.full_name)
    for f in info.proto.field:
        if f.type == FD.TYPE_STRING:
            return True
        if f.type == FD.TYPE_MESSAGE and f.type_name in messages:
            if has_strings(messages[f.type_name], messages, enums, seen):
                return True
    return False


def emit_string_schema(w, info, messages, enums):
    fields = message_fields(info, messages, enums)
    strings = sorted(f.number for f in fields if f.type == FD.TYPE_STRING)
    nested = [(f.number, f.swift_type) for f in fields
              if f.type == FD.TYPE_MESSAGE and has_strings(f.target, messages, enums)]
    doc(w, "The string fields that decoding checks for NUL characters and invalid UTF-8.")
    w("package static let protobufStringSchema = ProtobufStringSchema(")
    w("    stringFields: [%s]," % ", ".join(str(n) for n in strings))
    if nested:
        w("    messageFields: [%s]" % ", ".join("%d: { %s.protobufStringSchema }" % (n, t) for n, t in nested))
    else:
        w("    messageFields: [:]")
    w(")")


def emit_message_conversions(w, info, messages, enums):
    fields = message_fields(info, messages, enums)
    ct = info.c_type
    w("extension %s {" % info.swift_name)
    w.indent()
    if has_strings(info, messages, enums):
        emit_string_schema(w, info, messages, enums)
        w()
    doc(w, "Copies a protobuf-c struct (one that protobuf-c unpacked) into a Swift value.")
    w("package init(cValue c: UnsafePointer<%s>) {" % ct)
    w.indent()
    w("self.init()")
    for f in fields:
        if f.in_oneof:
            continue
        src = "c.pointee.%s" % f.c
        if f.repeated:
            elem = "$0!" if f.type == FD.TYPE_MESSAGE else "$0"
            w("self.%s = ProtobufCRead.array(%s, count: c.pointee.n_%s) { %s }" % (f.swift, src, f.c, f.read(elem)))
        elif f.type == FD.TYPE_MESSAGE:
            w("self.%s = %s.map { %s }" % (f.swift, src, f.read("$0")))
        else:
            w("self.%s = %s" % (f.swift, f.read(src)))
    for index, oneof in enumerate(info.proto.oneof_decl):
        case_field = "c.pointee.%s_case" % c_field_name(oneof.name)
        w("switch ProtobufCRead.enumValue(%s) {" % case_field)
        for f in fields:
            if f.in_oneof and f.field.oneof_index == index:
                value = "c.pointee.%s" % f.c
                if f.type == FD.TYPE_MESSAGE:
                    w("case %d: self.%s = c.pointee.%s.map { .%s(%s) }" % (f.number, swift_identifier(lower_camel(oneof.name)), f.c, f.swift, f.read("$0")))
                else:
                    w("case %d: self.%s = .%s(%s)" % (f.number, swift_identifier(lower_camel(oneof.name)), f.swift, f.read(value)))
        w("default: self.%s = nil" % swift_identifier(lower_camel(oneof.name)))
        w("}")
    w.dedent()
    w("}")
    w()
    doc(w, "Builds the protobuf-c struct for this value; everything it points to lives in `arena`.")
    w("package func makeCValue(in arena: ProtobufCArena) throws -> UnsafeMutablePointer<%s> {" % ct)
    w.indent()
    w("let c = arena.allocateStruct(%s.self)" % ct)
    w("%s__init(c)" % info.c_prefix)
    for f in fields:
        if f.in_oneof:
            continue
        value = "self.%s" % f.swift
        if f.repeated:
            elem = f.write("$0", info)
            if f.type in (FD.TYPE_MESSAGE, FD.TYPE_STRING):
                elem = "Optional(%s)" % elem
            w("c.pointee.n_%s = %s.count" % (f.c, value))
            try_ = "try " if "try " in elem else ""
            w("c.pointee.%s = %sarena.makeArray(%s) { %s }" % (f.c, try_, value, elem))
        elif f.type == FD.TYPE_MESSAGE:
            w("if let value = %s {" % value)
            w("    c.pointee.%s = %s" % (f.c, f.write("value", info)))
            w("}")
        elif f.type in (FD.TYPE_STRING, FD.TYPE_BYTES):
            w("if !%s.isEmpty {" % value)
            w("    c.pointee.%s = %s" % (f.c, f.write(value, info)))
            w("}")
        else:
            w("c.pointee.%s = %s" % (f.c, f.write(value, info)))
    for index, oneof in enumerate(info.proto.oneof_decl):
        oneof_swift = swift_identifier(lower_camel(oneof.name))
        case_type = "%s__%sCase" % (ct, to_camel(oneof.name))
        w("switch self.%s {" % oneof_swift)
        for f in fields:
            if f.in_oneof and f.field.oneof_index == index:
                w("case .%s(let value):" % f.swift)
                w("    c.pointee.%s_case = protobufCEnum(%d, as: %s.self)" % (c_field_name(oneof.name), f.number, case_type))
                w("    c.pointee.%s = %s" % (f.c, f.write("value", info)))
        w("case nil:")
        w("    break")
        w("}")
    w("return c")
    w.dedent()
    w("}")
    w.dedent()
    w("}")
    for nested in info.proto.nested_type:
        if nested.options.map_entry:
            continue
        w()
        emit_message_conversions(w, messages["." + info.full_name + "." + nested.name], messages, enums)


def emit_message_protocol(w, info, messages, enums):
    ct = info.c_type
    w("extension %s: ProtobufMessage {" % info.swift_name)
    w.indent()
    w('package static let protoMessageName = "%s"' % info.full_name)
    w()
    w("package init(serializedBytes bytes: UnsafeRawBufferPointer) throws {")
    w.indent()
    if has_strings(info, messages, enums):
        w("try Self.protobufStringSchema.validate(bytes, message: Self.protoMessageName)")
    w("let unpacked: UnsafeMutablePointer<%s>? =" % ct)
    w("    if let base = bytes.baseAddress {")
    w("        %s__unpack(nil, bytes.count, base.assumingMemoryBound(to: UInt8.self))" % info.c_prefix)
    w("    } else {")
    w("        withUnsafePointer(to: UInt8(0)) { %s__unpack(nil, 0, $0) }" % info.c_prefix)
    w("    }")
    w("guard let c = unpacked else {")
    w("    throw ProtobufError.invalidEncoding(message: Self.protoMessageName)")
    w("}")
    w("defer { %s__free_unpacked(c, nil) }" % info.c_prefix)
    w("self.init(cValue: c)")
    w.dedent()
    w("}")
    w()
    w("package func withCMessage<R>(_ body: (UnsafePointer<ProtobufCMessage>) throws -> R) throws -> R {")
    w.indent()
    w("try ProtobufCArena.withArena { arena in")
    w("    let c = try self.makeCValue(in: arena)")
    w("    return try body(UnsafePointer(OpaquePointer(c)))")
    w("}")
    w.dedent()
    w("}")
    w.dedent()
    w("}")


def emit_service(w, service, package, messages):
    full = package + "." + service.name if package else service.name
    ns = swift_package_prefix(package) + service.name
    w()
    w("// MARK: - %s" % full)
    w()
    doc(w, "Names and descriptors of the `%s` service." % full)
    w("package enum %s {" % ns)
    w.indent()
    w('package static let name = "%s"' % full)
    w()
    w("package typealias ServiceProtocol = %s_ServiceProtocol" % ns)
    w("package typealias Client = %s_Client" % ns)
    w()
    w("package enum Method {")
    w.indent()
    for m in service.method:
        if m.client_streaming or m.server_streaming:
            raise GeneratorError("%s.%s: streaming methods are not supported" % (full, m.name))
        w("package enum %s {" % m.name)
        w.indent()
        w("package typealias Input = %s" % messages[m.input_type].swift_name)
        w("package typealias Output = %s" % messages[m.output_type].swift_name)
        w('package static let descriptor = MethodDescriptor(service: "%s", method: "%s")' % (full, m.name))
        w.dedent()
        w("}")
        w()
    w("package static let descriptors: [MethodDescriptor] = [%s]" % ", ".join("%s.descriptor" % m.name for m in service.method))
    w.dedent()
    w("}")
    w.dedent()
    w("}")
    w()
    doc(w, "Implement this to serve `%s`: one typed handler per method." % full)
    w("package protocol %s_ServiceProtocol: RPCService {" % ns)
    w.indent()
    for m in service.method:
        fn = swift_identifier(lower_camel(camel_to_lower(m.name)))
        w("func %s(request: %s.Method.%s.Input, context: ServerContext) async throws -> %s.Method.%s.Output" % (fn, ns, m.name, ns, m.name))
    w.dedent()
    w("}")
    w()
    w("extension %s_ServiceProtocol {" % ns)
    w.indent()
    w("package func registerMethods(with router: inout RPCRouter) {")
    w.indent()
    for m in service.method:
        fn = swift_identifier(lower_camel(camel_to_lower(m.name)))
        w("router.registerHandler(forMethod: %s.Method.%s.descriptor) { (request: %s.Method.%s.Input, context) in" % (ns, m.name, ns, m.name))
        w("    try await self.%s(request: request, context: context)" % fn)
        w("}")
    w.dedent()
    w("}")
    w.dedent()
    w("}")
    w()
    doc(w, "A typed client for `%s`." % full)
    w("package struct %s_Client: Sendable {" % ns)
    w.indent()
    w("private let transport: any ClientTransport")
    w()
    w("package init(wrapping transport: any ClientTransport) {")
    w("    self.transport = transport")
    w("}")
    for m in service.method:
        fn = swift_identifier(lower_camel(camel_to_lower(m.name)))
        w()
        doc(w, "Calls `%s/%s`." % (full, m.name))
        w("package func %s(" % fn)
        w("    _ request: %s.Method.%s.Input," % (ns, m.name))
        w("    options: CallOptions = .defaults")
        w(") async throws -> %s.Method.%s.Output {" % (ns, m.name))
        w("    try await self.transport.unary(request: request, method: %s.Method.%s.descriptor, options: options)" % (ns, m.name))
        w("}")
    w.dedent()
    w("}")


def module_of(directory):
    parts = os.path.normpath(directory).split(os.sep)
    if len(parts) < 2 or parts[-1] != "Generated":
        raise GeneratorError("output folder %s must end in <Module>/Generated" % directory)
    return parts[-2]


def generate_file(f, out_module, package_modules, messages, enums, file_by_name):
    if f.syntax != "proto3":
        raise GeneratorError("%s: only proto3 files are supported" % f.name)
    w = Writer()
    w("// DO NOT EDIT. Generated by scripts/protogen.py from proto/%s (`make proto`)." % f.name)
    w()
    imports = {"CProtobufC", "CRekeyProto", "RekeyProtobuf"}
    if f.service and out_module != "RekeyRPC":
        imports.add("RekeyRPC")
    for dep in f.dependency:
        dep_file = file_by_name[dep]
        module = package_modules.get(dep_file.package)
        if module and module != out_module:
            imports.add(module)
    for name in sorted(imports):
        w("import %s" % name)
    for e in f.enum_type:
        w()
        emit_enum(w, enums["." + (f.package + "." if f.package else "") + e.name])
    for m in f.message_type:
        info = messages["." + (f.package + "." if f.package else "") + m.name]
        w()
        emit_message_struct(w, info, messages, enums)
        w()
        emit_message_conversions(w, info, messages, enums)
        w()
        emit_message_protocol(w, info, messages, enums)
    for s in f.service:
        emit_service(w, s, f.package, messages)
    return w.text()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--descriptor-set", required=True)
    parser.add_argument("--map", action="append", default=[], metavar="PACKAGE=DIR")
    args = parser.parse_args()

    file_set = descriptor_pb2.FileDescriptorSet()
    with open(args.descriptor_set, "rb") as handle:
        file_set.ParseFromString(handle.read())

    package_dirs = {}
    for entry in args.map:
        package, _, directory = entry.partition("=")
        if not directory:
            raise GeneratorError("--map wants PACKAGE=DIR, got %r" % entry)
        package_dirs[package] = directory
    package_modules = {p: module_of(d) for p, d in package_dirs.items()}

    messages, enums = collect_types(file_set)
    file_by_name = {f.name: f for f in file_set.file}
    for f in file_set.file:
        if f.package.startswith("google.protobuf"):
            continue
        if f.package not in package_dirs:
            raise GeneratorError("%s: no --map for package %s" % (f.name, f.package))
        directory = package_dirs[f.package]
        text = generate_file(f, package_modules[f.package], package_modules, messages, enums, file_by_name)
        os.makedirs(directory, exist_ok=True)
        base = os.path.splitext(os.path.basename(f.name))[0]
        with open(os.path.join(directory, base + ".pb.swift"), "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    try:
        main()
    except GeneratorError as error:
        print("protogen: error: %s" % error, file=sys.stderr)
        sys.exit(1)
