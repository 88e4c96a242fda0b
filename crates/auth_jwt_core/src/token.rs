//! Compact JWS structure and the protected header.
//!
//! Only what is needed to pick a key and check the signature is decoded here; the payload stays
//! encoded until the signature has verified (see [`crate::verify`]).

use crate::alg::Alg;
use crate::b64;
use crate::error::{printable, Error, ErrorKind, Part};
use crate::json;
use serde_json::Value;

/// Header parameters that carry or point at a key. A verifier that honoured them would let the
/// token choose its own key; Better Auth never sends them, so their presence is refused outright.
const KEY_BEARING: [&str; 6] = ["jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"];

/// The checked protected header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: Alg,
    pub kid: Option<String>,
}

/// A compact JWS split and with all three segments base64url-decoded, not yet verified. The
/// payload's bytes are not interpreted (UTF-8, JSON) until the signature over them has verified.
#[derive(Debug, Clone)]
pub struct Compact<'a> {
    pub header: Header,
    /// `BASE64URL(header) '.' BASE64URL(payload)`, the bytes the signature covers.
    pub signing_input: &'a [u8],
    pub payload: Vec<u8>,
    /// Checked against the algorithm's fixed length here (EdDSA and ES256 64 bytes, ES512 132);
    /// an RSA signature's length is checked against the key's modulus.
    pub signature: Vec<u8>,
}

/// The last protected header parsed, by its encoded segment. Better Auth signs with one key at a
/// time, so consecutive tokens nearly always carry the same first segment byte for byte; the
/// header is a pure function of those bytes, so reusing the result is exact.
#[derive(Debug, Default)]
pub struct HeaderMemo(Option<(Box<str>, Header)>);

/// Split and decode `token`. `max_size` is checked first, before any other work.
pub fn parse(token: &str, max_size: usize) -> Result<Compact<'_>, Error> {
    parse_with(token, max_size, &mut HeaderMemo::default())
}

/// [`parse`], reusing the header from `memo` when the first segment is the one parsed last.
pub fn parse_with<'a>(token: &'a str, max_size: usize, memo: &mut HeaderMemo) -> Result<Compact<'a>, Error> {
    if token.len() > max_size {
        return Err(Error::malformed(
            Part::Token,
            format!("is {} bytes, over the limit of {max_size} (auth_jwt.max_token_size)", token.len()),
        ));
    }
    if token.is_empty() {
        return Err(Error::malformed(Part::Token, "is empty"));
    }
    // memchr: a vectorised search, where str::split('.') went about a byte at a time.
    let mut dots = memchr::memchr_iter(b'.', token.as_bytes());
    let (h, p, s) = match (dots.next(), dots.next(), dots.next()) {
        (Some(a), Some(b), None) => (&token[..a], &token[a + 1..b], &token[b + 1..]),
        _ => {
            let n = memchr::memchr_iter(b'.', token.as_bytes()).count() + 1;
            let hint = if token.trim_start().starts_with('{') {
                " (JWS JSON serialization is not accepted, only compact)"
            } else if n == 5 {
                " (looks like an encrypted JWE, which is not accepted)"
            } else {
                ""
            };
            return Err(Error::malformed(Part::Token, format!("has {n} segments, not 3{hint}")));
        }
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        let part = if h.is_empty() {
            Part::Header
        } else if p.is_empty() {
            Part::Payload
        } else {
            Part::Signature
        };
        return Err(Error::malformed(part, "is empty"));
    }
    let header = match &memo.0 {
        Some((segment, header)) if **segment == *h => header.clone(),
        _ => {
            let header = parse_header(h)?;
            memo.0 = Some((h.into(), header.clone()));
            header
        }
    };
    let payload = b64::decode(p).map_err(|e| Error::malformed(Part::Payload, e))?;
    let signature = b64::decode(s).map_err(|e| Error::malformed(Part::Signature, e))?;
    if let Some(len) = header.alg.signature_len().filter(|len| *len != signature.len()) {
        let ecdsa = matches!(header.alg.spec().verifier, crate::alg::Verifier::Ecdsa { .. });
        let note = if ecdsa { "; a JWS ECDSA signature is raw r || s, never DER" } else { "" };
        return Err(Error::malformed(
            Part::Signature,
            format!("is {} bytes, not {len} for {}{note}", signature.len(), header.alg),
        ));
    }
    Ok(Compact { header, signing_input: &token.as_bytes()[..h.len() + 1 + p.len()], payload, signature })
}

fn parse_header(h: &str) -> Result<Header, Error> {
    let bytes = b64::decode(h).map_err(|e| Error::malformed(Part::Header, e))?;
    let map = json::parse_object(&bytes).map_err(|e| Error::malformed(Part::Header, e))?;

    // Algorithm first (jsonwebtoken's order): nothing else matters for a token we cannot verify.
    let alg = match map.get("alg") {
        Some(Value::String(a)) => a,
        Some(v) => return Err(Error::malformed(Part::Header, format!("\"alg\" is {}, not a string", json::a_type(v)))),
        None => return Err(Error::malformed(Part::Header, "has no \"alg\"")),
    };
    let Some(alg) = Alg::from_name(alg) else {
        return Err(Error::new(
            ErrorKind::UnsupportedAlgorithm,
            format!(
                "the header's alg is \"{}\"; auth_jwt verifies {}, Better Auth's algorithms",
                printable(alg, 32),
                Alg::names()
            ),
        ));
    };
    if map.contains_key("crit") {
        return Err(Error::malformed(Part::Header, "has \"crit\"; no critical extensions are supported"));
    }
    if map.contains_key("b64") {
        return Err(Error::malformed(Part::Header, "has \"b64\"; unencoded payloads are not supported"));
    }
    if let Some(p) = KEY_BEARING.iter().find(|p| map.contains_key(**p)) {
        return Err(Error::malformed(Part::Header, format!("carries \"{p}\"; keys come only from the key table")));
    }
    match map.get("typ") {
        None => {}
        Some(Value::String(t)) if t == "JWT" => {}
        Some(Value::String(t)) => {
            return Err(Error::malformed(
                Part::Header,
                format!(
                    "typ is \"{}\", not \"JWT\" (OAuth access and logout tokens are not accepted)",
                    printable(t, 32)
                ),
            ))
        }
        Some(v) => return Err(Error::malformed(Part::Header, format!("\"typ\" is {}, not a string", json::a_type(v)))),
    }
    let kid = match map.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(v) => return Err(Error::malformed(Part::Header, format!("\"kid\" is {}, not a string", json::a_type(v)))),
    };
    Ok(Header { alg, kid })
}

/// What replaces a token in a statement's text (`pg_stat_activity`, `pg_stat_statements`).
pub const HIDDEN: &[u8] = b"(token not displayed)";

/// `text` with every occurrence of the credential `token` replaced by [`HIDDEN`], or None when it
/// has none. `keep_length` pads (with `*`) or cuts the replacement to the token's length, so that
/// offsets into the text stay valid. Values shorter than 16 bytes are no credential, and masking
/// them would mangle ordinary text: None.
pub fn hide(text: &[u8], token: &[u8], keep_length: bool) -> Option<Vec<u8>> {
    if token.len() < 16 {
        return None;
    }
    let mut found = memchr::memmem::find_iter(text, token).peekable();
    found.peek()?;
    let replacement: Vec<u8> = if keep_length {
        HIDDEN.iter().copied().chain(std::iter::repeat(b'*')).take(token.len()).collect()
    } else {
        HIDDEN.to_vec()
    };
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    for start in found {
        if start < at {
            continue; // overlaps the occurrence just replaced
        }
        out.extend_from_slice(&text[at..start]);
        out.extend_from_slice(&replacement);
        at = start + token.len();
    }
    out.extend_from_slice(&text[at..]);
    Some(out)
}

/// `text` with every substring shaped like a compact JWS with a JSON header (`eyJ...`, three
/// base64url segments) replaced by [`HIDDEN`], or None when it has none: what a statement's text
/// shows of the tokens in it before any of them is assigned (a multi-statement query string).
pub fn hide_jwts(text: &[u8]) -> Option<Vec<u8>> {
    let b64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_';
    let mut out: Option<Vec<u8>> = None;
    let mut at = 0;
    let mut from = 0;
    while let Some(found) = memchr::memmem::find(&text[from..], b"eyJ") {
        let start = from + found;
        // Three segments of base64url, separated by two dots.
        let mut end = start;
        let mut dots = 0;
        loop {
            end += text[end..].iter().take_while(|c| b64(c)).count();
            if dots < 2 && text.get(end) == Some(&b'.') {
                dots += 1;
                end += 1;
            } else {
                break;
            }
        }
        if dots == 2 && end - start >= 16 {
            let o = out.get_or_insert_with(|| Vec::with_capacity(text.len()));
            o.extend_from_slice(&text[at..start]);
            o.extend_from_slice(HIDDEN);
            at = end;
        }
        from = end.max(start + 3);
    }
    let mut o = out?;
    o.extend_from_slice(&text[at..]);
    Some(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(header: &str) -> String {
        format!("{}.{}.{}", b64::encode(header.as_bytes()), b64::encode(b"{}"), b64::encode(&[0u8; 64]))
    }

    fn err(header: &str) -> Error {
        parse(&tok(header), 16384).unwrap_err()
    }

    #[test]
    fn parses_better_auth_header() {
        let t = tok(r#"{"alg":"EdDSA","kid":"sYSuBKRL0FQJT8vj2sY9i6ZiGHLcG8OK"}"#);
        let c = parse(&t, 16384).unwrap();
        assert_eq!(c.header.alg, Alg::EdDSA);
        assert_eq!(c.header.kid.as_deref(), Some("sYSuBKRL0FQJT8vj2sY9i6ZiGHLcG8OK"));
        assert_eq!(c.signing_input, t.rsplit_once('.').unwrap().0.as_bytes());
        assert!(parse(&tok(r#"{"alg":"Ed25519","typ":"JWT"}"#), 16384).is_ok());
    }

    #[test]
    fn the_header_memo_never_changes_a_verdict() {
        // A sequence mixing repeats, near-repeats and bad headers: with one memo throughout,
        // every result equals a fresh parse.
        let headers = [
            r#"{"alg":"EdDSA","kid":"k1"}"#,
            r#"{"alg":"EdDSA","kid":"k1"}"#,
            r#"{"alg":"EdDSA","kid":"k2"}"#,
            r#"{"alg":"none","kid":"k2"}"#,
            r#"{"alg":"EdDSA","kid":"k2"}"#,
            r#"{"alg":"EdDSA","kid":"k2","jwk":{}}"#,
            r#"{"alg":"EdDSA","kid":"k2"}"#,
            r#"{"alg":"RS256","kid":"k2"}"#,
        ];
        let mut memo = HeaderMemo::default();
        for h in headers {
            let t = tok(h);
            let fresh = parse(&t, 16384).map(|c| c.header).map_err(|e| e.to_string());
            let memoised = parse_with(&t, 16384, &mut memo).map(|c| c.header).map_err(|e| e.to_string());
            assert_eq!(memoised, fresh, "{h}");
        }
        // A refused header leaves the memo as it was.
        assert_eq!(memo.0.as_ref().map(|(_, h)| h.alg), Some(Alg::RS256));
    }

    #[test]
    fn size_limit_is_checked_first() {
        let t = tok(r#"{"alg":"EdDSA"}"#);
        assert!(parse(&t, t.len()).is_ok());
        let e = parse(&t, t.len() - 1).unwrap_err();
        assert!(e.detail().contains("over the limit"), "{e}");
        // Even garbage that would fail later fails on size first.
        let e = parse(&"!".repeat(20_000), 16384).unwrap_err();
        assert!(e.detail().contains("over the limit"));
    }

    #[test]
    fn segments() {
        assert!(parse("a.b", 100).unwrap_err().detail().contains("2 segments"));
        assert!(parse("a.b.c.d", 100).unwrap_err().detail().contains("4 segments"));
        assert!(parse("a.b.c.d.e", 100).unwrap_err().detail().contains("JWE"));
        assert!(parse(r#"{"payload":"x","signatures":[]}"#, 100).unwrap_err().detail().contains("JSON serialization"));
        assert!(parse("", 100).unwrap_err().detail().contains("empty"));
        assert!(parse(".b.c", 100).unwrap_err().detail().starts_with("header"));
        assert!(parse(&"x.".repeat(50_000), 200_000).unwrap_err().detail().contains("segments"));
    }

    #[test]
    fn algorithms() {
        for alg in [
            "none",
            "None",
            "NONE",
            "HS256",
            "HS512",
            "RS384",
            "RS512",
            "ES384",
            "PS384",
            "ES256K",
            "rs256",
            "eddsa",
            "EDDSA",
            "Ed25519ph",
            "Ed448",
            "EdDSA ",
            "",
        ] {
            let e = err(&format!(r#"{{"alg":"{alg}"}}"#));
            assert_eq!(e.kind(), ErrorKind::UnsupportedAlgorithm, "{alg}");
        }
        assert_eq!(err(r#"{"kid":"x"}"#).kind(), ErrorKind::Malformed);
        assert_eq!(err(r#"{"alg":["EdDSA"]}"#).kind(), ErrorKind::Malformed);
        assert_eq!(err(r#"{"alg":null}"#).kind(), ErrorKind::Malformed);
    }

    #[test]
    fn duplicate_alg_is_malformed_not_last_wins() {
        let e = err(r#"{"alg":"EdDSA","alg":"none"}"#);
        assert_eq!(e.kind(), ErrorKind::Malformed);
        assert!(e.detail().contains("duplicate"));
        assert_eq!(err(r#"{"alg":"none","alg":"EdDSA"}"#).kind(), ErrorKind::Malformed);
    }

    #[test]
    fn refused_header_parameters() {
        assert!(err(r#"{"alg":"EdDSA","crit":["exp"]}"#).detail().contains("crit"));
        assert!(err(r#"{"alg":"EdDSA","crit":[]}"#).detail().contains("crit"));
        assert!(err(r#"{"alg":"EdDSA","b64":false}"#).detail().contains("b64"));
        for p in KEY_BEARING {
            assert!(err(&format!(r#"{{"alg":"EdDSA","{p}":"x"}}"#)).detail().contains(p), "{p}");
        }
        for typ in ["at+jwt", "logout+jwt", "jwt", "JOSE", "application/jwt"] {
            let e = err(&format!(r#"{{"alg":"EdDSA","typ":"{typ}"}}"#));
            assert!(e.detail().contains("typ"), "{typ}");
        }
        assert!(err(r#"{"alg":"EdDSA","typ":1}"#).detail().contains("typ"));
        assert!(err(r#"{"alg":"EdDSA","kid":7}"#).detail().contains("kid"));
        assert!(err(r#"{"alg":"EdDSA","kid":null}"#).detail().contains("kid"));
        assert!(err(r#"{"alg":"EdDSA","kid":"a\u0000b"}"#).detail().contains("U+0000"));
    }

    #[test]
    fn header_must_be_a_json_object() {
        assert_eq!(err("[]").kind(), ErrorKind::Malformed);
        assert_eq!(err("not json").kind(), ErrorKind::Malformed);
        assert!(err("\"EdDSA\"").detail().starts_with("header"));
    }

    #[test]
    fn signature_must_be_64_canonical_bytes() {
        let h = b64::encode(br#"{"alg":"EdDSA"}"#);
        let p = b64::encode(b"{}");
        let e = parse(&format!("{h}.{p}.{}", b64::encode(&[0u8; 63])), 1000).unwrap_err();
        assert!(e.detail().contains("63 bytes"));
        let mut s = b64::encode(&[0u8; 64]);
        s.push('=');
        s.push('=');
        assert!(parse(&format!("{h}.{p}.{s}"), 1000).unwrap_err().detail().contains("padding"));
        let mut s = b64::encode(&[0u8; 64]);
        s.pop();
        s.push('B'); // 64 bytes end in 2 trailing bits: 'B' sets one
        assert!(parse(&format!("{h}.{p}.{s}"), 1000).unwrap_err().detail().contains("trailing bits"));
    }

    #[test]
    fn ecdsa_signatures_have_their_fixed_length_and_rsa_any() {
        let p = b64::encode(b"{}");
        for (alg, len) in [("ES256", 64), ("ES512", 132)] {
            let h = b64::encode(format!(r#"{{"alg":"{alg}"}}"#).as_bytes());
            assert!(parse(&format!("{h}.{p}.{}", b64::encode(&vec![1u8; len])), 1000).is_ok(), "{alg}");
            for wrong in [len - 1, len + 1, 70, 72] {
                let e = parse(&format!("{h}.{p}.{}", b64::encode(&vec![1u8; wrong])), 1000).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Malformed, "{alg} {wrong}");
                assert!(e.detail().contains("never DER"), "{e}");
            }
        }
        for alg in ["RS256", "PS256"] {
            let h = b64::encode(format!(r#"{{"alg":"{alg}"}}"#).as_bytes());
            let t = format!("{h}.{p}.{}", b64::encode(&[1u8; 256]));
            assert_eq!(parse(&t, 1000).unwrap().signature.len(), 256, "checked against the key's modulus later");
        }
    }

    #[test]
    fn hide_replaces_every_occurrence() {
        let tok = b"eyJhbGciOiJFZERTQSJ9.e30.c2lnbmF0dXJl";
        let text = [&b"SET LOCAL auth_jwt.token TO '"[..], tok, b"'; SELECT '", tok, b"'"].concat();
        let out = super::hide(&text, tok, false).unwrap();
        assert_eq!(
            out,
            b"SET LOCAL auth_jwt.token TO '(token not displayed)'; SELECT '(token not displayed)'".to_vec()
        );
        let same = super::hide(&text, tok, true).unwrap();
        assert_eq!(same.len(), text.len());
        assert!(same.starts_with(b"SET LOCAL auth_jwt.token TO '(token not displayed)****"));
        assert!(memchr::memmem::find(&same, b"eyJ").is_none());
    }

    #[test]
    fn hide_leaves_text_without_the_token_and_short_values() {
        assert_eq!(super::hide(b"SELECT 1", b"eyJhbGciOiJFZERTQSJ9.e30.c2ln", false), None);
        assert_eq!(super::hide(b"SET x TO 'abc'", b"abc", false), None);
        // A token shorter than the label still keeps the text's length.
        let t = b"0123456789abcdef";
        assert_eq!(super::hide(b"'0123456789abcdef'", t, true).unwrap(), b"'(token not displ'".to_vec());
    }

    #[test]
    fn hide_jwts_finds_every_compact_token() {
        let a = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let text = format!("SELECT set_config('request.headers', '{{\"authorization\": \"Bearer {a}\"}}', true); SET LOCAL auth_jwt.token TO '{a}'");
        let out = String::from_utf8(super::hide_jwts(text.as_bytes()).unwrap()).unwrap();
        assert!(!out.contains("eyJ"), "{out}");
        assert_eq!(out.matches("(token not displayed)").count(), 2);
        assert!(out.starts_with(
            "SELECT set_config('request.headers', '{\"authorization\": \"Bearer (token not displayed)\"}', true);"
        ));
        // Not a token: no third segment, or no JSON header.
        assert_eq!(super::hide_jwts(b"SELECT 'eyJhbGciOiJFZERTQSJ9.e30'"), None);
        assert_eq!(super::hide_jwts(b"SELECT 'abc.def.ghi'"), None);
        assert_eq!(super::hide_jwts(b"SELECT 1"), None);
    }
}
