//! Benchmark helper (bench/run): token generation at scale and the raw verification baselines.
//!
//!   bench tokens N USERS [PAD] [KEYS]  COPY-format lines "n<TAB>user<TAB>token<TAB>headers<TAB>claims"
//!                                     for N distinct valid tokens (1 h lifetime) spread over USERS
//!                                     users, signed round-robin by KEYS keys (kid "k1".."kKEYS")
//!   bench jwks N                       COPY-format lines "kSEED<TAB>public JWK" for keys 1..N
//!   bench raw N [PASSES]               microseconds per verify_strict over N distinct signing
//!                                     inputs: "min median max" over PASSES passes (7)
//!   bench core N                       the same through auth_jwt_core::verify (parse + JSON + claims)
//!   bench alg-tokens N ALG             like `tokens N 1000`, signed with ALG by key "k1" of ALG
//!   bench alg-jwks ALG                 the COPY line "k1<TAB>public JWK<TAB>ALG" of that key
//!   bench alg-raw N ALG                microseconds per verification with the crate's own API
//!                                     (ed25519-dalek verify_strict, aws-lc-rs ParsedPublicKey),
//!                                     key parsed once: "min median max" over 7 passes
//!   bench alg-pair N ALG               "raw core": the crate's own verify and the core's whole path
//!                                     (parse, verify, claims, jsonb) on the same N tokens, the best
//!                                     of many short alternating passes each, in microseconds
//!   bench sweep N                      raw verify_strict at 256 stack depths (0 to 4080 bytes deeper,
//!                                     in 16-byte steps), best of 9 passes: "offset microseconds" per line, then
//!                                     "min median max" (see bench/FINDINGS.md)

#[path = "../tests/common/signers.rs"]
#[allow(dead_code)]
mod signers;

use auth_jwt_core::{b64, verify, Alg, KeyRow, KeySet, Validation};
use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use ed25519_dalek::{Signature, Signer, SigningKey};
use std::hint::black_box;
use std::io::Write;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const ISS: &str = "https://app.example.com";

/// A crate's own verify call, for the raw per-algorithm baseline.
type RawVerify = dyn Fn(&[u8], &[u8]) -> bool;

fn key(seed: u32) -> SigningKey {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&seed.to_le_bytes());
    b[4] = 0xa5;
    SigningKey::from_bytes(&b)
}

fn user_uuid(u: u64) -> String {
    format!("00000000-0000-4000-8000-{u:012}")
}

/// A Better-Auth-sized payload (definePayload with uuid, email, name; plus Better Auth's claims).
fn claims(n: u64, user: u64, now: u64, pad: usize) -> String {
    let pad = if pad > 0 { format!(r#","pad":"{}""#, "x".repeat(pad)) } else { String::new() };
    format!(
        r#"{{"iat":{now},"uuid":"{}","email":"user{user}@example.com","name":"User {user}","sid":"se{user:030}","sub":"ba{user:030}","exp":{},"iss":"{ISS}","aud":"{ISS}","jti":"{n}"{pad}}}"#,
        user_uuid(user),
        now + 3600
    )
}

fn token(sk: &SigningKey, kid: &str, payload: &str) -> String {
    let input = format!(
        "{}.{}",
        b64::encode(format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#).as_bytes()),
        b64::encode(payload.as_bytes())
    );
    let sig = sk.sign(input.as_bytes());
    format!("{input}.{}", b64::encode(&sig.to_bytes()))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn inputs(n: usize) -> (SigningKey, Vec<(Vec<u8>, Signature)>) {
    let sk = key(1);
    let t = now();
    let v = (0..n as u64)
        .map(|i| {
            let tok = token(&sk, "k1", &claims(i, i % 1000, t, 0));
            let (input, sig) = tok.rsplit_once('.').unwrap();
            let sig: [u8; 64] = b64::decode(sig).unwrap().try_into().unwrap();
            (input.as_bytes().to_vec(), Signature::from_bytes(&sig))
        })
        .collect();
    (sk, v)
}

fn passes(n: usize, f: impl FnMut()) -> String {
    passes_of(n, 7, f)
}

/// `k` timed passes after one untimed one (a fresh process's first pass pays for page faults
/// and cold caches, which would weigh on a single timed pass).
fn passes_of(n: usize, k: usize, mut f: impl FnMut()) -> String {
    f();
    let mut us: Vec<f64> = (0..k.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        })
        .collect();
    us.sort_by(|a, b| a.partial_cmp(b).unwrap());
    format!("{:.2} {:.2} {:.2}", us[0], us[us.len() / 2], us[us.len() - 1])
}

/// Run `f` with the stack pointer `shift` bytes lower (a multiple of 16, so the ABI's alignment
/// holds), exactly as if it were called from that much deeper in some caller's stack.
#[cfg(target_arch = "x86_64")]
fn at_depth(shift: usize, f: &mut dyn FnMut()) {
    extern "C" fn trampoline(f: *mut &mut dyn FnMut()) {
        // SAFETY: the pointer comes from at_depth, whose borrow outlives the call.
        unsafe { (*f)() }
    }
    assert_eq!(shift % 16, 0);
    let mut f = f;
    // SAFETY: rsp moves down by a multiple of 16 and back; r12 (callee-saved) carries the shift
    // across the call; the asm is not `nostack`, so the compiler keeps its red zone out of the way.
    unsafe {
        std::arch::asm!(
            "sub rsp, r12",
            "call {t}",
            "add rsp, r12",
            t = in(reg) trampoline as *const () as usize,
            in("r12") shift,
            in("rdi") &mut f as *mut &mut dyn FnMut(),
            clobber_abi("C"),
        );
    }
}

/// The crate's own verification for `alg` under `signer`'s public key, parsed once.
fn raw_verifier(alg: Alg, signer: &signers::Signer) -> Box<RawVerify> {
    let jwk: serde_json::Value = serde_json::from_str(&signer.public_jwk()).unwrap();
    let part = |name: &str| b64::decode(jwk[name].as_str().unwrap()).unwrap();
    use aws_lc_rs::signature as s;
    match alg {
        Alg::EdDSA => {
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&part("x").try_into().unwrap()).unwrap();
            Box::new(move |m, sig| vk.verify_strict(m, &Signature::from_slice(sig).unwrap()).is_ok())
        }
        Alg::ES256 | Alg::ES512 => {
            let point = [&[4u8][..], &part("x"), &part("y")].concat();
            let a: &'static dyn s::VerificationAlgorithm =
                if alg == Alg::ES256 { &s::ECDSA_P256_SHA256_FIXED } else { &s::ECDSA_P521_SHA512_FIXED };
            let key = ParsedPublicKey::new(a, point).unwrap();
            Box::new(move |m, sig| key.verify_sig(m, sig).is_ok())
        }
        Alg::RS256 | Alg::PS256 => {
            let params = if alg == Alg::RS256 { &s::RSA_PKCS1_2048_8192_SHA256 } else { &s::RSA_PSS_2048_8192_SHA256 };
            let (nn, e) = (part("n"), part("e"));
            let key =
                RsaPublicKeyComponents { n: nn.as_slice(), e: e.as_slice() }.to_parsed_public_key(params).unwrap();
            Box::new(move |m, sig| key.verify_sig(m, sig).is_ok())
        }
    }
}

fn alg_arg(args: &[String]) -> Alg {
    args.get(2).and_then(|a| Alg::from_name(a)).expect("ALG: EdDSA, ES256, ES512, RS256 or PS256")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    match args.first().map(String::as_str) {
        Some("tokens") => {
            let (n, users, pad, keys) = (arg(1, 10_000), arg(2, 1000) as u64, arg(3, 0), arg(4, 1) as u32);
            let sks: Vec<SigningKey> = (1..=keys).map(key).collect();
            let t = now();
            let out = std::io::stdout();
            let mut out = std::io::BufWriter::new(out.lock());
            for i in 0..n as u64 {
                let user = i % users;
                let k = (i % keys as u64) as u32;
                let c = claims(i, user, t, pad);
                let tok = token(&sks[k as usize], &format!("k{}", k + 1), &c);
                let headers = format!(r#"{{"authorization":"Bearer {tok}","accept":"*/*"}}"#);
                writeln!(out, "{i}\t{user}\t{tok}\t{headers}\t{c}").unwrap();
            }
        }
        Some("jwks") => {
            for seed in 1..=arg(1, 1) as u32 {
                let x = b64::encode(key(seed).verifying_key().as_bytes());
                println!("k{seed}\t{{\"crv\":\"Ed25519\",\"x\":\"{x}\",\"kty\":\"OKP\"}}");
            }
        }
        Some("raw") => {
            let n = arg(1, 10_000);
            let (sk, v) = inputs(n);
            let vk = sk.verifying_key();
            println!(
                "{}",
                passes_of(n, arg(2, 7), || {
                    for (m, s) in &v {
                        black_box(vk.verify_strict(black_box(m), black_box(s)).is_ok());
                    }
                })
            );
        }
        Some("core") => {
            let n = arg(1, 10_000);
            let sk = key(1);
            let t = now();
            let toks: Vec<String> = (0..n as u64).map(|i| token(&sk, "k1", &claims(i, i % 1000, t, 0))).collect();
            let jwk =
                format!(r#"{{"crv":"Ed25519","x":"{}","kty":"OKP"}}"#, b64::encode(sk.verifying_key().as_bytes()));
            let keys =
                KeySet::from_rows([KeyRow { id: "k1", public_key: &jwk, expires_at: None, alg: None, crv: None }]);
            let v = Validation::for_origin(ISS);
            println!(
                "{}",
                passes(n, || {
                    for tok in &toks {
                        black_box(verify(black_box(tok), &keys, &v, t as i64).is_ok());
                    }
                })
            );
        }
        Some("alg-tokens") => {
            let (n, alg) = (arg(1, 1000), alg_arg(&args));
            let signer = signers::Signer::new(alg, 1);
            let t = now();
            let out = std::io::stdout();
            let mut out = std::io::BufWriter::new(out.lock());
            for i in 0..n as u64 {
                let user = i % 1000;
                let c = claims(i, user, t, 0);
                let input = format!(
                    "{}.{}",
                    b64::encode(format!(r#"{{"alg":"{alg}","kid":"k1"}}"#).as_bytes()),
                    b64::encode(c.as_bytes())
                );
                let tok = format!("{input}.{}", b64::encode(&signer.sign(input.as_bytes())));
                let headers = format!(r#"{{"authorization":"Bearer {tok}","accept":"*/*"}}"#);
                writeln!(out, "{i}\t{user}\t{tok}\t{headers}\t{c}").unwrap();
            }
        }
        Some("alg-jwks") => {
            let alg = alg_arg(&args);
            println!("k1\t{}\t{alg}", signers::Signer::new(alg, 1).public_jwk());
        }
        Some("alg-raw") => {
            let (n, alg) = (arg(1, 1000), alg_arg(&args));
            let signer = signers::Signer::new(alg, 1);
            let t = now();
            let msgs: Vec<(Vec<u8>, Vec<u8>)> = (0..n as u64)
                .map(|i| {
                    let m = format!("eyJhbGciOiJFUzI1NiJ9.{}", b64::encode(claims(i, i % 1000, t, 0).as_bytes()));
                    let sig = signer.sign(m.as_bytes());
                    (m.into_bytes(), sig)
                })
                .collect();
            let verify = raw_verifier(alg, &signer);
            println!(
                "{}",
                passes(n, || {
                    for (m, sig) in &msgs {
                        assert!(black_box(verify(black_box(m), black_box(sig))));
                    }
                })
            );
        }
        Some("alg-pair") => {
            // The crate's own verify and the whole core path (parse, verify, claims, jsonb) on
            // the same tokens, passes alternating so both see the same machine: "raw core" in µs,
            // each the best of 11 passes.
            let (n, alg) = (arg(1, 1000), alg_arg(&args));
            let signer = signers::Signer::new(alg, 1);
            let t = now();
            let toks: Vec<String> = (0..n as u64)
                .map(|i| {
                    let input = format!(
                        "{}.{}",
                        b64::encode(format!(r#"{{"alg":"{alg}","kid":"k1"}}"#).as_bytes()),
                        b64::encode(claims(i, i % 1000, t, 0).as_bytes())
                    );
                    format!("{input}.{}", b64::encode(&signer.sign(input.as_bytes())))
                })
                .collect();
            let msgs: Vec<(&[u8], Vec<u8>)> = toks
                .iter()
                .map(|tok| {
                    let (input, sig) = tok.rsplit_once('.').unwrap();
                    (input.as_bytes(), b64::decode(sig).unwrap())
                })
                .collect();
            let verify = raw_verifier(alg, &signer);
            let jwk = signer.public_jwk();
            let name = alg.to_string();
            let keys = KeySet::from_rows([KeyRow {
                id: "k1",
                public_key: &jwk,
                expires_at: None,
                alg: Some(&name),
                crv: None,
            }]);
            let v = Validation::for_origin(ISS);
            // Many short alternating passes, the best of each: a noisy machine's bursts only add
            // time, and with short passes some of them land between bursts.
            let (mut raw, mut core) = (f64::MAX, f64::MAX);
            let chunk = 100.min(n);
            for pass in 0..(20 * n / chunk).max(50) {
                let at = (pass * chunk) % (n - chunk + 1);
                let s = Instant::now();
                for (m, sig) in &msgs[at..at + chunk] {
                    assert!(black_box(verify(black_box(m), black_box(sig))));
                }
                raw = raw.min(s.elapsed().as_secs_f64() * 1e6 / chunk as f64);
                let s = Instant::now();
                for tok in &toks[at..at + chunk] {
                    let verified = auth_jwt_core::verify(black_box(tok), &keys, &v, t as i64).unwrap();
                    black_box(auth_jwt_core::jsonb::encode(verified.claims.root()));
                }
                core = core.min(s.elapsed().as_secs_f64() * 1e6 / chunk as f64);
            }
            println!("{raw:.2} {core:.2}");
        }
        #[cfg(target_arch = "x86_64")]
        Some("sweep") => {
            let n = arg(1, 500);
            let (sk, v) = inputs(n);
            let vk = sk.verifying_key();
            // The best of 9 sweeps, each across every offset: a shared machine's noise comes in
            // bursts and only adds time, so it lands on different offsets in each sweep, while a
            // slow stack position is slow in all of them.
            let offsets: Vec<usize> = (0..4096).step_by(16).collect();
            let mut best = vec![f64::MAX; offsets.len()];
            for _ in 0..9 {
                for (i, &offset) in offsets.iter().enumerate() {
                    let t = Instant::now();
                    at_depth(offset, &mut || {
                        for (m, s) in &v {
                            black_box(vk.verify_strict(black_box(m), black_box(s)).is_ok());
                        }
                    });
                    best[i] = best[i].min(t.elapsed().as_secs_f64() * 1e6 / n as f64);
                }
            }
            for (offset, us) in offsets.iter().zip(&best) {
                println!("{offset} {us:.2}");
            }
            let mut all = best;
            all.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!("{:.2} {:.2} {:.2}", all[0], all[all.len() / 2], all[all.len() - 1]);
        }
        _ => {
            eprintln!(
                "usage: bench tokens N USERS [PAD] [KEYS] | bench jwks N | bench raw N | bench core N | bench sweep N"
            );
            std::process::exit(2);
        }
    }
}
