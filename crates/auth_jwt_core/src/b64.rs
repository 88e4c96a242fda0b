//! Strict base64url (RFC 7515 section 2): URL-safe alphabet, no padding, no whitespace, and
//! canonical: the unused low bits of the last character must be zero, so every byte string has
//! exactly one encoding (otherwise one signature would cover several "different" tokens).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};

const STRICT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decode, with a reason that names the kind of fault but not the input.
///
/// Every cold verification decodes a payload and a signature (about 900 characters for RS256):
/// base64-simd does that in a third of the time of the `base64` crate's scalar engine. Both are
/// strict in the same way (tests/fuzz.rs checks that they accept the same texts and decode them
/// alike); the scalar engine runs only on a refusal, to name the fault.
pub fn decode(s: &str) -> Result<Vec<u8>, String> {
    // Should the engines ever disagree, the text is still refused.
    base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(s)
        .map_err(|_| decode_scalar(s).err().unwrap_or_else(|| "is not base64url".into()))
}

/// Decode with the scalar engine only: the reference the fast path is tested against.
pub fn decode_scalar(s: &str) -> Result<Vec<u8>, String> {
    STRICT.decode(s).map_err(describe)
}

fn describe(e: base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(at, b'=') => format!("has padding at offset {at}"),
        base64::DecodeError::InvalidByte(at, b) if b.is_ascii_whitespace() => format!("has whitespace at offset {at}"),
        base64::DecodeError::InvalidByte(at, b) if b == b'+' || b == b'/' => {
            format!("uses the standard base64 alphabet ('+' or '/') at offset {at}, not base64url")
        }
        base64::DecodeError::InvalidByte(at, _) => format!("is not base64url (invalid character at offset {at})"),
        base64::DecodeError::InvalidLength(n) => format!("is not base64url (impossible length {n})"),
        base64::DecodeError::InvalidLastSymbol(_, _) => "is not canonical base64url (non-zero trailing bits)".into(),
        base64::DecodeError::InvalidPadding => "has padding".into(),
    }
}

pub fn encode(bytes: &[u8]) -> String {
    STRICT.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for n in 0..40 {
            let v: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(&encode(&v)).unwrap(), v);
        }
    }

    #[test]
    fn strictness() {
        assert!(decode("eyJhIjoxfQ").is_ok());
        assert!(decode("eyJhIjoxfQ==").unwrap_err().contains("padding"));
        assert!(decode("eyJh IjoxfQ").unwrap_err().contains("whitespace"));
        assert!(decode("eyJhIjoxfQ\n").unwrap_err().contains("whitespace"));
        assert!(decode("a+b/").unwrap_err().contains("standard base64"));
        assert!(decode("eyJhIjoxfR").unwrap_err().contains("trailing bits"), "Q -> R sets a trailing bit");
        assert!(decode("a").unwrap_err().contains("length"));
        assert!(decode("é").is_err());
    }
}
