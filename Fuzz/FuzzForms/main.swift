// libFuzzer entry point; the target itself is RekeyFuzzing.forms (replayed by the tests too).
import RekeyFuzzing

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    FuzzTargets.forms(Array(UnsafeRawBufferPointer(start: start, count: count)))
    return 0
}
