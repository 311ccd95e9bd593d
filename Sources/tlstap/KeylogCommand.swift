import ArgumentParser

// Placeholder until its issue lands: says plainly that it is not built yet.
struct KeylogCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "keylog", abstract: "Print the recorded TLS secrets as an SSLKEYLOGFILE text.")

    func run() async throws {
        throw ValidationError("tlstap keylog is not built yet")
    }
}
