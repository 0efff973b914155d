//! Every way a token can be refused, and what a good one grants. Pure: the
//! time is a number, the keys are constants.

use super::*;
use serde_json::json;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_800_000_000;
const AUD: &str = "flightsim-test";

fn hs() -> Signer {
    Signer::hs256("main", SECRET).expect("key")
}

fn ed() -> Signer {
    Signer::ed25519_seed("ed1", &[7u8; 32]).expect("seed")
}

fn verifier() -> Verifier {
    let pk = ed().public_key().expect("ed25519");
    Verifier::new(
        vec![
            Key::hs256("main", SECRET).expect("hs"),
            Key::ed25519("ed1", &pk).expect("ed"),
        ],
        AUD,
    )
    .expect("verifier")
}

fn claims() -> serde_json::Value {
    json!({ "sub": "alice", "aud": AUD, "exp": NOW + 3600 })
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A token with a hand-made header, signed with the HS256 secret.
fn with_header(header: serde_json::Value, payload: serde_json::Value) -> String {
    let signed = format!("{}.{}", b64(&header), b64(&payload));
    let k = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
    let sig = URL_SAFE_NO_PAD.encode(hmac::sign(&k, signed.as_bytes()));
    format!("{signed}.{sig}")
}

#[test]
fn a_good_token_of_either_algorithm_grants_its_claims() {
    let v = verifier();
    for signer in [hs(), ed()] {
        let g = v.verify(&signer.sign(&claims()), NOW).expect("valid");
        assert_eq!(g.sub, "alice");
        assert_eq!(g.exp, NOW + 3600);
        assert!(g.create, "create defaults to yes");
        assert_eq!(g.sessions, Sessions::Any);
        assert_eq!(g.relay, Relay::Allowed);
        assert_eq!(g.max_peers, None);
    }
    let g = v
        .verify(
            &hs().sign(&json!({
                "sub": "bob", "aud": [ "other", AUD ], "exp": NOW + 60, "nbf": NOW - 5,
                "jti": "t-1", "create": false, "sessions": ["abc-def", "x1o2l3"],
                "max_peers": 4, "relay": 20000, "name": "Bob"
            })),
            NOW,
        )
        .expect("valid");
    assert!(!g.create);
    assert_eq!(g.jti.as_deref(), Some("t-1"));
    assert!(g.sessions.allows("ABCDEF") && g.sessions.allows("abc def"));
    assert!(g.sessions.allows("X1021 3"), "codes compare normalized");
    assert!(!g.sessions.allows("ABCDEG"));
    assert_eq!(g.max_peers, Some(4));
    assert_eq!(g.relay, Relay::BytesPerSec(20000));
    assert_eq!(g.name.as_deref(), Some("Bob"));
    for (relay, want) in [
        (json!(false), Relay::Denied),
        (json!(0), Relay::Denied),
        (json!(true), Relay::Allowed),
    ] {
        let mut c = claims();
        c["relay"] = relay;
        assert_eq!(v.verify(&hs().sign(&c), NOW).expect("valid").relay, want);
    }
    let mut c = claims();
    c["sessions"] = json!("*");
    assert_eq!(
        v.verify(&hs().sign(&c), NOW).expect("valid").sessions,
        Sessions::Any
    );
}

#[test]
fn time_claims_hold_with_the_leeway_and_not_beyond() {
    let v = verifier();
    let t = hs().sign(&claims());
    let exp = NOW + 3600;
    assert!(v.verify(&t, exp + DEFAULT_LEEWAY_SECS - 1).is_ok());
    assert_eq!(
        v.verify(&t, exp + DEFAULT_LEEWAY_SECS),
        Err(AuthError::Expired)
    );
    let mut c = claims();
    c["nbf"] = json!(NOW + 100);
    let t = hs().sign(&c);
    assert_eq!(v.verify(&t, NOW), Err(AuthError::NotYetValid));
    assert!(v.verify(&t, NOW + 100 - DEFAULT_LEEWAY_SECS).is_ok());
    let mut c = claims();
    if let Some(o) = c.as_object_mut() {
        o.remove("exp");
    }
    assert_eq!(
        v.verify(&hs().sign(&c), NOW),
        Err(AuthError::Malformed),
        "exp is required"
    );
}

#[test]
fn every_bad_token_gets_its_own_reason() {
    let v = verifier();
    let good = hs().sign(&claims());
    let other_hs = Signer::hs256("main", b"another-secret-another-secret-xx").expect("k");
    let other_ed = Signer::ed25519_seed("ed1", &[8u8; 32]).expect("k");
    let cases: Vec<(String, AuthError)> = vec![
        (String::new(), AuthError::Missing),
        ("  ".into(), AuthError::Missing),
        ("x".repeat(DEFAULT_MAX_TOKEN_BYTES + 1), AuthError::TooLarge),
        ("not-a-jwt".into(), AuthError::Malformed),
        ("a.b".into(), AuthError::Malformed),
        (format!("{good}.extra"), AuthError::Malformed),
        ("!!!.e30.AA".into(), AuthError::Malformed),
        // alg none
        (
            format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims())),
            AuthError::UnsupportedAlg,
        ),
        (
            with_header(json!({"alg": "RS256", "kid": "main"}), claims()),
            AuthError::UnsupportedAlg,
        ),
        (
            with_header(json!({"alg": "hs256", "kid": "main"}), claims()),
            AuthError::UnsupportedAlg,
        ),
        (
            with_header(json!({"alg": "HS256", "kid": "nope"}), claims()),
            AuthError::UnknownKey,
        ),
        // Two keys loaded: a token must say which.
        (
            with_header(json!({"alg": "HS256"}), claims()),
            AuthError::UnknownKey,
        ),
        // Signed with the HS256 secret, but naming the Ed25519 key.
        (
            with_header(json!({"alg": "HS256", "kid": "ed1"}), claims()),
            AuthError::AlgMismatch,
        ),
        (
            with_header(json!({"alg": "EdDSA", "kid": "main"}), claims()),
            AuthError::AlgMismatch,
        ),
        // Header fields this server does not understand are not ignored.
        (
            with_header(
                json!({"alg": "HS256", "kid": "main", "jku": "http://x"}),
                claims(),
            ),
            AuthError::Malformed,
        ),
        (
            with_header(
                json!({"alg": "HS256", "kid": "main", "typ": "at+jwt"}),
                claims(),
            ),
            AuthError::Malformed,
        ),
        (other_hs.sign(&claims()), AuthError::BadSignature),
        (other_ed.sign(&claims()), AuthError::BadSignature),
        (
            hs().sign(&json!({"sub": "a", "aud": "elsewhere", "exp": NOW + 60})),
            AuthError::WrongAudience,
        ),
        (
            hs().sign(&json!({"sub": "a", "exp": NOW + 60})),
            AuthError::WrongAudience,
        ),
        (
            hs().sign(&json!({"aud": AUD, "exp": NOW + 60})),
            AuthError::Malformed,
        ),
        (
            hs().sign(&json!({"sub": "", "aud": AUD, "exp": NOW + 60})),
            AuthError::Malformed,
        ),
        (
            hs().sign(&json!({"sub": "x".repeat(300), "aud": AUD, "exp": NOW + 60})),
            AuthError::Malformed,
        ),
        (
            hs().sign(&json!({"sub": "a", "aud": AUD, "exp": "tomorrow"})),
            AuthError::Malformed,
        ),
        (
            hs().sign(&json!({"sub": "a", "aud": AUD, "exp": NOW + 60, "sessions": "some"})),
            AuthError::Malformed,
        ),
        (
            hs().sign(&json!({"sub": "a", "aud": AUD, "exp": NOW + 60, "max_peers": -1})),
            AuthError::Malformed,
        ),
        (
            hs().sign(
                &json!({"sub": "a", "aud": AUD, "exp": NOW + 60, "sessions": vec!["ABCDEF"; 65]}),
            ),
            AuthError::Malformed,
        ),
        (
            hs().sign(&json!({"sub": "a", "aud": AUD, "exp": NOW - 3600})),
            AuthError::Expired,
        ),
    ];
    for (token, want) in cases {
        let shown: String = token.chars().take(60).collect();
        assert_eq!(v.verify(&token, NOW), Err(want), "token {shown}");
    }
}

#[test]
fn a_tampered_payload_fails_the_signature_before_its_claims_are_read() {
    let v = verifier();
    let good = hs().sign(&claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged = b64(&json!({ "sub": "admin", "aud": AUD, "exp": NOW + 3600 }));
    parts[1] = &forged;
    assert_eq!(
        v.verify(&parts.join("."), NOW),
        Err(AuthError::BadSignature)
    );
    // An expired payload under a bad signature says "bad signature", not
    // "expired": nothing of an unverified payload is believed.
    let forged = b64(&json!({ "sub": "a", "aud": AUD, "exp": 1 }));
    parts[1] = &forged;
    assert_eq!(
        v.verify(&parts.join("."), NOW),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn one_key_loaded_needs_no_kid_and_rotation_keeps_old_tokens_valid() {
    let only = Verifier::new(vec![Key::hs256("main", SECRET).expect("k")], AUD).expect("v");
    let t = with_header(json!({"alg": "HS256", "typ": "JWT"}), claims());
    assert!(only.verify(&t, NOW).is_ok());
    // Rotation: the old key and the new one side by side.
    let new_secret = b"fedcba9876543210fedcba9876543210";
    let both = Verifier::new(
        vec![
            Key::hs256("main", SECRET).expect("k"),
            Key::hs256("next", new_secret).expect("k"),
        ],
        AUD,
    )
    .expect("v");
    assert!(both.verify(&hs().sign(&claims()), NOW).is_ok());
    let next = Signer::hs256("next", new_secret).expect("k");
    assert!(both.verify(&next.sign(&claims()), NOW).is_ok());
    assert_eq!(
        only.verify(&next.sign(&claims()), NOW),
        Err(AuthError::UnknownKey)
    );
}

#[test]
fn key_specs_parse_and_bad_ones_say_why() {
    let secret = URL_SAFE_NO_PAD.encode(SECRET);
    let k = Key::from_spec(&format!("main:hs256:{secret}")).expect("hs");
    assert_eq!((k.kid.as_str(), k.alg()), ("main", Alg::Hs256));
    let pk = URL_SAFE_NO_PAD.encode(ed().public_key().expect("pk"));
    let k = Key::from_spec(&format!("ed1:EdDSA:{pk}=")).expect("ed, padding forgiven");
    assert_eq!(k.alg(), Alg::EdDsa);
    let bad_kid = format!("bad kid:hs256:{secret}");
    for (spec, says) in [
        ("main", "KID:hs256"),
        ("main:hs256:c2hvcnQ", "at least 32 bytes"),
        ("main:rs256:AAAA", "not supported"),
        ("ed:eddsa:AAAA", "32 bytes"),
        (bad_kid.as_str(), "key id"),
        ("main:hs256:***", "base64url"),
    ] {
        let e = Key::from_spec(spec).expect_err(spec).to_string();
        assert!(e.contains(says), "{spec}: {e}");
    }
    assert!(Verifier::new(vec![], AUD).is_err());
    let k = Key::hs256("a", SECRET).expect("k");
    assert!(
        Verifier::new(vec![k.clone(), k.clone()], AUD).is_err(),
        "duplicate kid"
    );
    assert!(Verifier::new(vec![k], " ").is_err(), "empty audience");
    let shown = format!("{:?}", Key::hs256("a", SECRET).expect("k"));
    assert!(!shown.contains("0123"), "Debug hides the secret: {shown}");
}

#[test]
fn keygen_lines_round_trip_through_the_specs() {
    let lines = keygen("eddsa", "k1", [9u8; 32]).expect("eddsa");
    let signer = Signer::from_spec(&lines[1]).expect("private line signs");
    let key = Key::from_spec(&lines[3]).expect("public line verifies");
    let v = Verifier::new(vec![key], AUD).expect("v");
    assert_eq!(
        v.verify(&signer.sign(&claims()), NOW).expect("ok").sub,
        "alice"
    );
    assert!(
        Signer::from_spec(&lines[3]).is_err(),
        "a public key cannot sign"
    );
    let lines = keygen("hs256", "main", [3u8; 32]).expect("hs256");
    let signer = Signer::from_spec(&lines[1]).expect("signs");
    let v = Verifier::new(vec![Key::from_spec(&lines[1]).expect("k")], AUD).expect("v");
    assert!(v.verify(&signer.sign(&claims()), NOW).is_ok());
    assert!(keygen("rsa", "k", [0u8; 32]).is_err());
}

/// The golden tokens of PROTOCOL.md §13: other languages' signers must
/// produce exactly these (both algorithms are deterministic), and their
/// verifiers accept them.
#[test]
fn golden_tokens_match_the_protocol_document() {
    let claims = json!({ "sub": "alice", "aud": "my-game", "iat": 1_700_000_000u64, "exp": 2_000_000_000u64 });
    let hs_token = hs().sign(&claims);
    let ed_token = ed().sign(&claims);
    println!(
        "HS256 {hs_token}\nEdDSA {ed_token}\nEdDSA public {}",
        URL_SAFE_NO_PAD.encode(ed().public_key().expect("pk"))
    );
    let doc = include_str!("../../../../docs/PROTOCOL.md");
    assert!(
        doc.contains(&hs_token),
        "PROTOCOL.md §13 lacks the HS256 golden token {hs_token}"
    );
    assert!(
        doc.contains(&ed_token),
        "PROTOCOL.md §13 lacks the EdDSA golden token {ed_token}"
    );
    let pk = ed().public_key().expect("pk");
    let v = Verifier::new(
        vec![
            Key::hs256("main", SECRET).expect("k"),
            Key::ed25519("ed1", &pk).expect("k"),
        ],
        "my-game",
    )
    .expect("v");
    for t in [&hs_token, &ed_token] {
        assert_eq!(v.verify(t, 1_800_000_000).expect("valid").sub, "alice");
    }
}

#[test]
fn only_a_token_that_says_admin_true_is_an_admin_token() {
    let v = verifier();
    let g = v.verify(&hs().sign(&claims()), NOW).expect("valid");
    assert!(!g.admin, "admin defaults to no");
    let mut c = claims();
    c["admin"] = json!(false);
    assert!(!v.verify(&hs().sign(&c), NOW).expect("valid").admin);
    c["admin"] = json!(true);
    assert!(v.verify(&ed().sign(&c), NOW).expect("valid").admin);
    // Not a boolean: the payload is not what the server reads.
    c["admin"] = json!("yes");
    assert_eq!(v.verify(&hs().sign(&c), NOW), Err(AuthError::Malformed));
}

#[test]
fn revocations_read_from_json_and_write_back_canonically() {
    let r = Revocation::from_json(br#"{"sub":"alice"}"#, NOW).expect("sub");
    assert_eq!(
        r,
        Revocation::Sub {
            sub: "alice".into(),
            issued_up_to: NOW
        },
        "issued_up_to defaults to now"
    );
    assert_eq!(
        Revocation::from_json(r.to_json().as_bytes(), 0),
        Ok(r.clone())
    );
    let early = Revocation::from_json(br#"{"sub":"alice","issued_up_to":5}"#, NOW).expect("sub");
    assert_ne!(
        early.to_json(),
        r.to_json(),
        "another revocation, another text"
    );
    let j = Revocation::from_json(br#" {"jti":"t-1"} "#, NOW).expect("jti");
    assert_eq!(j, Revocation::Jti("t-1".into()));
    assert_eq!(j.to_json(), r#"{"jti":"t-1"}"#);
    let long = format!(r#"{{"sub":"{}"}}"#, "x".repeat(300));
    for bad in [
        &b""[..],
        b"sub=alice",
        b"{}",
        b"[]",
        br#"{"sub":""}"#,
        br#"{"sub":"a","jti":"b"}"#,
        br#"{"jti":"b","issued_up_to":3}"#,
        br#"{"sub":"a","admin":true}"#,
        br#"{"sub":7}"#,
        long.as_bytes(),
    ] {
        let e = Revocation::from_json(bad, NOW).expect_err(&String::from_utf8_lossy(bad));
        assert!(!e.is_empty());
    }
}

#[test]
fn a_revocation_refuses_the_tokens_it_names_and_no_others() {
    let v = verifier();
    let mut c = claims();
    c["iat"] = json!(NOW - 10);
    c["jti"] = json!("t-9");
    let g = v.verify(&hs().sign(&c), NOW).expect("valid");
    let sub = |issued_up_to| Revocation::Sub {
        sub: "alice".into(),
        issued_up_to,
    };
    assert!(sub(NOW).refuses(&g));
    assert!(sub(NOW - 10).refuses(&g), "issued at the revocation's time");
    assert!(
        !sub(NOW - 11).refuses(&g),
        "issued after it: a fresh token passes"
    );
    assert!(Revocation::Jti("t-9".into()).refuses(&g));
    assert!(!Revocation::Jti("t-8".into()).refuses(&g));
    c["sub"] = json!("bob");
    let bob = v.verify(&hs().sign(&c), NOW).expect("valid");
    assert!(!sub(NOW).refuses(&bob));
}
