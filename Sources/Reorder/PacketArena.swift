import DequeModule
import TapCore

/// Where the reorder buffer keeps packet bytes while they wait: copied once out of the ring into
/// large chunks, handed out by (chunk, offset), and given back chunk by chunk.
///
/// Packets leave in (nearly) the order they came, so chunks empty from the front; an empty chunk is
/// kept as a spare for reuse (a fresh 4 MiB allocation is mmap'd and page-faults its way in, which
/// profiling showed as a tenth of the daemon's CPU at high rates), up to `maxSpares`, then freed.
/// Owns every chunk it allocated and frees them in `deinit`. Not thread-safe: the pipeline owns it.
final class PacketArena {
    struct Location {
        /// The chunk's number since the arena began (not an index: the front moves).
        var chunk: Int
        var offset: Int
    }

    private struct Chunk {
        var base: UnsafeMutableRawPointer
        var capacity: Int
        var used = 0
        /// Packets stored in this chunk and not yet released.
        var live = 0
    }

    static let chunkBytes = 4 << 20
    static let maxSpares = 2

    private var chunks = Deque<Chunk>()
    /// The number of `chunks.first`.
    private var firstChunkNumber = 0
    private var spares: [Chunk] = []

    init() {}

    deinit {
        for chunk in chunks { chunk.base.deallocate() }
        for chunk in spares { chunk.base.deallocate() }
    }

    /// Bytes allocated for chunks, in use or spare (for the footprint in status).
    var allocatedBytes: Int {
        chunks.reduce(0) { $0 + $1.capacity } + spares.reduce(0) { $0 + $1.capacity }
    }

    func store(_ bytes: UnsafeRawBufferPointer) -> Location {
        if chunks.isEmpty || chunks[chunks.count - 1].used + bytes.count > chunks[chunks.count - 1].capacity {
            openChunk(holding: bytes.count)
        }
        let index = chunks.count - 1
        let offset = chunks[index].used
        if let source = bytes.baseAddress, bytes.count > 0 {
            (chunks[index].base + offset).copyMemory(from: source, byteCount: bytes.count)
        }
        chunks[index].used += bytes.count
        chunks[index].live += 1
        return Location(chunk: firstChunkNumber + index, offset: offset)
    }

    /// The bytes stored at `location`; valid until that packet is released.
    func bytes(at location: Location, count: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: chunks[location.chunk - firstChunkNumber].base + location.offset, count: count)
    }

    /// One packet of `location`'s chunk is gone; empty chunks at the front are recycled.
    func release(_ location: Location) {
        chunks[location.chunk - firstChunkNumber].live -= 1
        while let first = chunks.first, first.live == 0 {
            if chunks.count == 1 {
                chunks[0].used = 0 // the chunk being filled: start it over in place
                break
            }
            recycle(chunks.removeFirst())
            firstChunkNumber += 1
        }
    }

    private func openChunk(holding count: Int) {
        if count <= Self.chunkBytes, let spare = spares.popLast() {
            chunks.append(spare)
            return
        }
        let capacity = max(Self.chunkBytes, count)
        chunks.append(Chunk(base: .allocate(byteCount: capacity, alignment: 16), capacity: capacity))
    }

    private func recycle(_ chunk: Chunk) {
        if chunk.capacity == Self.chunkBytes && spares.count < Self.maxSpares {
            spares.append(Chunk(base: chunk.base, capacity: chunk.capacity))
        } else {
            chunk.base.deallocate()
        }
    }
}
