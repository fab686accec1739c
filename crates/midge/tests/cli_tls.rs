//! `midge pub` and `midge sub` over TLS, against Debian's mosquitto with a TLS listener, with
//! mosquitto's TLS flags: `--cafile`, `--cert`/`--key`, `--insecure`, `-L mqtts://`. The
//! certificates are made by the test (rcgen) in a temporary directory.

mod interop_common;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use interop_common::mosquitto::Sub;
use interop_common::run_bounded;
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};
use support::{midge_bin, TestBroker};

const WAIT: Duration = Duration::from_secs(15);

/// A CA and what it signed, written as PEM files into a directory mosquitto (which drops to its
/// own user) can read.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let pki = Self { dir };
        let (ca, ca_key) = pki.ca("ca");
        pki.leaf("server", vec!["localhost".to_owned()], &ca, &ca_key);
        pki.leaf("client", Vec::new(), &ca, &ca_key);
        pki.ca("other-ca");
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write pem");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }

    /// A self-signed CA, written as NAME.pem.
    fn ca(&self, name: &str) -> (Certificate, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("Midge test {name}"));
        let cert = params.self_signed(&key).expect("self-signed");
        self.write(&format!("{name}.pem"), &cert.pem());
        (cert, key)
    }

    /// A certificate for `names` signed by the CA, written as NAME.pem and NAME.key.
    fn leaf(&self, name: &str, names: Vec<String>, ca: &Certificate, ca_key: &KeyPair) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, ca, ca_key).expect("signed");
        self.write(&format!("{name}.pem"), &cert.pem());
        self.write(&format!("{name}.key"), &key.serialize_pem());
    }

    /// mosquitto's TLS settings for its listener.
    fn mosquitto_listener(&self, require_certificate: bool) -> String {
        format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {require_certificate}\n",
            self.path("ca.pem").display(),
            self.path("server.pem").display(),
            self.path("server.key").display()
        )
    }
}

fn arg(path: &Path) -> String {
    path.display().to_string()
}

/// Runs `midge pub` with `args` against `broker`'s port; returns its status code and output.
fn midge_pub(broker: &TestBroker, args: &[String]) -> (i32, String) {
    let mut command = Command::new(midge_bin());
    command.arg("pub").args(["-p", &broker.port().to_string(), "-q", "1"]).args(args);
    let (status, output) = run_bounded(command, WAIT);
    (status.code().unwrap_or(-1), output)
}

/// A subscriber over TLS with mosquitto_sub, trusting the test CA.
fn tls_sub(broker: &TestBroker, pki: &Pki, id: &str, topic: &str, extra: &[String]) -> Sub {
    let mut args: Vec<String> =
        ["--cafile", &arg(&pki.path("ca.pem")), "-h", "localhost", "-t", topic, "-C", "1"].map(String::from).to_vec();
    args.extend_from_slice(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Sub::start_with(broker, "mqttv311", id, &args, "%t|%p")
}

/// --cafile turns TLS on: the message reaches mosquitto_sub over TLS.
#[test]
fn pub_over_tls_with_cafile() {
    let pki = Pki::new();
    let broker = TestBroker::start_mosquitto(&pki.mosquitto_listener(false));
    let mut sub = tls_sub(&broker, &pki, "tls-sub", "tls/a", &[]);
    sub.wait_subscribed();
    let args = ["--cafile", &arg(&pki.path("ca.pem")), "-h", "localhost", "-t", "tls/a", "-m", "secure"];
    let (code, output) = midge_pub(&broker, &args.map(String::from));
    assert_eq!(code, 0, "{output}");
    assert_eq!(sub.messages(), ["tls/a|secure"]);
}

/// A broker whose certificate the client's CA did not sign is refused: exit 1, a TLS error.
#[test]
fn an_untrusted_broker_is_refused() {
    let pki = Pki::new();
    let broker = TestBroker::start_mosquitto(&pki.mosquitto_listener(false));
    let args = ["--cafile", &arg(&pki.path("other-ca.pem")), "-h", "localhost", "-t", "t", "-m", "x"];
    let (code, output) = midge_pub(&broker, &args.map(String::from));
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("A TLS error occurred"), "{output}");
}

/// The certificate names localhost, not 127.0.0.1: refused, unless --insecure skips the name
/// (the chain is still checked).
#[test]
fn a_name_mismatch_is_refused_unless_insecure() {
    let pki = Pki::new();
    let broker = TestBroker::start_mosquitto(&pki.mosquitto_listener(false));
    let base = ["--cafile", &arg(&pki.path("ca.pem")), "-h", "127.0.0.1", "-t", "t", "-m", "x"].map(String::from);
    let (code, output) = midge_pub(&broker, &base);
    assert_eq!(code, 1, "{output}");
    let mut insecure = base.to_vec();
    insecure.push("--insecure".into());
    let (code, output) = midge_pub(&broker, &insecure);
    assert_eq!(code, 0, "{output}");
    let mut other_ca = insecure.clone();
    other_ca[1] = arg(&pki.path("other-ca.pem"));
    assert_eq!(midge_pub(&broker, &other_ca).0, 1, "--insecure still checks the chain");
}

/// A broker that requires a client certificate takes --cert/--key signed by its CA, and
/// refuses a client without one.
#[test]
fn client_certificates() {
    let pki = Pki::new();
    let broker = TestBroker::start_mosquitto(&pki.mosquitto_listener(true));
    let base = ["--cafile", &arg(&pki.path("ca.pem")), "-h", "localhost", "-t", "t", "-m", "x"].map(String::from);
    let (code, output) = midge_pub(&broker, &base);
    assert_ne!(code, 0, "no client certificate: {output}");
    let mut with_cert = base.to_vec();
    with_cert.extend(["--cert".into(), arg(&pki.path("client.pem")), "--key".into(), arg(&pki.path("client.key"))]);
    let (code, output) = midge_pub(&broker, &with_cert);
    assert_eq!(code, 0, "{output}");
    let mut half = base.to_vec();
    half.extend(["--cert".into(), arg(&pki.path("client.pem"))]);
    let (code, output) = midge_pub(&broker, &half);
    assert_eq!(code, 1, "--cert without --key: {output}");
    assert!(output.contains("Both certfile and keyfile"), "{output}");
}

/// `-L mqtts://host:port/topic` is TLS.
#[test]
fn an_mqtts_url_is_tls() {
    let pki = Pki::new();
    let broker = TestBroker::start_mosquitto(&pki.mosquitto_listener(false));
    let mut sub = tls_sub(&broker, &pki, "url-sub", "url/t", &[]);
    sub.wait_subscribed();
    let url = format!("mqtts://localhost:{}/url/t", broker.port());
    let mut command = Command::new(midge_bin());
    command.args(["pub", "-L", &url, "--cafile", &arg(&pki.path("ca.pem")), "-m", "via url", "-q", "1"]);
    let (status, output) = run_bounded(command, WAIT);
    assert!(status.success(), "{output}");
    assert_eq!(sub.messages(), ["url/t|via url"]);
}
