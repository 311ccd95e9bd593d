import ArgumentParser

// Placeholder until its issue lands: says plainly that it is not built yet.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show what the running daemon attaches to and its counters.")

    func run() async throws {
        throw ValidationError("tlstap status is not built yet")
    }
}
