import ArgumentParser

// Placeholder until its issue lands: says plainly that it is not built yet.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run the capture service (what tlstap.service starts).")

    func run() async throws {
        throw ValidationError("tlstap run is not built yet")
    }
}
