// libFuzzer entry point; the target itself is RekeyFuzzing.frames (replayed by the tests too).
import RekeyFuzzing

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    FuzzTargets.frames(Array(UnsafeRawBufferPointer(start: start, count: count)))
    return 0
}
