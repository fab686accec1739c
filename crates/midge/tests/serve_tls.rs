//! TLS listeners against clients nobody on the team wrote (Debian's `mosquitto_pub` and
//! `mosquitto_sub`): server certificates the client trusts or not, client certificates,
//! revocation, the connect timeout over a handshake that never comes, and bad files at start.
//! Every certificate is made here with rcgen, in a temporary directory.

mod interop_common;
mod support;

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use interop_common::run_bounded;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use support::{midge_bin, TestBroker};

/// How long one mosquitto client run may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A CA, and the files made from it in one temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, ca_key) = new_ca("Midge test CA");
        let pki = Self { dir, ca, ca_key };
        pki.write("ca.pem", &pki.ca.pem());
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// `NAME.pem` and `NAME.key`: a certificate for `cn` (with 127.0.0.1 as its address), signed
    /// by this CA, valid between the two dates (a default range when `None`).
    fn issue(&self, name: &str, cn: &str, serial: u64, valid: Option<(i32, i32)>) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        if let Some((from, to)) = valid {
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 1, 1);
        }
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).expect("certificate");
        (self.write(&format!("{name}.pem"), &cert.pem()), self.write(&format!("{name}.key"), &key.serialize_pem()))
    }

    /// `crl.pem`: this CA's revocation list naming `serials`.
    fn crl(&self, serials: &[u64]) -> PathBuf {
        let crl = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|serial| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*serial),
                    revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&self.ca, &self.ca_key)
        .expect("CRL");
        self.write("crl.pem", &crl.pem().expect("pem"))
    }

    /// `midge serve` with one TLS listener on 127.0.0.1:0 using `server.pem`/`server.key`, with
    /// `listener_extra` added to the listener (anonymous clients allowed unless it says
    /// otherwise) and `extra` after it.
    fn serve(&self, listener_extra: &str, extra: &str) -> TestBroker {
        let anonymous = if listener_extra.contains("allow_anonymous") { "" } else { "allow_anonymous = true" };
        let config = format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\n{anonymous}\ncertfile = {:?}\nkeyfile = {:?}\n\
             {listener_extra}\n\n[log]\nlevel = \"debug\"\n\n[store]\npersistence = false\n\n{extra}\n",
            self.path("server.pem"),
            self.path("server.key"),
        );
        let path = self.write("midge.toml", &config);
        let broker = TestBroker::start_midge_args(&["-c", path.to_str().expect("utf-8 path")]);
        broker.wait_for_log("listening (mqtt over tls)", Duration::from_secs(5));
        broker
    }
}

fn new_ca(cn: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::new()).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params.self_signed(&key).expect("CA"), key)
}

/// A mosquitto client over TLS to `broker`, trusting `cafile`.
fn client(program: &str, broker: &TestBroker, cafile: &Path, args: &[&str]) -> (bool, String) {
    let mut command = Command::new(program);
    command.args(["-h", "127.0.0.1", "-p", &broker.port().to_string(), "--cafile"]).arg(cafile).args(args);
    let (status, output) = run_bounded(command, CLIENT_TIMEOUT);
    (status.success(), output)
}

/// A QoS 1 retained publish (acknowledged, or mosquitto_pub exits non-zero).
fn publish(broker: &TestBroker, cafile: &Path, topic: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["-t", topic, "-m", "hello over tls", "-q", "1", "-r"];
    args.extend_from_slice(extra);
    client("mosquitto_pub", broker, cafile, &args)
}

#[test]
fn mosquitto_clients_round_trip_at_qos_1_over_tls_with_mqtt_3_1_1_and_5() {
    let pki = Pki::new();
    pki.issue("server", "localhost", 2, None);
    let broker = pki.serve("", "");
    let ca = pki.path("ca.pem");
    for version in ["mqttv311", "mqttv5"] {
        let topic = format!("tls/{version}");
        let (ok, output) = publish(&broker, &ca, &topic, &["-V", version]);
        assert!(ok, "{version}: mosquitto_pub failed: {output}");
        let (ok, output) =
            client("mosquitto_sub", &broker, &ca, &["-t", &topic, "-q", "1", "-C", "1", "-W", "10", "-V", version]);
        assert!(ok, "{version}: mosquitto_sub failed: {output}");
        assert_eq!(output.trim(), "hello over tls", "{version}");
    }
}

#[test]
fn a_client_that_does_not_trust_the_servers_ca_fails_and_the_broker_keeps_serving() {
    let pki = Pki::new();
    pki.issue("server", "localhost", 2, None);
    let broker = pki.serve("", "");
    let (other_ca, _) = new_ca("Someone else's CA");
    let other = pki.write("other-ca.pem", &other_ca.pem());
    let (ok, output) = publish(&broker, &other, "tls/wrong-ca", &[]);
    assert!(!ok, "a client that does not trust the CA connected: {output}");
    broker.wait_for_log("TLS handshake failed", Duration::from_secs(10));
    let (ok, output) = publish(&broker, &pki.path("ca.pem"), "tls/after", &[]);
    assert!(ok, "the broker stopped serving: {output}");
}

#[test]
fn clients_refuse_an_expired_or_not_yet_valid_server_certificate() {
    for (case, valid) in [("expired", (2000, 2001)), ("not yet valid", (2090, 2099))] {
        let pki = Pki::new();
        pki.issue("server", "localhost", 2, Some(valid));
        let broker = pki.serve("", "");
        let (ok, output) = publish(&broker, &pki.path("ca.pem"), "tls/dates", &[]);
        assert!(!ok, "{case}: the client accepted the certificate: {output}");
    }
}

#[test]
fn require_certificate_admits_only_clients_with_a_certificate_of_the_ca_and_names_them_by_cn() {
    let pki = Pki::new();
    pki.issue("server", "localhost", 2, None);
    let (cert, key) = pki.issue("device", "device-7", 3, None);
    // Anonymous clients are refused: a client gets in by its certificate alone.
    let listener = format!(
        "allow_anonymous = false\ncafile = {:?}\nrequire_certificate = true\nuse_identity_as_username = true",
        pki.path("ca.pem")
    );
    let broker = pki.serve(&listener, "");
    let ca = pki.path("ca.pem");
    let (cert, key) = (cert.to_str().expect("path"), key.to_str().expect("path"));

    let (ok, output) = publish(&broker, &ca, "tls/cert", &["--cert", cert, "--key", key, "-i", "with-cert"]);
    assert!(ok, "a client with a certificate of the CA was refused: {output}");
    let line = broker.wait_for_log("client_id=with-cert", Duration::from_secs(10));
    assert!(line.contains("client connected") && line.contains("device-7"), "the CN is the user name: {line}");

    let (ok, output) = publish(&broker, &ca, "tls/cert", &["-i", "without-cert"]);
    assert!(!ok, "a client without a certificate connected: {output}");

    let stranger = Pki::new();
    let (cert, key) = stranger.issue("stranger", "stranger", 4, None);
    let args = ["--cert", cert.to_str().expect("path"), "--key", key.to_str().expect("path")];
    let (ok, output) = publish(&broker, &ca, "tls/cert", &args);
    assert!(!ok, "a client with another CA's certificate connected: {output}");
    assert!(!broker.log().iter().any(|line| line.contains("stranger") && line.contains("client connected")));
}

#[test]
fn a_revoked_client_certificate_is_refused() {
    let pki = Pki::new();
    pki.issue("server", "localhost", 2, None);
    let (good_cert, good_key) = pki.issue("good", "good", 10, None);
    let (revoked_cert, revoked_key) = pki.issue("revoked", "revoked", 11, None);
    let crl = pki.crl(&[11]);
    let listener = format!("cafile = {:?}\ncrlfile = {:?}\nrequire_certificate = true", pki.path("ca.pem"), crl);
    let broker = pki.serve(&listener, "");
    let ca = pki.path("ca.pem");
    let args = |cert: &Path, key: &Path| {
        vec!["--cert".to_owned(), cert.display().to_string(), "--key".to_owned(), key.display().to_string()]
    };
    let good = args(&good_cert, &good_key);
    let (ok, output) = publish(&broker, &ca, "tls/crl", &good.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "a certificate the CRL does not name was refused: {output}");
    let revoked = args(&revoked_cert, &revoked_key);
    let (ok, output) = publish(&broker, &ca, "tls/crl", &revoked.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok, "a revoked certificate was accepted: {output}");
}

#[test]
fn a_tcp_client_that_never_starts_the_handshake_is_closed_at_the_connect_timeout() {
    let pki = Pki::new();
    pki.issue("server", "localhost", 2, None);
    let broker = pki.serve("", "[mqtt]\nconnect_timeout_ms = 300\n");
    let started = Instant::now();
    let mut silent = TcpStream::connect(broker.addr).expect("connect");
    silent.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut byte = [0u8; 1];
    let read = silent.read(&mut byte);
    assert!(matches!(read, Ok(0)) || read.is_err(), "expected the connection closed, got {read:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
    let line = broker.wait_for_log("not finished within the connect timeout", Duration::from_secs(5));
    assert!(line.contains("TLS handshake") && line.contains("connect_timeout_ms"), "{line}");
    // The accept loop was never held up: another client gets in meanwhile and after.
    let (ok, output) = publish(&broker, &pki.path("ca.pem"), "tls/after-timeout", &[]);
    assert!(ok, "{output}");
}

#[test]
fn a_bad_tls_file_stops_the_start_with_a_message_naming_it() {
    let pki = Pki::new();
    pki.issue("server", "localhost", 2, None);
    let (_, other_key) = pki.issue("other", "other", 3, None);
    let cases = [
        (pki.path("missing.pem"), pki.path("server.key"), "cannot read certfile"),
        (pki.path("server.key"), pki.path("server.key"), "holds no certificate"),
        (pki.path("server.pem"), other_key, "does not match the certificate in certfile"),
    ];
    for (certfile, keyfile, expected) in cases {
        let config = format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\ncertfile = {certfile:?}\nkeyfile = {keyfile:?}\n\n\
             [store]\npersistence = false\n"
        );
        let path = pki.write("bad.toml", &config);
        let mut command = Command::new(midge_bin());
        command.arg("serve").arg("-c").arg(&path).env_remove("RUST_LOG");
        let (status, output) = run_bounded(command, CLIENT_TIMEOUT);
        assert!(!status.success(), "started with a bad file: {output}");
        assert!(output.contains(expected), "expected {expected:?} in: {output}");
        assert!(output.contains("listener 1: TLS"), "the listener is named: {output}");
    }
}

/// SIGHUP reads the certificate and key again: a listener started with an expired certificate
/// serves the renewed one from then on, without a restart. A broken key file on a later reload
/// changes nothing: the renewed certificate stays in use.
#[test]
fn sighup_reloads_the_certificate_and_keeps_the_last_good_one() {
    let pki = Pki::new();
    pki.issue("server", "localhost", 2, Some((2000, 2001)));
    let broker = pki.serve("", "");
    let (ok, output) = publish(&broker, &pki.path("ca.pem"), "tls/renewed", &[]);
    assert!(!ok, "the expired certificate was accepted: {output}");
    pki.issue("server", "localhost", 3, None);
    let hangup = || {
        let status = Command::new("kill").args(["-HUP", &broker.pid().to_string()]).status().expect("kill");
        assert!(status.success());
    };
    hangup();
    broker.wait_for_log("listener reloaded", Duration::from_secs(10));
    let (ok, output) = publish(&broker, &pki.path("ca.pem"), "tls/renewed", &[]);
    assert!(ok, "the renewed certificate: {output}");
    pki.write("server.key", "not a key\n");
    hangup();
    let failure = broker.wait_for_log("reload failed", Duration::from_secs(10));
    assert!(failure.contains("server.key"), "{failure}");
    let (ok, output) = publish(&broker, &pki.path("ca.pem"), "tls/renewed", &[]);
    assert!(ok, "the last good certificate stays: {output}");
}
