// Compiles every bpf/*.bpf.c of the package with clang and turns each object into a Swift source file
// of the target being built, so the installed binary carries its BPF programs and needs no source tree.
import PackagePlugin
import Foundation

@main
struct EmbedBPF: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let bpfDir = context.package.directoryURL.appending(path: "bpf")
        let names = try FileManager.default.contentsOfDirectory(atPath: bpfDir.path())
        let headers = names.filter { $0.hasSuffix(".h") }.map { bpfDir.appending(path: $0) }
        let tool = try context.tool(named: "BPFEmbedTool")
        return names.filter { $0.hasSuffix(".bpf.c") }.sorted().map { name in
            let stem = String(name.dropLast(".bpf.c".count))
            let source = bpfDir.appending(path: name)
            let object = context.pluginWorkDirectoryURL.appending(path: "\(stem).bpf.o")
            let swift = context.pluginWorkDirectoryURL.appending(path: "EmbeddedBPF+\(stem).swift")
            return .buildCommand(
                displayName: "Compiling BPF program \(name)",
                executable: tool.url,
                arguments: [source.path(), object.path(), swift.path(), stem],
                inputFiles: [source] + headers,
                outputFiles: [swift])
        }
    }
}
