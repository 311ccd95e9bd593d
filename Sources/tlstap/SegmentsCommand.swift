import ArgumentParser

// Placeholder until its issue lands: says plainly that it is not built yet.
struct SegmentsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "segments", abstract: "List the recorded segments.")

    func run() async throws {
        throw ValidationError("tlstap segments is not built yet")
    }
}
