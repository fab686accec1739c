//! Test certificates, made by the tests with rcgen in a temporary directory that mosquitto (which
//! drops to its own user) can read: a CA, certificates it signs, and a second CA nobody trusts.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

/// A CA (`ca.pem`), certificates it signed, and an untrusted CA (`other-ca.pem`).
pub struct Pki {
    dir: tempfile::TempDir,
    ca: Certificate,
    ca_key: KeyPair,
}

impl Pki {
    /// The CA, a server certificate for `server_names` (`server.pem`, `server.key`) and a client
    /// certificate (`client.pem`, `client.key`, CN "client").
    pub fn new(server_names: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let (ca, ca_key) = self_signed("Midge test CA");
        let pki = Self { dir, ca, ca_key };
        pki.write("ca.pem", &pki.ca.pem());
        pki.issue("server", "server", server_names);
        pki.issue("client", "client", &[]);
        let (other, _) = self_signed("Midge test CA nobody trusts");
        pki.write("other-ca.pem", &other.pem());
        pki
    }

    /// A file of the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The path as an argument.
    pub fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// Writes `name`, readable by everyone.
    pub fn write(&self, name: &str, text: &str) {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write pem");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }

    /// `NAME.pem` and `NAME.key`: a certificate for `cn` and the DNS names or IP addresses
    /// `names`, signed by the CA.
    pub fn issue(&self, name: &str, cn: &str, names: &[&str]) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).expect("signed");
        self.write(&format!("{name}.pem"), &cert.pem());
        self.write(&format!("{name}.key"), &key.serialize_pem());
    }

    /// mosquitto's TLS settings for its listener, with the server certificate.
    pub fn mosquitto_listener(&self, require_certificate: bool) -> String {
        format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {require_certificate}\n",
            self.arg("ca.pem"),
            self.arg("server.pem"),
            self.arg("server.key")
        )
    }

    /// midge's TLS keys for its listener, with the server certificate.
    pub fn midge_listener(&self) -> String {
        format!("certfile = {:?}\nkeyfile = {:?}\n", self.arg("server.pem"), self.arg("server.key"))
    }
}

fn self_signed(cn: &str) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, cn);
    (params.self_signed(&key).expect("self-signed"), key)
}
