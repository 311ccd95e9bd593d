/// The release version; the Makefile reads it for the .deb name.
let tlstapVersion = "0.1.0"

public enum TLSTap {
    public static let version = tlstapVersion
}
