// PcapNG: see ARCHITECTURE.md.
enum PcapNGModule {}
