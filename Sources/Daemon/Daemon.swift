// Daemon: see ARCHITECTURE.md.
enum DaemonModule {}
