import Testing
@testable import TapCore

@Suite struct UnitsTests {
    @Test func durations() throws {
        #expect(try Units.parseDuration("500ms") == 500_000_000)
        #expect(try Units.parseDuration("5s") == 5_000_000_000)
        #expect(try Units.parseDuration("10m") == 600_000_000_000)
        #expect(try Units.parseDuration("7d") == 7 * 86_400_000_000_000)
        for bad in ["", "5", "5x", "-5s", "0s", "s", "1.5s", "99999999999999999999d"] {
            #expect(throws: UnitParseError.badDuration(bad)) { try Units.parseDuration(bad) }
        }
        #expect(Units.formatDuration(300_000_000_000) == "5m")
        #expect(Units.formatDuration(1_500_000_000) == "1500ms")
    }

    @Test func sizes() throws {
        #expect(try Units.parseSize("64K") == 65_536)
        #expect(try Units.parseSize("512M") == 512 << 20)
        #expect(try Units.parseSize("10G") == 10 << 30)
        #expect(try Units.parseSize("1000") == 1000)
        for bad in ["", "G", "10X", "-1G", "0"] {
            #expect(throws: UnitParseError.badSize(bad)) { try Units.parseSize(bad) }
        }
        #expect(Units.formatSize(10 << 30) == "10G")
    }

    @Test func keyLogLinesRoundTrip() {
        let line = KeyLogLine(label: "CLIENT_RANDOM", clientRandom: [0xab, 0x01], secret: [0xff, 0x00])
        #expect(line.text == "CLIENT_RANDOM ab01 ff00")
        #expect(KeyLogLine.parse("# comment\n\(line.text)\nbogus\n") == [line])
    }
}
