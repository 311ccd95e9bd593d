// Secrets: see ARCHITECTURE.md.
enum SecretsModule {}
