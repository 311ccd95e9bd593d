import Glibc
import TapCore

/// A read-only view of an ELF64 little-endian file (a libssl or an executable that links OpenSSL in),
/// mapped into memory. Only what target discovery needs: section headers, symbol lookup in `.symtab`
/// and `.dynsym`, and the mapping between file offsets and virtual addresses that uprobes need (a
/// uprobe is placed at a *file offset*; code refers to *virtual addresses*).
///
/// Owns: one private read-only mapping of the whole file, unmapped in `deinit`.
final class ELFImage {
    struct Section {
        var name: String
        var type: UInt32
        var flags: UInt64
        var address: UInt64
        var offset: UInt64
        var size: UInt64
        var link: UInt32
        var entrySize: UInt64

        var isExecutable: Bool { flags & UInt64(SHF_EXECINSTR) != 0 }
        var occupiesFile: Bool { type != UInt32(SHT_NOBITS) }
    }

    let path: String
    let bytes: UnsafeRawBufferPointer
    private(set) var sections: [Section] = []

    init(path: String) throws(SystemError) {
        self.path = path
        let fd = try syscall("open \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        var info = stat()
        try syscall("stat \(path)") { fstat(fd, &info) }
        let size = Int(info.st_size)
        guard size >= MemoryLayout<Elf64_Ehdr>.size else { throw SystemError("read ELF header of \(path): file too small", errno: ENOEXEC) }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw SystemError("map \(path)", errno: errno)
        }
        bytes = UnsafeRawBufferPointer(start: base, count: size)
        do { try readSections() } catch {
            munmap(base, size)
            throw error
        }
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: bytes.baseAddress), bytes.count)
    }

    private func readSections() throws(SystemError) {
        let ident = Array(bytes.prefix(6))
        guard ident[0] == 0x7f, ident[1] == UInt8(ascii: "E"), ident[2] == UInt8(ascii: "L"), ident[3] == UInt8(ascii: "F"),
              ident[4] == UInt8(ELFCLASS64), ident[5] == UInt8(ELFDATA2LSB) else {
            throw SystemError("read \(path): not a 64-bit little-endian ELF file", errno: ENOEXEC)
        }
        let header = bytes.loadUnaligned(as: Elf64_Ehdr.self)
        let count = Int(header.e_shnum), entry = Int(header.e_shentsize), start = Int(header.e_shoff)
        guard entry == MemoryLayout<Elf64_Shdr>.size, start + count * entry <= bytes.count, Int(header.e_shstrndx) < count else {
            throw SystemError("read section headers of \(path): out of bounds", errno: ENOEXEC)
        }
        let raw = (0..<count).map { bytes.loadUnaligned(fromByteOffset: start + $0 * entry, as: Elf64_Shdr.self) }
        let names = raw[Int(header.e_shstrndx)]
        sections = raw.map { header in
            Section(name: cString(at: Int(names.sh_offset) + Int(header.sh_name)) ?? "",
                    type: header.sh_type, flags: header.sh_flags, address: header.sh_addr, offset: header.sh_offset,
                    size: header.sh_size, link: header.sh_link, entrySize: header.sh_entsize)
        }
    }

    func section(named name: String) -> Section? { sections.first { $0.name == name } }

    /// The NUL-terminated string at a file offset, or nil if it runs past the end of the file.
    func cString(at offset: Int) -> String? {
        guard offset >= 0, offset < bytes.count else { return nil }
        guard let end = bytes[offset...].firstIndex(of: 0) else { return nil }
        return String(decoding: bytes[offset..<end], as: UTF8.self)
    }

    /// Virtual address of a function symbol named `name` in `.symtab` (full symbols) or `.dynsym` (exports).
    func functionAddress(named name: String) -> UInt64? {
        for table in sections where table.type == UInt32(SHT_SYMTAB) || table.type == UInt32(SHT_DYNSYM) {
            guard Int(table.link) < sections.count, table.entrySize == UInt64(MemoryLayout<Elf64_Sym>.size),
                  Int(table.offset + table.size) <= bytes.count else { continue }
            let strings = sections[Int(table.link)]
            let wanted = Array(name.utf8)
            for index in 0..<Int(table.size / table.entrySize) {
                let symbol = bytes.loadUnaligned(fromByteOffset: Int(table.offset) + index * Int(table.entrySize), as: Elf64_Sym.self)
                guard symbol.st_value != 0, symbol.st_info & 0xf == UInt8(STT_FUNC) else { continue }
                if matches(wanted, at: Int(strings.offset) + Int(symbol.st_name)) { return symbol.st_value }
            }
        }
        return nil
    }

    /// True if the ELF exports (in `.dynsym`, defined) a function with this name: static OpenSSL builds.
    func exportsFunction(named name: String) -> Bool {
        guard let table = section(named: ".dynsym"), Int(table.link) < sections.count,
              Int(table.offset + table.size) <= bytes.count else { return false }
        let strings = sections[Int(table.link)]
        let wanted = Array(name.utf8)
        for index in 0..<Int(table.size / UInt64(MemoryLayout<Elf64_Sym>.size)) {
            let symbol = bytes.loadUnaligned(fromByteOffset: Int(table.offset) + index * MemoryLayout<Elf64_Sym>.size, as: Elf64_Sym.self)
            guard symbol.st_shndx != UInt16(SHN_UNDEF), symbol.st_info & 0xf == UInt8(STT_FUNC) else { continue }
            if matches(wanted, at: Int(strings.offset) + Int(symbol.st_name)) { return true }
        }
        return false
    }

    private func matches(_ wanted: [UInt8], at offset: Int) -> Bool {
        guard offset >= 0, offset + wanted.count < bytes.count else { return false }
        for (index, byte) in wanted.enumerated() where bytes[offset + index] != byte { return false }
        return bytes[offset + wanted.count] == 0
    }

    /// The section (with file contents) holding a virtual address.
    func section(containingAddress address: UInt64) -> Section? {
        sections.first { $0.occupiesFile && $0.address != 0 && address >= $0.address && address < $0.address + $0.size }
    }

    func fileOffset(ofAddress address: UInt64) -> Int? {
        guard let section = section(containingAddress: address) else { return nil }
        return Int(section.offset + (address - section.address))
    }

    func address(ofFileOffset offset: Int) -> UInt64? {
        let offset = UInt64(offset)
        guard let section = sections.first(where: { $0.occupiesFile && $0.address != 0 && offset >= $0.offset && offset < $0.offset + $0.size })
        else { return nil }
        return section.address + (offset - section.offset)
    }

    /// File offsets of every occurrence of `needle` inside the section `section`.
    func occurrences(of needle: [UInt8], in section: Section) -> [Int] {
        var found: [Int] = []
        let start = Int(section.offset), end = min(bytes.count, Int(section.offset + section.size)) - needle.count
        guard let first = needle.first, start <= end else { return [] }
        var index = start
        while index <= end {
            if bytes[index] == first, needle.indices.allSatisfy({ bytes[index + $0] == needle[$0] }) { found.append(index) }
            index += 1
        }
        return found
    }
}
