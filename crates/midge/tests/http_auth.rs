//! An HTTP service decides who may connect (`[listener.http_auth]`): the service is Python's
//! `http.server` (`tests/http_auth/service.py`), the clients Debian's mosquitto_pub and
//! mosquitto_sub. 2xx allows, 4xx refuses with Bad User Name or Password, a failing or silent
//! service refuses with Server Unavailable; the answer's filters limit the client; answers are
//! cached.

mod interop_common;
mod support;
mod tls_common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use interop_common::mosquitto::{publish_output, Sub};
use support::TestBroker;

const V5: &str = "mqttv5";

/// The service, stopped by its PID when dropped.
struct Service {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Service {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("requests.jsonl");
        std::fs::write(&log, "").expect("log");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/http_auth/service.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&log)
            .arg("60")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("port line");
        let port = line.trim().strip_prefix("port ").and_then(|p| p.parse().ok()).expect("port N");
        Self { child, port, log, _dir: dir }
    }

    fn requests(&self) -> usize {
        std::fs::read_to_string(&self.log).expect("log").lines().count()
    }

    fn broker(&self) -> TestBroker {
        self.broker_with("")
    }

    /// A midge whose listener asks this service, with `extra` keys in `[listener.http_auth]`.
    fn broker_with(&self, extra: &str) -> TestBroker {
        let listener = format!(
            "[listener.http_auth]\nurl = \"http://127.0.0.1:{}/auth\"\ntimeout_ms = 500\ncache_seconds = 60\n{extra}",
            self.port
        );
        TestBroker::start_midge_listener_with(&listener, "")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// mosquitto_pub as `user`/`password`; returns whether it succeeded and its output.
fn publish_as(broker: &TestBroker, user: &str, password: &str, topic: &str) -> (bool, String) {
    let args = ["-u", user, "-P", password, "-t", topic, "-m", "x", "-q", "1", "-d"];
    let (status, output) = publish_output(broker, V5, &format!("{user}-pub"), &args);
    (status.success() && !output.contains("failed"), output)
}

#[test]
fn the_service_allows_refuses_and_fails_closed() {
    let service = Service::start();
    let broker = service.broker();
    let (ok, output) = publish_as(&broker, "good", "pw", "any/topic");
    assert!(ok, "{output}");
    let (ok, output) = publish_as(&broker, "good", "wrong", "any/topic");
    assert!(!ok && output.contains("CONNACK (134)"), "4xx: Bad User Name or Password: {output}");
    let (ok, output) = publish_as(&broker, "broken", "pw", "any/topic");
    assert!(!ok && output.contains("CONNACK (136)"), "5xx: Server Unavailable: {output}");
    let (ok, output) = publish_as(&broker, "slow", "pw", "any/topic");
    assert!(!ok && output.contains("CONNACK (136)"), "no answer in time: Server Unavailable: {output}");
    let asked = service.requests();
    let (ok, _) = publish_as(&broker, "good", "pw", "any/topic");
    assert!(ok);
    assert_eq!(service.requests(), asked, "the answer for the same credentials is cached");
    broker.wait_for_log("http_auth: refused", Duration::from_secs(5));
}

#[test]
fn the_services_filters_limit_the_client() {
    let service = Service::start();
    let broker = service.broker();
    let args = ["-u", "limited", "-P", "pw", "-t", "limited/in/#", "-C", "1"];
    let mut sub = Sub::start_with(&broker, V5, "limited-sub", &args, "%t|%p");
    assert_eq!(sub.wait_subscribed(), 0);
    let (ok, output) = publish_as(&broker, "limited", "pw", "limited/in/forged");
    assert!(!ok && output.contains("RC:135"), "outside its publish filters: {output}");
    let (ok, output) = publish_as(&broker, "good", "pw", "limited/in/cmd");
    assert!(ok, "{output}");
    assert_eq!(sub.messages(), ["limited/in/cmd|x"]);
}

/// With `acl_url`, a second service says what an allowed client may do: "good" may use good/#
/// only; a client the ACL service answers 403 for has no rights at all.
#[test]
fn the_acl_service_gives_an_allowed_client_its_rights() {
    let service = Service::start();
    let broker = service.broker_with(&format!("acl_url = \"http://127.0.0.1:{}/acl\"\n", service.port));
    let (ok, output) = publish_as(&broker, "good", "pw", "good/x");
    assert!(ok, "{output}");
    let (ok, output) = publish_as(&broker, "good", "pw", "other/x");
    assert!(!ok && output.contains("RC:135"), "outside its rights: {output}");
    let (ok, output) = publish_as(&broker, "limited", "pw", "limited/out/x");
    assert!(!ok && output.contains("RC:135"), "403 from the ACL service: no rights: {output}");
}

/// Over TLS, the subject of the client's certificate is POSTed with its credentials.
#[test]
fn the_certificate_subject_goes_to_the_service() {
    let service = Service::start();
    let pki = tls_common::Pki::new(&["127.0.0.1", "localhost"]);
    let listener = format!(
        "{}cafile = {:?}\n[listener.http_auth]\nurl = \"http://127.0.0.1:{}/auth\"\n",
        pki.midge_listener(),
        pki.arg("ca.pem"),
        service.port
    );
    let broker = TestBroker::start_midge_listener_with(&listener, "");
    let tls = ["--cafile", &pki.arg("ca.pem"), "--cert", &pki.arg("client.pem"), "--key", &pki.arg("client.key")];
    let args = [&tls[..], &["-u", "good", "-P", "pw", "-t", "t", "-m", "x", "-q", "1"]].concat();
    let (status, output) = publish_output(&broker, V5, "cert-pub", &args);
    assert!(status.success(), "{output}");
    let requests = std::fs::read_to_string(&service.log).expect("log");
    assert!(requests.contains("\"certificate_subject\": \"CN=client\""), "{requests}");
}
