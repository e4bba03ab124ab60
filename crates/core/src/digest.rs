//! SHA-256 digests as hex text: what binds an idempotency key to its payload and names a
//! native record in its key.

use sha2::{Digest, Sha256};

/// The digest of `parts` with a NUL between each two, so that no two splits of the same bytes
/// agree. (Stored key items hold digests made this way: it must not change.)
pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut hash = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hash.update([0]);
        }
        hash.update(part);
    }
    hash.finalize().iter().fold(String::with_capacity(64), |mut hex, b| {
        use std::fmt::Write;
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_payloads_digest_is_the_one_stored_keys_hold() {
        // SHA-256 of "application/json\0{}", as key items written before this module hold it.
        assert_eq!(
            super::sha256_hex(&[b"application/json", b"{}"]),
            "2f899668f4040d7b8822b5019944efd8e5de14a26495801223cd103135c2e9bc"
        );
    }
}
