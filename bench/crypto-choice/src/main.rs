//! ES256, ES512, RS256 and PS256 verification per crate: aws-lc-rs (chosen), ring, RustCrypto
//! (p256, p521, rsa). Keys and signatures are made once with aws-lc-rs; each candidate parses the
//! public key once (where its API allows) and verifies N distinct messages, 7 passes; printed:
//! "ALG CRATE min median max" in microseconds per verification, or "ALG CRATE unsupported".
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self as awssig, KeyPair};
use std::hint::black_box;
use std::time::Instant;

fn time(n: usize, mut f: impl FnMut(usize) -> bool) -> [f64; 3] {
    let mut v: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for i in 0..n {
                assert!(black_box(f(black_box(i))));
            }
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    [v[0], v[3], v[6]]
}

fn show(alg: &str, krate: &str, t: [f64; 3]) {
    println!("{alg} {krate} {:.2} {:.2} {:.2}", t[0], t[1], t[2]);
}

fn messages(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1c2VyIiwibiI6{i:08}fQ").into_bytes()).collect()
}

fn ecdsa(n: usize) {
    let rng = SystemRandom::new();
    for (alg, signing, aws_v, ring_v) in [
        (
            "ES256",
            &awssig::ECDSA_P256_SHA256_FIXED_SIGNING,
            &awssig::ECDSA_P256_SHA256_FIXED,
            Some(&ring::signature::ECDSA_P256_SHA256_FIXED),
        ),
        ("ES512", &awssig::ECDSA_P521_SHA512_FIXED_SIGNING, &awssig::ECDSA_P521_SHA512_FIXED, None),
    ] {
        let n = if alg == "ES512" { n / 4 } else { n };
        let pkcs8 = awssig::EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
        let kp = awssig::EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref()).unwrap();
        let public = kp.public_key().as_ref().to_vec(); // SEC1 uncompressed
        let msgs = messages(n);
        let sigs: Vec<Vec<u8>> = msgs.iter().map(|m| kp.sign(&rng, m).unwrap().as_ref().to_vec()).collect();
        let parsed = awssig::ParsedPublicKey::new(aws_v, &public).unwrap();
        show(alg, "aws-lc-rs", time(n, |i| parsed.verify_sig(&msgs[i], &sigs[i]).is_ok()));
        match ring_v {
            Some(v) => {
                let key = ring::signature::UnparsedPublicKey::new(v, &public);
                show(alg, "ring", time(n, |i| key.verify(&msgs[i], &sigs[i]).is_ok()));
            }
            None => println!("{alg} ring unsupported"),
        }
        if alg == "ES256" {
            use p256::ecdsa::signature::Verifier;
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&public).unwrap();
            let sigs: Vec<p256::ecdsa::Signature> =
                sigs.iter().map(|s| p256::ecdsa::Signature::from_slice(s).unwrap()).collect();
            show(alg, "RustCrypto", time(n, |i| vk.verify(&msgs[i], &sigs[i]).is_ok()));
        } else {
            use p521::ecdsa::signature::Verifier;
            let vk = p521::ecdsa::VerifyingKey::from_sec1_bytes(&public).unwrap();
            let sigs: Vec<p521::ecdsa::Signature> =
                sigs.iter().map(|s| p521::ecdsa::Signature::from_slice(s).unwrap()).collect();
            show(alg, "RustCrypto", time(n, |i| vk.verify(&msgs[i], &sigs[i]).is_ok()));
        }
    }
}

fn rsa_algs(n: usize) {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::signature::Verifier;
    let rng = SystemRandom::new();
    let kp = awssig::RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let public = kp.public_key().as_ref().to_vec(); // PKCS#1 RSAPublicKey DER
    let rc = rsa::RsaPublicKey::from_pkcs1_der(&public).unwrap();
    let msgs = messages(n);
    for (alg, pad, aws_v, ring_v) in [
        (
            "RS256",
            &awssig::RSA_PKCS1_SHA256 as &dyn awssig::RsaEncoding,
            &awssig::RSA_PKCS1_2048_8192_SHA256,
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        ),
        (
            "PS256",
            &awssig::RSA_PSS_SHA256,
            &awssig::RSA_PSS_2048_8192_SHA256,
            &ring::signature::RSA_PSS_2048_8192_SHA256,
        ),
    ] {
        let sigs: Vec<Vec<u8>> = msgs
            .iter()
            .map(|m| {
                let mut s = vec![0; kp.public_modulus_len()];
                kp.sign(pad, &rng, m, &mut s).unwrap();
                s
            })
            .collect();
        let parsed = awssig::ParsedPublicKey::new(aws_v, &public).unwrap();
        show(alg, "aws-lc-rs", time(n, |i| parsed.verify_sig(&msgs[i], &sigs[i]).is_ok()));
        let key = ring::signature::UnparsedPublicKey::new(ring_v, &public);
        show(alg, "ring", time(n, |i| key.verify(&msgs[i], &sigs[i]).is_ok()));
        if alg == "RS256" {
            let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(rc.clone());
            let sigs: Vec<_> = sigs.iter().map(|s| rsa::pkcs1v15::Signature::try_from(s.as_slice()).unwrap()).collect();
            show(alg, "RustCrypto", time(n, |i| vk.verify(&msgs[i], &sigs[i]).is_ok()));
        } else {
            let vk = rsa::pss::VerifyingKey::<sha2::Sha256>::new(rc.clone());
            let sigs: Vec<_> = sigs.iter().map(|s| rsa::pss::Signature::try_from(s.as_slice()).unwrap()).collect();
            show(alg, "RustCrypto", time(n, |i| vk.verify(&msgs[i], &sigs[i]).is_ok()));
        }
    }
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    ecdsa(n);
    rsa_algs(n);
}
