// Reorder: see ARCHITECTURE.md.
enum ReorderModule {}
