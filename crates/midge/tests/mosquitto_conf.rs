//! mosquitto.conf as a drop-in config (docs/migrating-from-mosquitto.md): one file with a
//! default listener (`port`, `bind_address`), a websockets listener and a TLS websockets listener, a password file made
//! by Debian's `mosquitto_passwd`, an ACL file and persistence with `autosave_interval`, run by
//! `midge serve -c FILE` unchanged and by Debian's `mosquitto -c FILE` too; mosquitto_pub and
//! mosquitto_sub as the clients (and `midge pub` for the WebSocket listeners, which Debian's
//! clients cannot reach). `midge serve --check` with good and bad files. A `connection` section
//! bridging to Debian's mosquitto.

mod cli_common;
mod interop_common;
mod support;
mod tls_common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cli_common::{client, midge, run, Finished};
use interop_common::mosquitto::{publish, Sub};
use support::{free_port, TestBroker};
use tls_common::Pki;

/// A mosquitto.conf and the files it names, in a directory mosquitto (which drops to its own
/// user when started as root) can read.
struct Setup {
    dir: tempfile::TempDir,
    pki: Pki,
    conf: PathBuf,
    /// The plain, websockets and TLS websockets listeners' ports.
    ports: [u16; 3],
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        chmod(dir.path(), 0o755);
        let pki = Pki::new(&["127.0.0.1", "localhost"]);
        let passwd = dir.path().join("passwd");
        let made =
            run_quietly(Command::new("mosquitto_passwd").arg("-c").arg("-b").arg(&passwd).args(["alice", "secret"]));
        assert!(made.status.success(), "mosquitto_passwd: {made:?}");
        chmod(&passwd, 0o644);
        let acl = dir.path().join("acl");
        std::fs::write(&acl, "user alice\ntopic readwrite sensors/#\n").unwrap();
        chmod(&acl, 0o644);
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        chmod(&data, 0o777);
        let ports = [free_port(), free_port(), free_port()];
        let text = format!(
            "# A mosquitto 2 configuration, read unchanged by Midge.\n\
             per_listener_settings false\n\
             allow_anonymous false\n\
             password_file {passwd}\n\
             acl_file {acl}\n\
             \n\
             persistence true\n\
             persistence_location {data}/\n\
             autosave_interval 1800\n\
             \n\
             log_dest stderr\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n\
             log_type information\n\
             \n\
             # The default listener, set by port and bind_address.\n\
             port {p1}\n\
             bind_address 127.0.0.1\n\
             \n\
             listener {p2} 127.0.0.1\n\
             protocol websockets\n\
             \n\
             listener {p3} 127.0.0.1\n\
             protocol websockets\n\
             cafile {ca}\n\
             certfile {cert}\n\
             keyfile {key}\n",
            passwd = passwd.display(),
            acl = acl.display(),
            data = data.display(),
            p1 = ports[0],
            p2 = ports[1],
            p3 = ports[2],
            ca = pki.arg("ca.pem"),
            cert = pki.arg("server.pem"),
            key = pki.arg("server.key"),
        );
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, text).unwrap();
        chmod(&conf, 0o644);
        Self { dir, pki, conf, ports }
    }

    fn conf(&self) -> &str {
        self.conf.to_str().unwrap()
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn run_quietly(command: &mut Command) -> std::process::Output {
    command.stdin(Stdio::null()).output().expect("run")
}

/// `mosquitto_pub` or `mosquitto_sub` as alice (or with `login` None, anonymously).
fn as_user(program: &str, broker: &TestBroker, login: Option<&str>, args: &[&str]) -> Finished {
    let mut all = vec!["-V", "mqttv311"];
    if let Some(password) = login {
        all.extend(["-u", "alice", "-P", password]);
    }
    all.extend(args);
    run(client(program, broker, &all))
}

/// The retained message on `topic`, read by alice with mosquitto_sub (empty if none within 3 s).
fn retained(broker: &TestBroker, topic: &str) -> String {
    as_user("mosquitto_sub", broker, Some("secret"), &["-t", topic, "-C", "1", "-W", "3"]).text()
}

/// The config above, run by `midge serve -c`: every listener serves (the default one, set by
/// `port` and `bind_address`, and two `listener`s), with the password file,
/// the ACL file and the store; `autosave_interval` is logged with what Midge does instead; a
/// retained message survives `kill -9` in the store under `persistence_location`.
#[test]
fn a_mosquitto_conf_with_three_listeners_passwords_acl_and_persistence_works_unchanged() {
    let setup = Setup::new();
    let broker = TestBroker::start_midge_args(&["-c", setup.conf()]);
    assert_eq!(broker.port(), setup.ports[0], "the first listener is the plain one");
    let ws = broker.listener_addr("listening (mqtt over websockets)");
    let wss = broker.listener_addr("listening (mqtt over websockets over tls)");
    assert_eq!((ws.port(), wss.port()), (setup.ports[1], setup.ports[2]));
    broker.wait_for_log(
        "directive autosave_interval: not needed: Midge stores every QoS 1/2 message",
        Duration::from_secs(5),
    );

    // Plain TCP with mosquitto's clients: alice in, strangers out, the ACL applied.
    let published =
        as_user("mosquitto_pub", &broker, Some("secret"), &["-t", "sensors/tcp", "-m", "over tcp", "-q", "1", "-r"]);
    assert_eq!(published.code(), 0, "{published:?}");
    assert_eq!(retained(&broker, "sensors/tcp"), "over tcp\n");
    assert_ne!(as_user("mosquitto_pub", &broker, Some("wrong"), &["-t", "sensors/x", "-m", "x"]).code(), 0);
    assert_ne!(
        as_user("mosquitto_pub", &broker, None, &["-t", "sensors/x", "-m", "x"]).code(),
        0,
        "allow_anonymous false"
    );
    as_user("mosquitto_pub", &broker, Some("secret"), &["-t", "private/x", "-m", "not allowed", "-q", "1", "-r"]);
    assert_eq!(retained(&broker, "private/x"), "", "the ACL file gives alice sensors/# only");

    // The websockets listeners, with midge pub (Debian's clients do not speak WebSocket).
    let url = format!("ws://127.0.0.1:{}/sensors/ws", ws.port());
    let published = run(midge(&["pub", "-L", &url, "-u", "alice", "-P", "secret", "-q", "1", "-r", "-m", "over ws"]));
    assert_eq!(published.code(), 0, "{published:?}");
    assert_eq!(retained(&broker, "sensors/ws"), "over ws\n");
    let url = format!("wss://127.0.0.1:{}/sensors/wss", wss.port());
    let ca = setup.pki.arg("ca.pem");
    let published = run(midge(&[
        "pub", "-L", &url, "--cafile", &ca, "-u", "alice", "-P", "secret", "-q", "1", "-r", "-m", "over wss",
    ]));
    assert_eq!(published.code(), 0, "{published:?}");
    assert_eq!(retained(&broker, "sensors/wss"), "over wss\n");

    // Persistence: the store is under persistence_location, and what it acknowledged survives
    // kill -9 (autosave_interval has nothing to wait for).
    drop(broker);
    assert!(setup.dir.path().join("data/midge").is_dir(), "the store is in persistence_location/midge");
    let broker = TestBroker::start_midge_args(&["-c", setup.conf()]);
    assert_eq!(retained(&broker, "sensors/tcp"), "over tcp\n");
    assert_eq!(retained(&broker, "sensors/wss"), "over wss\n");
}

/// The same file is a valid configuration for Debian's mosquitto: it starts on it and lets
/// alice in with the password file mosquitto_passwd wrote, and nobody else.
#[test]
fn the_same_file_runs_debians_mosquitto() {
    let setup = Setup::new();
    let mut child = Command::new("mosquitto")
        .arg("-c")
        .arg(&setup.conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mosquitto");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let started = loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line.contains("running") => break true,
            Ok(line) => log.push(line),
            Err(_) => break false,
        }
    };
    let stop = |mut child: std::process::Child| {
        let _ = Command::new("kill").arg("-KILL").arg(child.id().to_string()).status();
        let _ = child.wait();
    };
    if !started {
        stop(child);
        panic!("mosquitto did not start on the file:\n{}", log.join("\n"));
    }
    let port = setup.ports[0].to_string();
    let publish = |login: &[&str]| {
        let mut command = Command::new("mosquitto_pub");
        command.args(["-h", "127.0.0.1", "-p", &port, "-t", "sensors/m", "-m", "x"]).args(login);
        run(command)
    };
    let alice = publish(&["-u", "alice", "-P", "secret"]);
    let anonymous = publish(&[]);
    stop(child);
    assert_eq!(alice.code(), 0, "{alice:?}\n{}", log.join("\n"));
    assert_ne!(anonymous.code(), 0);
}

/// Directives Midge has not built yet are accepted and said at start: a unix socket listener is
/// not opened; the rest of the file serves, `sys_interval` included.
#[test]
fn directives_not_built_yet_are_reported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    let port = free_port();
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nlistener 0 {}\nsys_interval 1\npersistence false\n",
            dir.path().join("mosquitto.sock").display()
        ),
    )
    .unwrap();
    let broker = TestBroker::start_midge_args(&["-c", conf.to_str().unwrap()]);
    let wait = Duration::from_secs(5);
    let line = broker.wait_for_log("not opened: unix socket listeners are not built yet", wait);
    assert!(line.contains("WARN") && line.contains(&format!("{}:3: directive listener", conf.display())), "{line}");
    let published = run(client("mosquitto_pub", &broker, &["-t", "a", "-m", "x"]));
    assert_eq!(published.code(), 0, "{published:?}");
    // sys_interval maps to [sys] interval: the version is published, retained.
    let version = run(client("mosquitto_sub", &broker, &["-t", "$SYS/broker/version", "-C", "1", "-W", "5"]));
    assert_eq!(version.code(), 0, "{version:?}");
    assert!(version.text().starts_with("midge version"), "{version:?}");
}

/// A `connection` section runs as a bridge: to Debian's mosquitto as the remote, `out` and `in`
/// topics renamed by their prefixes, retained messages kept retained on their way out.
#[test]
fn a_connection_section_bridges_to_mosquitto() {
    let remote = TestBroker::start_mosquitto("");
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             connection cloud\naddress 127.0.0.1:{remote}\ntopic sensors/# out 1 site/ cloud/site-7/\n\
             topic commands/# in 1 site/ cloud/site-7/\nrestart_timeout 1\n",
            port = free_port(),
            remote = remote.port(),
        ),
    )
    .unwrap();
    let local = TestBroker::start_midge_args(&["-c", conf.to_str().unwrap()]);
    local.wait_for_log("bridge connected", Duration::from_secs(10));

    // Out: retained here, retained there under the remote prefix (a new subscriber there gets
    // it once it has crossed: waited for on its retained copy).
    let published = run(client("mosquitto_pub", &local, &["-t", "site/sensors/t1", "-m", "21.5", "-q", "1", "-r"]));
    assert_eq!(published.code(), 0, "{published:?}");
    let mut there = Sub::start(&remote, "mqttv311", "there", "cloud/site-7/sensors/#", 1, 1, "%t|%p|%r");
    there.wait_for("cloud/site-7/sensors/t1|21.5|1");

    // In: published at the remote under its prefix, received here under the local one.
    let mut here = Sub::start(&local, "mqttv311", "here", "site/commands/#", 1, 1, "%t|%p");
    here.wait_subscribed();
    publish(&remote, "mqttv311", "door", &["-t", "cloud/site-7/commands/door", "-m", "open", "-q", "1"]);
    here.wait_for("site/commands/door|open");
}

/// `midge serve --check -c FILE`: "FILE: OK" and 0 for a good file of either format (with the
/// mosquitto notes printed), the error and 1 for a bad directive, a missing password file or
/// certificate, or a TOML file forced to be read as mosquitto.conf; nothing is bound.
#[test]
fn check_validates_a_config_and_the_files_it_names_without_binding() {
    let setup = Setup::new();
    let check = |args: &[&str]| run(midge(&[&["serve", "--check"][..], args].concat()));
    let good = check(&["-c", setup.conf()]);
    assert_eq!(good.code(), 0, "{good:?}");
    assert!(good.text().ends_with(&format!("{}: OK\n", setup.conf())), "{}", good.text());
    assert!(good.text().contains("directive autosave_interval: not needed"), "{}", good.text());
    // It bound nothing: the listeners' ports are still free.
    std::net::TcpListener::bind(("127.0.0.1", setup.ports[0])).expect("port free after --check");

    let toml = setup.dir.path().join("midge.toml");
    std::fs::write(&toml, "[[listener]]\nbind = \"127.0.0.1:0\"\n").unwrap();
    let good = check(&["-c", toml.to_str().unwrap()]);
    assert_eq!((good.code(), good.text()), (0, format!("{}: OK\n", toml.display())));
    let forced = check(&["-c", toml.to_str().unwrap(), "--format", "mosquitto"]);
    assert_eq!(forced.code(), 1);
    assert!(
        forced.stderr.contains(&format!("{}:1: directive [[listener]]: unknown directive", toml.display())),
        "{}",
        forced.stderr
    );

    let original = std::fs::read_to_string(&setup.conf).unwrap();
    let cases = [
        (
            original.replace("autosave_interval 1800", "autosave_interval soon"),
            "mosquitto.conf:9: directive autosave_interval: expected a number of seconds",
        ),
        (
            original.replace("log_type notice", "log_typo notice"),
            "mosquitto.conf:14: directive log_typo: unknown directive",
        ),
        (original.replace("/passwd", "/missing-passwd"), "missing-passwd"),
        (original.replace("server.pem", "missing.pem"), "missing.pem"),
    ];
    for (text, expected) in cases {
        std::fs::write(&setup.conf, text).unwrap();
        let bad = check(&["-c", setup.conf()]);
        assert_eq!(bad.code(), 1, "{expected}: {bad:?}");
        assert!(bad.stderr.contains(expected), "{expected}: {}", bad.stderr);
        assert!(!bad.text().contains(": OK"), "{}", bad.text());
    }

    // A bridge: its section checked, its TLS files read as the bridge will read them.
    let bridge = |cafile: &str, topic: &str| {
        format!(
            "{original}\nconnection cloud\naddress broker.example:8883\n{topic}bridge_cafile {cafile}\n\
             bridge_certfile {cert}\nbridge_keyfile {key}\n",
            cert = setup.pki.arg("server.pem"),
            key = setup.pki.arg("server.key"),
        )
    };
    std::fs::write(&setup.conf, bridge(&setup.pki.arg("ca.pem"), "topic sensors/# out 1\n")).unwrap();
    let good = check(&["-c", setup.conf()]);
    assert_eq!(good.code(), 0, "{good:?}");
    assert!(good.text().ends_with(&format!("{}: OK\n", setup.conf())), "{}", good.text());
    let missing = setup.dir.path().join("missing-ca.pem");
    std::fs::write(&setup.conf, bridge(missing.to_str().unwrap(), "topic sensors/# out 1\n")).unwrap();
    let bad = check(&["-c", setup.conf()]);
    assert_eq!(bad.code(), 1, "{bad:?}");
    assert!(bad.stderr.contains("bridge \"cloud\": tls") && bad.stderr.contains("missing-ca.pem"), "{}", bad.stderr);
    std::fs::write(&setup.conf, bridge(&setup.pki.arg("ca.pem"), "")).unwrap();
    let bad = check(&["-c", setup.conf()]);
    assert_eq!(bad.code(), 1, "{bad:?}");
    assert!(bad.stderr.contains("directive connection: bridge \"cloud\": topic"), "{}", bad.stderr);
}

/// mosquitto's own commented example file, as Debian ships it, run as it is (every directive in
/// it commented out: mosquitto 2's local-only listener, moved to a free port with `-p 0` as
/// `mosquitto -c FILE -p PORT` would be).
#[test]
fn mosquittos_example_file_runs_unchanged() {
    let example = "/usr/share/doc/mosquitto/examples/mosquitto.conf";
    if !Path::new(example).exists() {
        eprintln!("skipped: {example} is not installed");
        return;
    }
    let broker = TestBroker::start_midge_args(&["-c", example, "--format", "mosquitto", "-p", "0"]);
    assert!(broker.addr.ip().is_loopback(), "{}", broker.addr);
    let published = run(client("mosquitto_pub", &broker, &["-t", "a", "-m", "x", "-q", "1"]));
    assert_eq!(published.code(), 0, "anonymous clients are allowed in local-only mode: {published:?}");
}

/// mosquitto 2.1's `protocol http_api` opens Midge's HTTP listener (its API, `/metrics` and
/// console), which answers `/healthz`.
#[test]
fn protocol_http_api_opens_an_http_listener() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    let (port, http) = (free_port(), free_port());
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nlistener {http} 127.0.0.1\nprotocol http_api\n\
             allow_anonymous true\npersistence false\n"
        ),
    )
    .unwrap();
    let broker = TestBroker::start_midge_args(&["-c", conf.to_str().unwrap()]);
    broker.wait_for_log("listening (http", Duration::from_secs(10));
    let url = format!("http://127.0.0.1:{http}/healthz");
    let output = Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "200", "{output:?}");
}

/// `bind_interface` (mosquitto's): the listener listens on the addresses the interface has at
/// start, here the loopback interface's; one naming no interface stops the start, saying so.
#[test]
fn bind_interface_listens_on_the_interfaces_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    let port = free_port();
    std::fs::write(&conf, format!("listener {port}\nbind_interface lo\nallow_anonymous true\npersistence false\n"))
        .unwrap();
    let broker = TestBroker::start_midge_args(&["-c", conf.to_str().unwrap()]);
    let line = broker.wait_for_log(&format!("local_addr=127.0.0.1:{port}"), Duration::from_secs(10));
    assert!(line.contains("listening"), "{line}");
    let published = run(client("mosquitto_pub", &broker, &["-t", "a", "-m", "x"]));
    assert_eq!(published.code(), 0, "{published:?}");

    std::fs::write(&conf, format!("listener {port}\nbind_interface no-such-if0\n")).unwrap();
    let output = Command::new(support::midge_bin()).args(["serve", "-c", conf.to_str().unwrap()]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no-such-if0"), "{stderr}");
}
