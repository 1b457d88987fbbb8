import RekeyTestTraits
import RekeyTesting
import Testing

/// The helper every executable test starts its processes with: when one never comes up, its
/// error must say why without a second run.
@Suite("Starting a process for a test")
struct ServiceProcessTests {
    @Test("a process that never listens: the error holds its log and what each of its threads waits in")
    func neverListens() async throws {
        let error = await #expect(throws: ServiceProcessError.self) {
            try await ServiceProcess.start("/bin/sh", arguments: ["-c", "echo getting ready >&2; exec sleep 60"], startupLimit: 1)
        }
        let message = try #require(error).description
        #expect(message.contains("/bin/sh did not start listening"), "\(message)")
        #expect(message.contains("getting ready"), "its log: \(message)")
        #expect(message.contains("its threads, still running:"), "\(message)")
        #expect(message.contains(" sleep: S, waiting in "), "\(message)")
    }

    @Test("a process that exits before listening ends the wait at once, with its last words")
    func exitsEarly() async throws {
        let error = await #expect(throws: ServiceProcessError.self) {
            try await ServiceProcess.start("/bin/sh", arguments: ["-c", "echo no configuration >&2; exit 3"], startupLimit: 600)
        }
        let message = try #require(error).description
        #expect(message.contains("no configuration"), "\(message)")
        #expect(!message.contains("its threads"), "\(message)")
    }

    @Test("process slots: a taker waits while all are taken; a slot given back goes to the longest waiter")
    func slots() async throws {
        let slots = ProcessSlots.Slots(count: 2)
        await slots.take()
        await slots.take()
        let order = Recorder()
        let first = Task { await slots.take(); await order.add("first") }
        while await slots.waiting < 1 { await Task.yield() }
        let second = Task { await slots.take(); await order.add("second") }
        while await slots.waiting < 2 { await Task.yield() }
        #expect(await order.names.isEmpty, "both wait while the two slots are taken")

        await slots.giveBack()
        await first.value
        #expect(await order.names == ["first"])
        #expect(await slots.waiting == 1, "the second still waits")
        await slots.giveBack()
        await second.value
        #expect(await order.names == ["first", "second"])
        // Three given back of four taken: one is free again, and taking it does not wait.
        await slots.giveBack()
        await slots.take()
        #expect(await slots.waiting == 0)
    }

    @Test("REKEY_TEST_PROCESS_SLOTS: unset is four, a whole number from 1 is taken as it is")
    func slotSetting() {
        #expect(ProcessSlots.configuredCount(nil) == 4)
        #expect(ProcessSlots.configuredCount("1") == 1)
        #expect(ProcessSlots.configuredCount(" 12 ") == 12)
    }

    actor Recorder {
        var names: [String] = []
        func add(_ name: String) { self.names.append(name) }
    }
}

@Suite("A suite marked .processSlots", .processSlots)
struct ProcessSlotsTraitTests {
    @Test("each test runs holding a slot", arguments: [1, 2])
    func holdsASlot(_ argument: Int) async {
        #expect(await ProcessSlots.pool.taken >= 1, "case \(argument)")
    }
}
