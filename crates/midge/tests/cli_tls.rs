//! `midge pub` and `midge sub` over TLS, against Debian's mosquitto with a TLS listener, with
//! mosquitto's TLS flags: `--cafile`, `--cert`/`--key`, `--insecure`, `-L mqtts://`. The
//! certificates are made by the test (rcgen) in a temporary directory.

mod interop_common;
mod support;
mod tls_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use interop_common::mosquitto::Sub;
use interop_common::run_bounded;
use support::{midge_bin, TestBroker};
use tls_common::Pki;

const WAIT: Duration = Duration::from_secs(15);

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
    let pki = Pki::new(&["localhost"]);
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
    let pki = Pki::new(&["localhost"]);
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
    let pki = Pki::new(&["localhost"]);
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
    let pki = Pki::new(&["localhost"]);
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
    let pki = Pki::new(&["localhost"]);
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
