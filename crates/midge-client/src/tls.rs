//! TLS to the broker (rustls): which servers to trust, the client's own certificate, and the
//! settings mosquitto_pub and mosquitto_sub take (`--cafile`, `--capath`, `--tls-use-os-certs`,
//! `--cert`, `--key`, `--insecure`, `--tls-version`, `--tls-alpn`), and whether sessions are
//! resumed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The oldest TLS version a client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3 (the default).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// What a TLS connection trusts and presents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of trusted CA certificates (`--cafile`).
    pub ca_file: Option<PathBuf>,
    /// Directory of PEM files of trusted CA certificates (`--capath`).
    pub ca_path: Option<PathBuf>,
    /// Trust the system's roots too (`--tls-use-os-certs`).
    pub os_certs: bool,
    /// The client's certificate chain, PEM (`--cert`); needs [`TlsOptions::key`].
    pub cert: Option<PathBuf>,
    /// The client's private key, PEM (`--key`).
    pub key: Option<PathBuf>,
    /// Do not check that the server's certificate names the host connected to (`--insecure`).
    /// The chain is still verified: this only skips the name, as in mosquitto.
    pub danger_insecure_names: bool,
    /// The oldest version accepted (`--tls-version`).
    pub min_version: TlsVersion,
    /// ALPN protocols to offer (`--tls-alpn`).
    pub alpn: Vec<String>,
    /// Every connection makes a full handshake: no session is cached and none resumed (rustls
    /// otherwise keeps a session cache shared by the connections of one [`Tls`]). Slower; for
    /// load generators that measure the handshake, as `midge bench` does.
    pub no_resumption: bool,
}

/// Why TLS settings cannot be used; each names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds nothing usable.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The settings do not fit together.
    #[error("{0}")]
    Settings(String),
}

/// A ready TLS client configuration, shared by every connection that uses it.
#[derive(Clone)]
pub struct Tls {
    pub(crate) config: Arc<ClientConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("alpn", &self.config.alpn_protocols).finish_non_exhaustive()
    }
}

impl PartialEq for Tls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for Tls {}

impl Tls {
    /// Loads the files `options` names and builds the configuration.
    pub fn new(options: &TlsOptions) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        if let Some(file) = &options.ca_file {
            add_roots(&mut roots, file)?;
        }
        if let Some(dir) = &options.ca_path {
            let entries = std::fs::read_dir(dir).map_err(|e| file_error(dir, e.to_string()))?;
            for entry in entries {
                let path = entry.map_err(|e| file_error(dir, e.to_string()))?.path();
                if path.is_file() {
                    // A directory may hold other files (hash links, READMEs): only certificates count.
                    let _ = add_roots(&mut roots, &path);
                }
            }
        }
        if options.os_certs {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
        if roots.is_empty() {
            return Err(TlsError::Settings(
                "no trusted CA certificate: give --cafile, --capath or --tls-use-os-certs".to_owned(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = match options.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::Settings(e.to_string()))?;
        let roots = Arc::new(roots);
        let builder = if options.danger_insecure_names {
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Settings(e.to_string()))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyName(verifier)))
        } else {
            builder.with_root_certificates(roots)
        };
        let mut config = match (&options.cert, &options.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
                .map_err(|e| file_error(key, format!("does not fit the certificate in {}: {e}", cert.display())))?,
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(TlsError::Settings("--cert and --key go together".to_owned())),
        };
        config.alpn_protocols = options.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        if options.no_resumption {
            config.resumption = rustls::client::Resumption::disabled();
        }
        Ok(Self { config: Arc::new(config) })
    }
}

fn file_error(path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError::File { path: path.to_owned(), problem: problem.into() }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_error(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, format!("no usable private key: {e}")))
}

fn add_roots(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| file_error(path, e.to_string()))?;
    }
    Ok(())
}

/// Verifies the server's chain as usual but accepts a certificate for another name
/// (`--insecure`).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    use super::*;

    /// Options trusting a fresh CA, written to the temporary directory (removed by the test).
    fn options(name: &str) -> TlsOptions {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let path = std::env::temp_dir().join(format!("midge-client-{}-{name}.pem", std::process::id()));
        std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
        TlsOptions { ca_file: Some(path), ..TlsOptions::default() }
    }

    #[test]
    fn sessions_are_resumed_unless_no_resumption_says_otherwise() {
        // rustls names the store that keeps nothing NoClientSessionStorage; its Debug output is
        // the only view of the store from outside rustls.
        let resumption = |options: &TlsOptions| format!("{:?}", Tls::new(options).unwrap().config.resumption);
        let resumed = options("resumed");
        assert!(!resumption(&resumed).contains("NoClientSessionStorage"), "{}", resumption(&resumed));
        let full = TlsOptions { no_resumption: true, ..options("full") };
        assert!(resumption(&full).contains("NoClientSessionStorage"), "{}", resumption(&full));
        assert!(resumption(&full).contains("tls12_resumption: Disabled"), "{}", resumption(&full));
        for options in [resumed, full] {
            let _ = std::fs::remove_file(options.ca_file.unwrap());
        }
    }
}
