//! How the handlers are linked: as position-independent executables, so that the loader places
//! them at a random address (ASLR). They parse untrusted input and link C code (aws-lc); the
//! 0.35 ms a fixed address saved at a cold start is not worth that (docs/PERFORMANCE.md).

/// The ELF `e_type` of the file at `path`: 2 is a fixed-address executable, 3 a
/// position-independent one (or a shared object).
fn elf_type(path: &str) -> u16 {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(&bytes[..4], b"\x7fELF", "{path} is not an ELF file");
    let little_endian = bytes[5] == 1;
    let raw = [bytes[16], bytes[17]];
    if little_endian {
        u16::from_le_bytes(raw)
    } else {
        u16::from_be_bytes(raw)
    }
}

#[test]
#[cfg(target_os = "linux")]
fn every_handler_is_a_position_independent_executable() {
    const ET_DYN: u16 = 3;
    for (name, path) in [
        ("events-api", env!("CARGO_BIN_EXE_events-api")),
        ("subscriptions-api", env!("CARGO_BIN_EXE_subscriptions-api")),
        ("trigger-api", env!("CARGO_BIN_EXE_trigger-api")),
        ("dispatcher", env!("CARGO_BIN_EXE_dispatcher")),
        ("ingest", env!("CARGO_BIN_EXE_ingest")),
    ] {
        assert_eq!(elf_type(path), ET_DYN, "{name} must be linked as a PIE, so the loader randomizes its address");
    }
}
