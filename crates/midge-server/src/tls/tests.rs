//! The loader: every key format it takes, and the message of every bad file it refuses.
//! Certificates and keys are made here with rcgen (RSA keys with the `openssl` CLI: ring cannot
//! generate them); none is committed.

use std::path::Path;
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

use super::*;
use crate::config::default_listener;

/// A CA and a server certificate it signed, written to a temporary directory.
struct Files {
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, "Midge test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = params.self_signed(&ca_key).expect("CA");
        let files = Self { dir, ca, ca_key };
        files.write("ca.pem", &files.ca.pem());
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// A certificate for `cn` signed by the CA with `key`.
    fn leaf(&self, cn: &str, key: &KeyPair) -> rcgen::Certificate {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.signed_by(key, &self.ca, &self.ca_key).expect("leaf")
    }

    /// Writes `server.pem` and `server.key` (PKCS#8) for a key of `alg`.
    fn server(&self, alg: &'static rcgen::SignatureAlgorithm) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate_for(alg).expect("key");
        let cert = self.leaf("localhost", &key);
        (self.write("server.pem", &cert.pem()), self.write("server.key", &key.serialize_pem()))
    }
}

fn listener(certfile: &Path, keyfile: &Path) -> ListenerConfig {
    ListenerConfig { certfile: Some(certfile.to_owned()), keyfile: Some(keyfile.to_owned()), ..default_listener(0) }
}

fn load_error(config: &ListenerConfig) -> String {
    crate::error_chain(&TlsListener::load(config).expect_err("the settings are refused"))
}

/// The private key inside a PKCS#8 PEM key: PKCS#1 for RSA, SEC1 for EC (PrivateKeyInfo's
/// privateKey OCTET STRING holds it as is).
fn inner_key(pkcs8_der: &[u8]) -> Vec<u8> {
    use x509_parser::der_parser::asn1_rs::{Any, FromDer};
    let (_, info) = Any::from_der(pkcs8_der).expect("PrivateKeyInfo");
    let (rest, _version) = Any::from_der(info.data).expect("version");
    let (rest, _algorithm) = Any::from_der(rest).expect("algorithm");
    let (_, key) = Any::from_der(rest).expect("privateKey");
    key.data.to_vec()
}

fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut base64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                base64.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                base64.push('=');
            }
        }
    }
    let lines: Vec<&str> = base64.as_bytes().chunks(64).map(|line| std::str::from_utf8(line).expect("ascii")).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

#[test]
fn a_listener_without_certfile_and_keyfile_is_plain_tcp() {
    assert!(TlsListener::load(&default_listener(0)).expect("loads").is_none());
}

/// MQTT over TLS offers `mqtt`; wss offers `http/1.1`, all a browser offers for a WebSocket.
#[test]
fn the_alpn_offered_is_the_listeners_protocol() {
    let files = Files::new();
    let (cert, key) = files.server(&rcgen::PKCS_ECDSA_P256_SHA256);
    let mqtt = TlsListener::load(&listener(&cert, &key)).expect("loads").expect("TLS");
    assert_eq!(mqtt.server.alpn_protocols, [b"mqtt".to_vec()]);
    let websockets = ListenerConfig { protocol: ListenerProtocol::Websockets, ..listener(&cert, &key) };
    let wss = TlsListener::load(&websockets).expect("loads").expect("TLS");
    assert_eq!(wss.server.alpn_protocols, [b"http/1.1".to_vec()]);
}

#[test]
fn pkcs8_keys_of_each_kind_load() {
    for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ECDSA_P384_SHA384, &rcgen::PKCS_ED25519] {
        let files = Files::new();
        let (cert, key) = files.server(alg);
        let tls = TlsListener::load(&listener(&cert, &key)).expect("loads").expect("TLS");
        assert_eq!(tls.username(), None);
    }
}

#[test]
fn a_sec1_ec_key_loads() {
    let files = Files::new();
    let (cert, key) = files.server(&rcgen::PKCS_ECDSA_P256_SHA256);
    let pkcs8 = KeyPair::from_pem(&std::fs::read_to_string(&key).expect("read")).expect("key").serialize_der();
    let sec1 = files.write("sec1.key", &pem("EC PRIVATE KEY", &inner_key(&pkcs8)));
    assert!(TlsListener::load(&listener(&cert, &sec1)).expect("loads").is_some());
}

#[test]
fn rsa_keys_load_as_pkcs8_and_pkcs1() {
    let files = Files::new();
    let pkcs8 = files.path("rsa.key");
    let status = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&pkcs8)
        .status()
        .expect("run openssl");
    assert!(status.success());
    let text = std::fs::read_to_string(&pkcs8).expect("read");
    let key = KeyPair::from_pem_and_sign_algo(&text, &rcgen::PKCS_RSA_SHA256).expect("RSA key");
    let cert = files.write("rsa.pem", &files.leaf("localhost", &key).pem());
    assert!(TlsListener::load(&listener(&cert, &pkcs8)).expect("PKCS#8 loads").is_some());
    let pkcs1 = files.write("rsa1.key", &pem("RSA PRIVATE KEY", &inner_key(&key.serialize_der())));
    assert!(TlsListener::load(&listener(&cert, &pkcs1)).expect("PKCS#1 loads").is_some());
}

#[test]
fn client_certificate_settings_load() {
    let files = Files::new();
    let (cert, key) = files.server(&rcgen::PKCS_ECDSA_P256_SHA256);
    let capath = files.path("cas");
    std::fs::create_dir(&capath).expect("dir");
    std::fs::write(capath.join("ca.crt"), files.ca.pem()).expect("write");
    std::fs::write(capath.join("README"), "not a certificate").expect("write");
    let crl = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2020, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&files.ca, &files.ca_key)
    .expect("CRL");
    let crlfile = files.write("crl.pem", &crl.pem().expect("pem"));
    let config = ListenerConfig {
        cafile: Some(files.path("ca.pem")),
        crlfile: Some(crlfile),
        require_certificate: true,
        use_identity_as_username: true,
        tls_version: Some(TlsVersion::Tls13),
        ..listener(&cert, &key)
    };
    let tls = TlsListener::load(&config).expect("loads").expect("TLS");
    assert_eq!(tls.username(), Some(CertificateUsername::CommonName));
    let config = ListenerConfig { capath: Some(capath), use_subject_as_username: true, ..listener(&cert, &key) };
    let tls = TlsListener::load(&config).expect("loads").expect("TLS");
    assert_eq!(tls.username(), Some(CertificateUsername::Subject));
}

#[test]
fn settings_that_do_not_go_together_are_refused() {
    let files = Files::new();
    let (cert, key) = files.server(&rcgen::PKCS_ECDSA_P256_SHA256);
    let only_cert = ListenerConfig { certfile: Some(cert.clone()), ..default_listener(0) };
    assert_eq!(load_error(&only_cert), "certfile is set without keyfile: a TLS listener needs both");
    let only_key = ListenerConfig { keyfile: Some(key.clone()), ..default_listener(0) };
    assert_eq!(load_error(&only_key), "keyfile is set without certfile: a TLS listener needs both");
    let not_tls = ListenerConfig { cafile: Some(cert.clone()), ..default_listener(0) };
    assert_eq!(load_error(&not_tls), "cafile is set but the listener is not TLS: set certfile and keyfile too");
    let no_ca = ListenerConfig { require_certificate: true, ..listener(&cert, &key) };
    assert_eq!(load_error(&no_ca), "require_certificate needs cafile or capath: the CAs that sign client certificates");
    let both = ListenerConfig {
        use_identity_as_username: true,
        use_subject_as_username: true,
        cafile: Some(cert.clone()),
        ..listener(&cert, &key)
    };
    assert_eq!(load_error(&both), "use_identity_as_username and use_subject_as_username are both set: choose one");
}

#[test]
fn each_bad_file_is_named_with_what_is_wrong() {
    let files = Files::new();
    let (cert, key) = files.server(&rcgen::PKCS_ECDSA_P256_SHA256);
    let missing = files.path("missing.pem");
    let der = files.path("server.der");
    std::fs::write(&der, files.ca.der()).expect("write");
    let truncated = files.write("truncated.pem", &files.ca.pem().replace("-----END CERTIFICATE-----", ""));
    let other_key = files.write("other.key", &KeyPair::generate().expect("key").serialize_pem());
    let encrypted = files.write(
        "encrypted.key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let ca = files.path("ca.pem");
    let at = |path: &Path| path.display().to_string();

    let cases: Vec<(ListenerConfig, String)> = vec![
        (listener(&missing, &key), format!("cannot read certfile {}: No such file or directory", at(&missing))),
        (listener(&cert, &missing), format!("cannot read keyfile {}: No such file or directory", at(&missing))),
        (listener(&der, &key), format!("certfile {} is not a PEM file: no -----BEGIN", at(&der))),
        (
            listener(&truncated, &key),
            format!("certfile {} is not a PEM file: missing -----END CERTIFICATE-----", at(&truncated)),
        ),
        (listener(&key, &key), format!("certfile {} holds no certificate", at(&key))),
        (listener(&cert, &cert), format!("keyfile {} holds no private key", at(&cert))),
        (
            listener(&cert, &encrypted),
            format!("keyfile {} holds no unencrypted private key (it is encrypted", at(&encrypted)),
        ),
        (
            listener(&cert, &other_key),
            format!("keyfile {} does not match the certificate in certfile {}", at(&other_key), at(&cert)),
        ),
        (
            ListenerConfig { cafile: Some(missing.clone()), ..listener(&cert, &key) },
            format!("cannot read cafile {}", at(&missing)),
        ),
        (
            ListenerConfig { cafile: Some(key.clone()), ..listener(&cert, &key) },
            format!("cafile {} holds no certificate", at(&key)),
        ),
        (
            ListenerConfig { capath: Some(files.dir.path().join("nowhere")), ..listener(&cert, &key) },
            format!("cannot read capath {}", files.dir.path().join("nowhere").display()),
        ),
        (
            ListenerConfig { cafile: Some(ca.clone()), crlfile: Some(cert.clone()), ..listener(&cert, &key) },
            format!("crlfile {} holds no certificate revocation list", at(&cert)),
        ),
        (
            ListenerConfig { cafile: Some(ca.clone()), crlfile: Some(missing.clone()), ..listener(&cert, &key) },
            format!("cannot read crlfile {}", at(&missing)),
        ),
    ];
    for (config, expected) in cases {
        let message = load_error(&config);
        assert!(message.starts_with(&expected), "expected {expected:?}, got {message:?}");
    }
    let empty = files.path("empty");
    std::fs::create_dir(&empty).expect("dir");
    let config = ListenerConfig { capath: Some(empty.clone()), ..listener(&cert, &key) };
    assert!(load_error(&config).starts_with(&format!("capath {} holds no file with a PEM certificate", at(&empty))));
}

#[test]
fn a_certificate_gives_its_cn_or_its_whole_subject_as_openssl_prints_it() {
    let files = Files::new();
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::new()).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CountryName, "GB");
    params.distinguished_name.push(DnType::OrganizationName, "Example, Ltd");
    params.distinguished_name.push(DnType::OrganizationalUnitName, "Plant 1");
    params.distinguished_name.push(DnType::CommonName, "sensor-1");
    let cert = params.signed_by(&key, &files.ca, &files.ca_key).expect("cert");
    assert_eq!(certificate_username(cert.der(), CertificateUsername::CommonName), Ok("sensor-1".to_owned()));
    // What mosquitto takes is what OpenSSL prints.
    let path = files.write("subject.pem", &cert.pem());
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
        .arg(&path)
        .output()
        .expect("run openssl");
    let printed = String::from_utf8(output.stdout).expect("text");
    let openssl = printed.trim().strip_prefix("subject=").expect("subject=").to_owned();
    assert!(openssl.contains("CN=sensor-1") && openssl.contains("O=Example\\, Ltd"), "{openssl}");
    assert_eq!(certificate_username(cert.der(), CertificateUsername::Subject), Ok(openssl));
    let mut params = CertificateParams::new(Vec::new()).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, "No CN");
    let cert = params.signed_by(&key, &files.ca, &files.ca_key).expect("cert");
    assert_eq!(
        certificate_username(cert.der(), CertificateUsername::CommonName),
        Err("the client certificate's subject has no CN")
    );
}

#[test]
fn rfc2253_escapes_as_openssl_does() {
    let mut out = String::new();
    escape_rfc2253("#a+b;c<d>\"e\\ é ", &mut out);
    assert_eq!(out, "\\#a\\+b\\;c\\<d\\>\\\"e\\\\ \\C3\\A9\\ ");
}
