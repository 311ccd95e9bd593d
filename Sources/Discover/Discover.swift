// Discover: see ARCHITECTURE.md.
enum DiscoverModule {}
