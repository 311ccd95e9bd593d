import ArgumentParser

// Placeholder until its issue lands: says plainly that it is not built yet.
struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export", abstract: "Write one uncompressed PcapNG over a time range.")

    func run() async throws {
        throw ValidationError("tlstap export is not built yet")
    }
}
