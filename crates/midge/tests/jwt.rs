//! JSON Web Tokens in the password field over real sockets: tokens minted by PyJWT
//! (`tests/jwt/mint.py`) with keys openssl makes at test time, presented by Debian's
//! `mosquitto_pub` and `mosquitto_sub` as their password. HS256 with a secret, RS256 and ES256
//! with keys from a JWKS file; expired and tampered tokens refused; a token's publish and
//! subscribe claims limit what the client may do.

mod interop_common;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use interop_common::mosquitto::{publish_output, Sub};
use interop_common::run_bounded;
use support::TestBroker;

/// At least 32 bytes, as RFC 7518 section 3.2 asks of HS256 keys.
const SECRET: &str = "test-secret-made-for-this-run-of-the-jwt-tests";
const V5: &str = "mqttv5";

/// A temporary directory with an RSA and an EC key pair (openssl) and their JWKS (PyJWT).
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = Self { dir };
        keys.openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.key"]);
        keys.openssl(&["pkey", "-in", "rsa.key", "-pubout", "-out", "rsa.pub"]);
        keys.openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ec.key"]);
        keys.openssl(&["pkey", "-in", "ec.key", "-pubout", "-out", "ec.pub"]);
        let jwks = keys.mint(&["jwks", &keys.arg("rsa.pub"), &keys.arg("ec.pub")]);
        std::fs::write(keys.path("jwks.json"), jwks).expect("write jwks");
        keys
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn openssl(&self, args: &[&str]) {
        let mut command = Command::new("openssl");
        command.args(args).current_dir(self.dir.path());
        let (status, output) = run_bounded(command, Duration::from_secs(30));
        assert!(status.success(), "openssl {args:?}: {output}");
    }

    /// Runs mint.py; returns what it printed.
    fn mint(&self, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jwt/mint.py");
        let mut command = Command::new("python3");
        // Only the token on the output: warnings would be read as part of it.
        command.args(["-W", "ignore"]).arg(script).args(args);
        let (status, output) = run_bounded(command, Duration::from_secs(30));
        assert!(status.success(), "mint.py {args:?} (pip install 'pyjwt[crypto]'): {output}");
        output.trim().to_owned()
    }

    /// A token signed with `alg` carrying `claims` (JSON; "exp": "+60" is now + 60 s).
    fn token(&self, alg: &str, claims: &str) -> String {
        let key = match alg {
            "HS256" => SECRET.to_owned(),
            "RS256" => self.arg("rsa.key"),
            _ => self.arg("ec.key"),
        };
        self.mint(&["token", alg, &key, claims])
    }

    /// A midge whose listener takes tokens (no anonymous clients).
    fn broker(&self) -> TestBroker {
        let listener = format!(
            "allow_anonymous = false\n[listener.jwt]\nsecret = {SECRET:?}\njwks_file = {:?}\n",
            self.arg("jwks.json")
        );
        // allow_anonymous appears twice otherwise: the harness writes `true` first.
        TestBroker::start_midge_listener_with(&listener.replacen("allow_anonymous = false\n", "", 1), "")
    }
}

/// mosquitto_pub with `-u user -P token`; returns whether it succeeded and its output.
fn publish_with(broker: &TestBroker, user: &str, token: &str, topic: &str) -> (bool, String) {
    let (status, output) =
        publish_output(broker, V5, "jwt-pub", &["-u", user, "-P", token, "-t", topic, "-m", "x", "-q", "1", "-d"]);
    (status.success() && !output.contains("failed"), output)
}

#[test]
fn tokens_of_each_algorithm_are_accepted_and_bad_ones_refused() {
    let keys = Keys::new();
    let broker = keys.broker();
    for alg in ["HS256", "RS256", "ES256"] {
        let good = keys.token(alg, r#"{"sub": "device-1", "exp": "+60"}"#);
        let (ok, output) = publish_with(&broker, "device-1", &good, "any/topic");
        assert!(ok, "{alg}: {output}");
        let expired = keys.token(alg, r#"{"sub": "device-1", "exp": "-120"}"#);
        let (ok, output) = publish_with(&broker, "device-1", &expired, "any/topic");
        assert!(!ok && output.contains("CONNACK (134)"), "{alg} expired: {output}");
        let mut tampered = good.clone();
        let payload_at = tampered.find('.').expect("a JWT") + 3;
        let flipped = if &tampered[payload_at..=payload_at] == "A" { "B" } else { "A" };
        tampered.replace_range(payload_at..=payload_at, flipped);
        let (ok, output) = publish_with(&broker, "device-1", &tampered, "any/topic");
        assert!(!ok, "{alg} tampered: {output}");
        let (ok, output) = publish_with(&broker, "device-2", &good, "any/topic");
        assert!(!ok, "{alg} someone else's token: {output}");
    }
}

/// A token's `publish` and `subscribe` claims limit the client: a publish outside them is
/// refused with 0x87, a subscription outside them too.
#[test]
fn a_tokens_claims_limit_publish_and_subscribe() {
    let keys = Keys::new();
    let broker = keys.broker();
    let token = keys.token("ES256", r#"{"sub": "d", "exp": "+60", "publish": ["d/out/#"], "subscribe": ["d/in/#"]}"#);
    let mut sub = Sub::start_with(&broker, V5, "d-sub", &["-u", "d", "-P", &token, "-t", "d/in/#", "-C", "1"], "%t|%p");
    assert_eq!(sub.wait_subscribed(), 0);
    let (ok, output) = publish_with(&broker, "d", &token, "d/in/forged");
    assert!(!ok && output.contains("RC:135"), "outside the publish claim: {output}");
    let mut spy = Command::new("mosquitto_sub");
    interop_common::mosquitto::connection_args(&mut spy, &broker, V5, "d-spy");
    spy.args(["-u", "d", "-P", &token, "-t", "other/#", "-d", "-C", "1", "-W", "5"]);
    let (_, output) = run_bounded(spy, Duration::from_secs(15));
    assert!(output.contains("Subscribed (mid: 1): 135"), "outside the subscribe claim: {output}");
    let other = keys.token("HS256", r#"{"sub": "e", "exp": "+60"}"#);
    let (ok, output) = publish_with(&broker, "e", &other, "d/in/cmd");
    assert!(ok, "a token without claims is not limited: {output}");
    assert_eq!(sub.messages(), ["d/in/cmd|x"]);
}
