//! A listener's TLS settings, loaded into a rustls `ServerConfig`: the server's certificate chain
//! and key (`certfile`, `keyfile`), the lowest TLS version (`tls_version`), and for client
//! certificates the trusted CAs (`cafile`, `capath`), revocation lists (`crlfile`),
//! `require_certificate`, and the user name a certificate gives (`use_identity_as_username`,
//! `use_subject_as_username`). The keys are mosquitto's; docs/configuration.md and
//! docs/security.md describe them.
//!
//! Everything is read and checked when the listener is bound ([`TlsListener::load`]), so a bad
//! file stops `midge serve` with an error naming the file and what is wrong with it, before any
//! client is accepted.
//!
//! Crypto is rustls with the `ring` provider; PEM is parsed by `rustls-pki-types`; a client
//! certificate's subject is read with `x509-parser`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{ListenerConfig, ListenerProtocol, TlsVersion};

/// The ALPN protocol a TLS listener of MQTT over TCP offers (the name AWS IoT and others use for
/// MQTT); a client that offers no ALPN at all is accepted too.
pub const ALPN_MQTT: &[u8] = b"mqtt";

/// The ALPN protocol a websockets listener over TLS (wss) offers: the upgrade is an HTTP/1.1
/// request (RFC 6455 section 4.1), and browsers offer `http/1.1` alone for a WebSocket. rustls
/// refuses a client whose offer shares no protocol with the listener's, so `mqtt` there would
/// refuse every browser. A client that offers no ALPN is accepted too.
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// A TLS listener's acceptor and what its connections need to know of its settings.
#[derive(Debug)]
pub struct TlsListener {
    /// What each connection's handshake runs with (in the connection's own task).
    server: Arc<ServerConfig>,
    /// Whether a client's certificate is its user name, and which part of it.
    username: Option<CertificateUsername>,
    /// Handshakes that failed (bad certificate, wrong version, not TLS at all, too slow); shared
    /// with the listener's next files after a reload, so the count runs on.
    handshake_failures: Arc<AtomicU64>,
}

/// Which part of a client's certificate becomes its user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateUsername {
    /// The subject's Common Name (mosquitto's `use_identity_as_username`).
    CommonName,
    /// The whole subject, as OpenSSL prints it with `XN_FLAG_RFC2253` (mosquitto's
    /// `use_subject_as_username`): last RDN first, `,` between them, short attribute names,
    /// e.g. `CN=sensor-1,OU=Plant,O=Example,C=GB`.
    Subject,
}

/// Why a listener's TLS settings cannot be used. Each names the key and the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Settings that do not go together (one of `certfile`/`keyfile` alone, client certificate
    /// settings without a CA, ...).
    #[error("{0}")]
    Settings(String),
    /// A file or directory cannot be read.
    #[error("cannot read {key} {path}")]
    Read {
        /// The setting that names it.
        key: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not PEM, or its PEM is damaged.
    #[error("{key} {path} is not a PEM file: {problem}")]
    NotPem {
        /// The setting that names it.
        key: &'static str,
        /// The path.
        path: PathBuf,
        /// What the PEM parser found.
        problem: String,
    },
    /// A PEM file without what it should hold.
    #[error("{key} {path} holds no {what}")]
    Missing {
        /// The setting that names it.
        key: &'static str,
        /// The path.
        path: PathBuf,
        /// What was looked for, with a hint of what to do.
        what: &'static str,
    },
    /// The private key cannot be used.
    #[error("keyfile {path} cannot be used: {problem}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What rustls says.
        problem: String,
    },
    /// The private key is not the key of the certificate.
    #[error("keyfile {keyfile} does not match the certificate in certfile {certfile}")]
    KeyMismatch {
        /// The certificate file.
        certfile: PathBuf,
        /// The key file.
        keyfile: PathBuf,
    },
    /// A certificate or revocation list is PEM but not valid inside.
    #[error("{key} {path}: {problem}")]
    Invalid {
        /// The setting that names it.
        key: &'static str,
        /// The path.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

impl TlsListener {
    /// The listener's TLS acceptor, or `None` for a plain TCP listener (no `certfile` and no
    /// `keyfile`). Reads every file the settings name.
    ///
    /// A reload (SIGHUP, [`crate::ListenerHandle::reload`]) calls this again and swaps the
    /// `Arc<TlsListener>` the accept loop hands new connections; connections already open keep
    /// theirs.
    pub fn load(config: &ListenerConfig) -> Result<Option<Self>, TlsError> {
        let username = match (config.use_identity_as_username, config.use_subject_as_username) {
            (true, true) => {
                return Err(TlsError::Settings(
                    "use_identity_as_username and use_subject_as_username are both set: choose one".into(),
                ))
            }
            (true, false) => Some(CertificateUsername::CommonName),
            (false, true) => Some(CertificateUsername::Subject),
            (false, false) => None,
        };
        let (certfile, keyfile) = match (&config.certfile, &config.keyfile) {
            (Some(certfile), Some(keyfile)) => (certfile, keyfile),
            (None, None) => {
                let client_settings = [
                    ("cafile", config.cafile.is_some()),
                    ("capath", config.capath.is_some()),
                    ("crlfile", config.crlfile.is_some()),
                    ("tls_version", config.tls_version.is_some()),
                    ("require_certificate", config.require_certificate),
                    ("use_identity_as_username", config.use_identity_as_username),
                    ("use_subject_as_username", config.use_subject_as_username),
                ];
                if let Some((key, _)) = client_settings.iter().find(|(_, set)| *set) {
                    return Err(TlsError::Settings(format!(
                        "{key} is set but the listener is not TLS: set certfile and keyfile too"
                    )));
                }
                return Ok(None);
            }
            (Some(_), None) => {
                return Err(TlsError::Settings("certfile is set without keyfile: a TLS listener needs both".into()))
            }
            (None, Some(_)) => {
                return Err(TlsError::Settings("keyfile is set without certfile: a TLS listener needs both".into()))
            }
        };
        let has_ca = config.cafile.is_some() || config.capath.is_some();
        if !has_ca {
            for (key, set) in [
                ("require_certificate", config.require_certificate),
                ("use_identity_as_username", config.use_identity_as_username),
                ("use_subject_as_username", config.use_subject_as_username),
                ("crlfile", config.crlfile.is_some()),
            ] {
                if set {
                    return Err(TlsError::Settings(format!(
                        "{key} needs cafile or capath: the CAs that sign client certificates"
                    )));
                }
            }
        }

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = load_certificates("certfile", certfile)?;
        let key = load_private_key(keyfile)?;
        let versions: &[&'static rustls::SupportedProtocolVersion] = match config.tls_version {
            None | Some(TlsVersion::Tls12) => &[&rustls::version::TLS13, &rustls::version::TLS12],
            Some(TlsVersion::Tls13) => &[&rustls::version::TLS13],
        };
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .map_err(|error| TlsError::Settings(format!("tls_version: {error}")))?;
        let builder = if has_ca {
            builder.with_client_cert_verifier(client_verifier(config, &provider)?)
        } else {
            builder.with_no_client_auth()
        };
        let mut server = builder.with_single_cert(chain, key).map_err(|error| match error {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch { certfile: certfile.clone(), keyfile: keyfile.clone() }
            }
            other => TlsError::Key { path: keyfile.clone(), problem: other.to_string() },
        })?;
        let alpn = match config.protocol {
            ListenerProtocol::Websockets | ListenerProtocol::Http => ALPN_HTTP_1_1,
            ListenerProtocol::Mqtt | ListenerProtocol::MqttSn => ALPN_MQTT,
        };
        server.alpn_protocols = vec![alpn.to_vec()];
        Ok(Some(Self { server: Arc::new(server), username, handshake_failures: Arc::default() }))
    }

    /// An acceptor for one connection's handshake.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.server))
    }

    /// Which part of a client's certificate is its user name, if any.
    pub fn username(&self) -> Option<CertificateUsername> {
        self.username
    }

    /// Counts a failed handshake.
    pub fn handshake_failed(&self) {
        self.handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The same acceptor, counting on from `previous`'s failed handshakes (after a reload).
    pub(crate) fn counting_on(mut self, previous: Option<&Self>) -> Self {
        if let Some(previous) = previous {
            self.handshake_failures = Arc::clone(&previous.handshake_failures);
        }
        self
    }

    /// Handshakes that failed so far.
    pub fn handshake_failures(&self) -> u64 {
        self.handshake_failures.load(Ordering::Relaxed)
    }
}

/// The verifier of client certificates: signed by a CA of `cafile`/`capath`, not revoked by a
/// CRL of `crlfile` (the client's own certificate is checked, as OpenSSL's `X509_V_FLAG_CRL_CHECK`
/// that mosquitto sets), and required only with `require_certificate`.
fn client_verifier(
    config: &ListenerConfig,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    if let Some(cafile) = &config.cafile {
        for certificate in load_certificates("cafile", cafile)? {
            roots.add(certificate).map_err(|error| TlsError::Invalid {
                key: "cafile",
                path: cafile.clone(),
                problem: error.to_string(),
            })?;
        }
    }
    if let Some(capath) = &config.capath {
        load_capath(capath, &mut roots)?;
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    if let Some(crlfile) = &config.crlfile {
        let crls = load_crls(crlfile)?;
        builder = builder.with_crls(crls).only_check_end_entity_revocation();
    }
    if !config.require_certificate {
        builder = builder.allow_unauthenticated();
    }
    builder.build().map_err(|error| match (&config.crlfile, &error) {
        (Some(crlfile), rustls::server::VerifierBuilderError::InvalidCrl(_)) => {
            TlsError::Invalid { key: "crlfile", path: crlfile.clone(), problem: error.to_string() }
        }
        _ => TlsError::Settings(format!("client certificate settings: {error}")),
    })
}

/// Every certificate in a PEM file, in order (for `certfile`: the server's first, then the
/// CAs between it and a root).
fn load_certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_pem(key, path)?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| not_pem(key, path, error))?;
    if certificates.is_empty() {
        return Err(TlsError::Missing {
            key,
            path: path.to_owned(),
            what: "certificate (no -----BEGIN CERTIFICATE----- section)",
        });
    }
    Ok(certificates)
}

/// The first private key in a PEM file: PKCS#8 (`BEGIN PRIVATE KEY`), PKCS#1 RSA (`BEGIN RSA
/// PRIVATE KEY`) or SEC1 EC (`BEGIN EC PRIVATE KEY`); RSA, ECDSA and Ed25519 keys.
fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_pem("keyfile", path)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(TlsError::Missing {
            key: "keyfile",
            path: path.to_owned(),
            what: if contains(&bytes, b"ENCRYPTED PRIVATE KEY") || contains(&bytes, b"Proc-Type: 4,ENCRYPTED") {
                "unencrypted private key (it is encrypted: decrypt it with `openssl pkey -in KEY -out KEY.plain`)"
            } else {
                "private key (PKCS#8 PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section)"
            },
        }),
        Err(error) => Err(not_pem("keyfile", path, error)),
    }
}

/// The certificates of every file in a `capath` directory that holds some (as mosquitto's
/// `capath`, usually `/etc/ssl/certs`); other files are skipped. At least one is needed.
fn load_capath(dir: &Path, roots: &mut RootCertStore) -> Result<(), TlsError> {
    let read = |source| TlsError::Read { key: "capath", path: dir.to_owned(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let path = entry.map_err(read)?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut found = 0;
    for path in files {
        let Ok(bytes) = std::fs::read(&path) else { continue };
        for certificate in CertificateDer::pem_slice_iter(&bytes).map_while(Result::ok) {
            if roots.add(certificate).is_ok() {
                found += 1;
            }
        }
    }
    if found == 0 {
        return Err(TlsError::Missing {
            key: "capath",
            path: dir.to_owned(),
            what: "file with a PEM certificate (the directory is empty of CAs)",
        });
    }
    Ok(())
}

/// Every revocation list in a PEM file (`BEGIN X509 CRL`).
fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read_pem("crlfile", path)?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| not_pem("crlfile", path, error))?;
    if crls.is_empty() {
        return Err(TlsError::Missing {
            key: "crlfile",
            path: path.to_owned(),
            what: "certificate revocation list (no -----BEGIN X509 CRL----- section)",
        });
    }
    Ok(crls)
}

/// A file's bytes, refused at once when it has no PEM section at all (a DER file, say).
fn read_pem(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read { key, path: path.to_owned(), source })?;
    if !contains(&bytes, b"-----BEGIN ") {
        return Err(TlsError::NotPem {
            key,
            path: path.to_owned(),
            problem: "no -----BEGIN ...----- line (a DER file? convert it with `openssl x509 -inform der`)".into(),
        });
    }
    Ok(bytes)
}

fn not_pem(key: &'static str, path: &Path, error: pem::Error) -> TlsError {
    let problem = match error {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!("missing -----END {}-----", String::from_utf8_lossy(&end_marker))
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("bad section start {:?}", String::from_utf8_lossy(&line))
        }
        pem::Error::Base64Decode(detail) => format!("bad base64: {detail}"),
        other => other.to_string(),
    };
    TlsError::NotPem { key, path: path.to_owned(), problem }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// The user name a verified client certificate (DER) gives, or why it gives none.
pub fn certificate_username(der: &[u8], how: CertificateUsername) -> Result<String, &'static str> {
    let (_, certificate) =
        x509_parser::parse_x509_certificate(der).map_err(|_| "the client certificate cannot be parsed")?;
    let subject = certificate.subject();
    match how {
        CertificateUsername::CommonName => {
            let name = subject.iter_common_name().next().ok_or("the client certificate's subject has no CN")?;
            let name = name.as_str().map_err(|_| "the client certificate's CN is not a text string")?;
            if name.contains('\0') {
                return Err("the client certificate's CN holds a NUL character");
            }
            Ok(name.to_owned())
        }
        CertificateUsername::Subject => Ok(rfc2253(subject)),
    }
}

/// A distinguished name as OpenSSL's `X509_NAME_print_ex(.., XN_FLAG_RFC2253)` writes it, which
/// is what mosquitto's `use_subject_as_username` takes: RDNs last first, separated by `,`
/// (`+` inside a multi-valued RDN), OpenSSL's short names, RFC 2253 escapes, bytes above 0x7F as
/// `\XX`, and attributes without a short name as `OID=#HEX` of their DER value.
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut out = String::new();
    for (i, rdn) in name.iter().collect::<Vec<_>>().into_iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attribute) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = attribute.attr_type().to_id_string();
            // NumericString, PrintableString, UTF8String and IA5String; other string types
            // (T61, BMP), rare in client certificates, fall back to the hex form.
            let value = attribute.as_str().ok();
            match (short_name(&oid), value) {
                (Some(short), Some(value)) => {
                    out.push_str(short);
                    out.push('=');
                    escape_rfc2253(value, &mut out);
                }
                (short, _) => {
                    out.push_str(short.unwrap_or(&oid));
                    out.push_str("=#");
                    let value = attribute.attr_value();
                    let mut der = Vec::new();
                    // The value's DER: its tag and length, then its bytes.
                    der.push(value.header.tag().0 as u8);
                    let len = value.data.len();
                    if len < 0x80 {
                        der.push(len as u8);
                    } else {
                        let bytes = len.to_be_bytes();
                        let skip = bytes.iter().take_while(|b| **b == 0).count();
                        der.push(0x80 | (bytes.len() - skip) as u8);
                        der.extend_from_slice(&bytes[skip..]);
                    }
                    der.extend_from_slice(value.data);
                    for byte in der {
                        let _ = write!(out, "{byte:02X}");
                    }
                }
            }
        }
    }
    out
}

/// OpenSSL's short names for the attributes found in subjects.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// RFC 2253 escaping as OpenSSL does it: `,+"\<>;` anywhere, `#` or a space first, a space last;
/// control characters and every byte above 0x7F as `\XX`.
fn escape_rfc2253(value: &str, out: &mut String) {
    let bytes = value.as_bytes();
    for (i, &byte) in bytes.iter().enumerate() {
        let first = i == 0;
        let last = i + 1 == bytes.len();
        match byte {
            b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';' => {
                out.push('\\');
                out.push(byte as char);
            }
            b'#' | b' ' if first => {
                out.push('\\');
                out.push(byte as char);
            }
            b' ' if last => out.push_str("\\ "),
            0..=0x1F | 0x7F..=0xFF => {
                let _ = write!(out, "\\{byte:02X}");
            }
            _ => out.push(byte as char),
        }
    }
}

#[cfg(test)]
mod tests;
