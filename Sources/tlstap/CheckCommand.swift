import ArgumentParser

// Placeholder until its issue lands: says plainly that it is not built yet.
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check", abstract: "Tell whether this kernel and host can run tlstap.")

    func run() async throws {
        throw ValidationError("tlstap check is not built yet")
    }
}
