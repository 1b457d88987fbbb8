import RekeyRPC
import Testing

@Suite("RPCError")
struct RPCErrorTests {
    @Test("codes carry gRPC's numbers and names, the same as the proto enum", arguments: Array(Int32(0)...16))
    func codesMatchTheContract(number: Int32) {
        let code = RPCError.Code(rawValue: number)
        let wire = Rekey_Rpc_V1_StatusCode(rawValue: number)
        #expect(wire != .unrecognized(number))
        let expected = [
            "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
            "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
            "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
            "UNAUTHENTICATED",
        ][Int(number)]
        #expect(code.description == expected)
    }

    @Test("named constants have the canonical numbers")
    func constants() {
        #expect(RPCError.Code.notFound.rawValue == 5)
        #expect(RPCError.Code.resourceExhausted.rawValue == 8)
        #expect(RPCError.Code.unavailable.rawValue == 14)
        #expect(RPCError.Code.unauthenticated.rawValue == 16)
        #expect(RPCError.Code(rawValue: 99).description == "CODE_99")
    }
}
