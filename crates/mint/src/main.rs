//! Test-only token minter (never part of the extension): deterministic keys of every algorithm
//! (tests/common/signers.rs), Better-Auth-shaped tokens, and hand-made variants for negative tests.
//!
//!   mint jwk SEED [ALG]                public JWK JSON for the key of SEED (ALG: EdDSA by default,
//!                                      ES256, ES512, RS256 or PS256; RSA seed 4 is 4096 bits)
//!   mint token SEED [name=value ...]   a signed token; names:
//!       alg=ALG                        the key's algorithm (and the header's, unless header= is given)
//!       kid=K | nokid=1                header kid (default "k<SEED>")
//!       header=JSON                    the exact header text (overrides kid)
//!       payload=TEXT                   the exact payload text (overrides everything below)
//!       exp=+N|-N|ABS  iat=...  nbf=...   times, relative to now unless absolute (N may be fractional)
//!       iss=S aud=S sub=S uuid=S       string claims ("-" removes the claim)
//!       claims=JSON                    extra members merged into the payload
//!       pad=N                          a "pad" claim of N characters (large tokens)
//!       payloadhex=HEX                 the exact payload bytes (invalid UTF-8 and the like)
//!       nest=N                         a claim nested N arrays deep
//!       malleate=1                     add L (the group order) to S: same R, non-canonical S

#[path = "../../auth_jwt_core/tests/common/signers.rs"]
#[allow(dead_code)]
mod signers;

use auth_jwt_core::{b64, Alg};
use serde_json::{json, Map, Value};
use signers::Signer;
use std::time::{SystemTime, UNIX_EPOCH};

fn key(seed: &str, alg: Alg) -> Signer {
    Signer::new(alg, seed.parse::<u8>().expect("SEED is 0-255"))
}

fn alg_of(name: &str) -> Alg {
    Alg::from_name(name).expect("ALG is EdDSA, ES256, ES512, RS256 or PS256")
}

fn time(v: &str, now: i64) -> Value {
    match v.as_bytes().first() {
        Some(b'+') | Some(b'-') => match v.parse::<i64>() {
            Ok(s) => json!(now + s),
            Err(_) => json!(now as f64 + v.parse::<f64>().expect("relative seconds")),
        },
        _ => serde_json::from_str(v).unwrap_or_else(|_| json!(v)),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    match args.first().map(String::as_str) {
        Some("jwk") => {
            println!("{}", key(&args[1], args.get(2).map_or(Alg::EdDSA, |a| alg_of(a))).public_jwk());
        }
        Some("token") => {
            let seed = &args[1];
            let alg = args[2..].iter().find_map(|a| a.strip_prefix("alg=")).map_or(Alg::EdDSA, alg_of);
            let sk = key(seed, alg);
            let mut header = format!(r#"{{"alg":"{alg}","kid":"k{seed}"}}"#);
            let mut claims: Map<String, Value> = json!({
                "iat": now, "exp": now + 600, "iss": "https://app.example.com", "aud": "https://app.example.com",
                "sub": format!("user{seed}"), "uuid": format!("00000000-0000-4000-8000-{:012}", seed.parse::<u64>().unwrap()),
            })
            .as_object()
            .unwrap()
            .clone();
            let mut payload: Option<Vec<u8>> = None;
            let mut malleate = false;
            for a in &args[2..] {
                let (k, v) = a.split_once('=').expect("name=value");
                match k {
                    "alg" => {}
                    "kid" => header = format!(r#"{{"alg":"{alg}","kid":{}}}"#, json!(v)),
                    "nokid" => header = format!(r#"{{"alg":"{alg}"}}"#),
                    "header" => header = v.to_string(),
                    "payload" => payload = Some(v.as_bytes().to_vec()),
                    "payloadhex" => {
                        payload = Some(
                            (0..v.len()).step_by(2).map(|i| u8::from_str_radix(&v[i..i + 2], 16).unwrap()).collect(),
                        )
                    }
                    "malleate" => malleate = true,
                    "nest" => {
                        let n: usize = v.parse().unwrap();
                        let deep: Value =
                            serde_json::from_str(&format!("{}1{}", "[".repeat(n.min(100)), "]".repeat(n.min(100))))
                                .unwrap();
                        claims.insert("deep".into(), deep);
                        if n > 100 {
                            // Beyond serde_json's own limit: splice the text in after serialization.
                            claims.insert("deeper".into(), json!("@DEEP@"));
                            claims.insert("deep_n".into(), json!(n));
                        }
                    }
                    _ if v == "-" => {
                        claims.remove(k);
                    }
                    "exp" | "iat" | "nbf" => {
                        claims.insert(k.into(), time(v, now));
                    }
                    "claims" => {
                        let extra: Map<String, Value> = serde_json::from_str(v).expect("claims=JSON object");
                        claims.extend(extra);
                    }
                    "pad" => {
                        claims.insert("pad".into(), json!("x".repeat(v.parse().unwrap())));
                    }
                    _ => {
                        claims.insert(k.into(), json!(v));
                    }
                }
            }
            let payload = payload.unwrap_or_else(|| {
                let n = claims.get("deep_n").and_then(Value::as_u64).unwrap_or(0) as usize;
                let text = Value::Object(claims).to_string();
                text.replace("\"@DEEP@\"", &format!("{}1{}", "[".repeat(n), "]".repeat(n))).into_bytes()
            });
            let input = format!("{}.{}", b64::encode(header.as_bytes()), b64::encode(&payload));
            let mut sig = sk.sign(input.as_bytes());
            if malleate {
                // S + L, little-endian: still < 2^256, so it encodes; verify_strict must refuse it.
                const L: [u8; 32] = [
                    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0,
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
                ];
                let mut carry = 0u16;
                for i in 0..32 {
                    let t = sig[32 + i] as u16 + L[i] as u16 + carry;
                    sig[32 + i] = t as u8;
                    carry = t >> 8;
                }
            }
            println!("{input}.{}", b64::encode(&sig));
        }
        _ => {
            eprintln!("usage: mint jwk SEED | mint token SEED [name=value ...]");
            std::process::exit(2);
        }
    }
}
