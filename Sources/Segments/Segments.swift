// Segments: see ARCHITECTURE.md.
enum SegmentsModule {}
