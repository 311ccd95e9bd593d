// Retention: see ARCHITECTURE.md.
enum RetentionModule {}
