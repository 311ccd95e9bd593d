// RingBuffer: see ARCHITECTURE.md.
enum RingBufferModule {}
