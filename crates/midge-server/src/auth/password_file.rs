//! mosquitto's password file (`password_file`): who may connect with which password, and the
//! [`Authenticator`] that checks a client against it.
//!
//! # Format
//! One user a line, `USER:HASH`, as `mosquitto_passwd` (and `midge passwd`) write it:
//!
//! ```text
//! # comments and blank lines are skipped
//! alice:$7$101$SALT$HASH     PBKDF2-HMAC-SHA512, 101 iterations (mosquitto 2's default)
//! bob:$6$SALT$HASH           SHA-512 of the password then the salt (mosquitto 1.x)
//! ```
//!
//! `SALT` and `HASH` are standard base64 with padding (OpenSSL's encoder, as mosquitto uses):
//! the salt is 12 random bytes, the hash 64 (one SHA-512 output). Blanks around the user name
//! and the hash are trimmed, as mosquitto does. A line Midge cannot use is an error naming the
//! file and the line number, never the hash: a plain-text password (which mosquitto built
//! without TLS would accept), an unknown `$N$`, bad base64, a hash of the wrong length, or a
//! user named twice (mosquitto would keep one of them; which one applies is not for a file to
//! leave open).
//!
//! # Off the workers
//! A verification is one SHA-512 (`$6$`) or `2 × iterations` of them (`$7$`), and the
//! iterations are the file's choice: `-I 100000` makes one take tens of milliseconds. So the
//! [`PasswordFileAuthenticator`] answers [`Decision::Later`] and verifies on tokio's blocking
//! pool, at most [`concurrent_verifications`] at once in the whole process.
//!
//! # Reload
//! The file is read when its listener is bound, and again on SIGHUP
//! ([`crate::ListenerHandle::reload`]), as mosquitto does: new connections use the new file.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use midge_broker::ports::auth::{Authenticator, Credentials, Decision, Identity, Verdict};
use midge_codec::ReasonCode;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// Iterations of `$7$` when none are given: mosquitto 2's `PW_DEFAULT_ITERATIONS`.
pub const DEFAULT_ITERATIONS: NonZeroU32 = match NonZeroU32::new(101) {
    Some(iterations) => iterations,
    None => unreachable!(),
};

/// Bytes of a new salt: mosquitto's `SALT_LEN`.
pub const SALT_LEN: usize = 12;

/// Bytes of a hash: one SHA-512 output, what mosquitto writes and checks for both kinds.
const HASH_LEN: usize = 64;

/// How many verifications run at once in the whole process: half the cores, at least one. A
/// verification holds a blocking-pool thread for as long as the file's iteration count makes it
/// take. Unbounded, a storm of wrong passwords would start hundreds of threads hashing at once,
/// each with its stack, and take the CPU from the worker threads that serve connected clients;
/// half the cores leaves the workers the other half. Measured with `bench/auth_storm.sh` on 2
/// cores: with four at once a connected client's p99 grew 12x during the storm, with one it
/// grows far less (docs/benchmarks.md). The ones waiting hold only their future (a copy of the
/// password), at most one per connection being accepted, each bounded by the connect timeout.
pub fn concurrent_verifications() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1))
}

/// Permits for [`concurrent_verifications`], shared by every listener: the CPU is shared.
fn verifications() -> &'static Semaphore {
    static VERIFICATIONS: std::sync::OnceLock<Semaphore> = std::sync::OnceLock::new();
    VERIFICATIONS.get_or_init(|| Semaphore::new(concurrent_verifications()))
}

/// The detail of every refusal of a user name and password, whatever the cause: the client
/// (which sees it as the MQTT 5 Reason String) is not told whether the user exists.
const BAD_USER_NAME_OR_PASSWORD: &str = "bad user name or password";

/// The base64 of mosquitto's files: standard alphabet, written with padding, read with or
/// without it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_encode_padding(true).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How a password is hashed (`mosquitto_passwd -H`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `$6$`: SHA-512 of the password then the salt (`-H sha512`, mosquitto 1.x).
    Sha512,
    /// `$7$`: PBKDF2-HMAC-SHA512 with this many iterations (`-H sha512-pbkdf2`, mosquitto 2's
    /// default).
    Sha512Pbkdf2 {
        /// PBKDF2 iterations.
        iterations: NonZeroU32,
    },
}

impl Default for Algorithm {
    /// `$7$` with 101 iterations, as `mosquitto_passwd` 2 writes.
    fn default() -> Self {
        Self::Sha512Pbkdf2 { iterations: DEFAULT_ITERATIONS }
    }
}

/// One user's salted password hash, as the file holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    algorithm: Algorithm,
    salt: Vec<u8>,
    hash: [u8; HASH_LEN],
}

impl PasswordHash {
    /// Hashes `password` with a new random salt.
    pub fn generate(password: &[u8], algorithm: Algorithm) -> Result<Self, getrandom::Error> {
        let mut salt = vec![0; SALT_LEN];
        getrandom::fill(&mut salt)?;
        Ok(Self::with_salt(password, salt, algorithm))
    }

    /// Hashes `password` with `salt`.
    pub fn with_salt(password: &[u8], salt: Vec<u8>, algorithm: Algorithm) -> Self {
        let hash = digest(algorithm, password, &salt);
        Self { algorithm, salt, hash }
    }

    /// Whether `password` is the one hashed, compared in constant time. Costs what the
    /// algorithm costs: call it off the runtime's workers.
    pub fn verify(&self, password: &[u8]) -> bool {
        digest(self.algorithm, password, &self.salt).ct_eq(&self.hash).into()
    }

    /// How it was hashed.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// The 64 bytes of `password` under `algorithm` and `salt`.
fn digest(algorithm: Algorithm, password: &[u8], salt: &[u8]) -> [u8; HASH_LEN] {
    match algorithm {
        Algorithm::Sha512 => Sha512::new().chain_update(password).chain_update(salt).finalize().into(),
        Algorithm::Sha512Pbkdf2 { iterations } => {
            let mut out = [0; HASH_LEN];
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations.get(), &mut out);
            out
        }
    }
}

/// Never prints the salt or the hash.
impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHash").field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

/// The hash as the file holds it: `$6$SALT$HASH` or `$7$ITERATIONS$SALT$HASH`.
impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (salt, hash) = (BASE64.encode(&self.salt), BASE64.encode(self.hash));
        match self.algorithm {
            Algorithm::Sha512 => write!(f, "$6${salt}${hash}"),
            Algorithm::Sha512Pbkdf2 { iterations } => write!(f, "$7${iterations}${salt}${hash}"),
        }
    }
}

/// What is wrong with a hash as written. Its message never quotes the hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HashError(&'static str);

impl FromStr for PasswordHash {
    type Err = HashError;

    fn from_str(text: &str) -> Result<Self, HashError> {
        let fields: Vec<&str> = text.split('$').collect();
        let (algorithm, salt, hash) = match fields.as_slice() {
            ["", "6", salt, hash] => (Algorithm::Sha512, salt, hash),
            ["", "7", iterations, salt, hash] => {
                let iterations = iterations
                    .parse::<NonZeroU32>()
                    .map_err(|_| HashError("the $7$ iteration count is not a whole number from 1 up"))?;
                (Algorithm::Sha512Pbkdf2 { iterations }, salt, hash)
            }
            ["", "6" | "7", ..] => return Err(HashError("a $6$ hash has 2 fields after $6$, a $7$ hash 3 after $7$")),
            ["", kind, ..] if !kind.is_empty() => {
                return Err(HashError("unknown hash type: expected $6$ (sha512) or $7$ (sha512-pbkdf2)"))
            }
            _ => {
                return Err(HashError(
                    "not a $6$ or $7$ hash (a plain-text password? `midge passwd -U FILE` hashes them)",
                ))
            }
        };
        let salt = BASE64.decode(salt).map_err(|_| HashError("the salt is not base64"))?;
        if salt.is_empty() {
            return Err(HashError("the salt is empty"));
        }
        let hash = BASE64.decode(hash).map_err(|_| HashError("the hash is not base64"))?;
        let hash = <[u8; HASH_LEN]>::try_from(hash).map_err(|_| HashError("the hash is not 64 bytes long"))?;
        Ok(Self { algorithm, salt, hash })
    }
}

/// A password file, read.
#[derive(Debug, Clone)]
pub struct PasswordFile {
    /// Where it was read from, for logs.
    path: PathBuf,
    /// Each user's hash, shared with the verifications in flight.
    users: HashMap<String, Arc<PasswordHash>>,
}

/// Why a password file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    /// The file cannot be read.
    #[error("cannot read password file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not `USER:HASH` with a hash Midge can check.
    #[error("invalid password file {path}, line {line}: {problem}")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong (never the hash itself).
        problem: String,
    },
}

impl PasswordFile {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, PasswordFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PasswordFileError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and checks a file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, PasswordFileError> {
        let mut users = HashMap::new();
        let mut lines_of = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let invalid = |problem: String| PasswordFileError::Line { path: path.to_owned(), line: number, problem };
            let Some((user, hash)) = split_line(line).map_err(|problem| invalid(problem.to_owned()))? else {
                continue;
            };
            let hash: PasswordHash = hash.parse().map_err(|e: HashError| invalid(format!("user {user:?}: {e}")))?;
            if let Some(first) = lines_of.insert(user.to_owned(), number) {
                return Err(invalid(format!("user {user:?} is already on line {first}")));
            }
            users.insert(user.to_owned(), Arc::new(hash));
        }
        Ok(Self { path: path.to_owned(), users })
    }

    /// Where it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many users it holds.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether it holds no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The hash of `user`, if the file has the user.
    pub fn hash(&self, user: &str) -> Option<&PasswordHash> {
        self.users.get(user).map(|hash| &**hash)
    }
}

/// A line's user name and hash, both trimmed; `None` for a blank line or a `#` comment.
///
/// The user name ends at the first `:` (`mosquitto_passwd` refuses names that contain one).
pub fn split_line(line: &str) -> Result<Option<(&str, &str)>, &'static str> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let Some((user, hash)) = line.split_once(':') else {
        return Err("expected USER:HASH");
    };
    let (user, hash) = (user.trim(), hash.trim());
    if user.is_empty() {
        return Err("the user name is empty");
    }
    if hash.is_empty() {
        return Err("the password hash is empty");
    }
    Ok(Some((user, hash)))
}

/// Checks clients that give a user name against a [`PasswordFile`]; clients without one follow
/// the listener's `allow_anonymous`, as in mosquitto: with both set, anonymous clients get in
/// and clients with a user name must give its password.
#[derive(Debug)]
pub struct PasswordFileAuthenticator {
    /// The users.
    file: PasswordFile,
    /// Whether clients without a user name may connect.
    allow_anonymous: bool,
}

/// What an unknown user's password is verified against, so that refusing an unknown user
/// takes as long as refusing a wrong password (the default algorithm) and the time does not
/// tell who exists.
static UNKNOWN_USER: LazyLock<Arc<PasswordHash>> =
    LazyLock::new(|| Arc::new(PasswordHash::with_salt(b"", b"midge-no-user".to_vec(), Algorithm::default())));

impl PasswordFileAuthenticator {
    /// An authenticator over `file`.
    pub fn new(file: PasswordFile, allow_anonymous: bool) -> Self {
        Self { file, allow_anonymous }
    }
}

impl Authenticator for PasswordFileAuthenticator {
    fn authenticate(&self, credentials: &Credentials<'_>) -> Decision {
        let client_id = credentials.client_id.to_owned();
        let Some(username) = credentials.username else {
            return Decision::Now(if self.allow_anonymous {
                Verdict::Allow(Identity::default())
            } else {
                Verdict::Deny {
                    reason: ReasonCode::NOT_AUTHORIZED,
                    detail: "anonymous clients are not allowed on this listener".into(),
                }
            });
        };
        let Some(password) = credentials.password else {
            debug!(%client_id, username, "no password given with the user name");
            return Decision::Now(bad_user_name_or_password());
        };
        let (known, hash) = match self.file.users.get(username) {
            Some(hash) => (true, Arc::clone(hash)),
            None => (false, Arc::clone(&UNKNOWN_USER)),
        };
        let password = password.to_vec();
        let username: Arc<str> = Arc::from(username);
        Decision::Later(Box::pin(async move {
            let matches = verify_off_workers(hash, password).await;
            match (known, matches) {
                (true, Some(true)) => {
                    debug!(%client_id, username = %username, "password accepted");
                    Verdict::Allow(Identity { username: Some(username), grants: None })
                }
                (true, Some(false)) => {
                    debug!(%client_id, username = %username, "wrong password");
                    bad_user_name_or_password()
                }
                (false, _) => {
                    debug!(%client_id, username = %username, "user not in the password file");
                    bad_user_name_or_password()
                }
                (true, None) => Verdict::Deny {
                    reason: ReasonCode::SERVER_UNAVAILABLE,
                    detail: "the password could not be checked".into(),
                },
            }
        }))
    }
}

/// The refusal of a user name and password.
fn bad_user_name_or_password() -> Verdict {
    Verdict::Deny { reason: ReasonCode::BAD_USER_NAME_OR_PASSWORD, detail: BAD_USER_NAME_OR_PASSWORD.into() }
}

/// Verifies `password` on the blocking pool once one of the [`concurrent_verifications`]
/// permits is free. `None` if the verification did not finish (it panicked, or the runtime is
/// shutting down).
///
/// # Cancel safety
/// Dropped while waiting for a permit, nothing has started. Dropped after, the verification
/// finishes on its thread and then frees its permit.
async fn verify_off_workers(hash: Arc<PasswordHash>, password: Vec<u8>) -> Option<bool> {
    // The semaphore is never closed, so acquiring fails only if it were.
    let permit = verifications().acquire().await.ok()?;
    let verified = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        hash.verify(&password)
    })
    .await;
    match verified {
        Ok(matches) => Some(matches),
        Err(error) => {
            warn!(%error, "a password verification did not finish");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by Debian's `mosquitto_passwd` 2.0.11 (`-c -b FILE alice secret`).
    const ALICE_7: &str =
        "$7$101$njU0aX20BXJjvH6v$XN5+xz2PdJPXTM/KP8+tl5HEgCMCMan7xsQTAFRHurlwtgq29Mim0rWX2RWL2T8H2277mkVNJ5QX+w90I/lpgg==";
    /// `mosquitto_passwd -H sha512 -b FILE bob pw`.
    const BOB_6: &str =
        "$6$6nRy6ee9ysfxjdbr$B3r2E+zI1w17oUuTuQj+MhsGF82PDEQgpc6sfV5Dn0iTYYJpLL0ba3TgAXYGJBEPSh1ZoNSgM+NwTD/hC9P1hw==";
    /// `mosquitto_passwd -c -b -I 1000 FILE carol 'pässwörd with spaces'`.
    const CAROL_7_1000: &str =
        "$7$1000$MwJNoVVhVt+Pn7Yw$BPggDZC96kMCADXSGxOloxYPFzi4Mkj4swuGY1q9HXM+je/CBdo77S/XbwnDGKaqvzGFKQ7F55O8jNKdx+u3qw==";
    /// `mosquitto_passwd -b FILE dave ''`: an empty password.
    const DAVE_7_EMPTY: &str =
        "$7$101$/KCXQGaTfOZyzH6U$Cu7tLnDtVs0Uxtff9sSaM3RWFLwhzQ721nz10gyAl2n0uhBQP25vM8HnphyFXTLDo/qUNhcyggj9zmIJ2bM/rA==";

    fn parse(text: &str) -> Result<PasswordFile, PasswordFileError> {
        PasswordFile::parse(text, Path::new("pw"))
    }

    #[test]
    fn mosquitto_passwd_hashes_verify() {
        for (hash, password, algorithm) in [
            (ALICE_7, "secret", Algorithm::default()),
            (BOB_6, "pw", Algorithm::Sha512),
            (
                CAROL_7_1000,
                "pässwörd with spaces",
                Algorithm::Sha512Pbkdf2 { iterations: NonZeroU32::new(1000).unwrap() },
            ),
            (DAVE_7_EMPTY, "", Algorithm::default()),
        ] {
            let parsed: PasswordHash = hash.parse().unwrap();
            assert_eq!(parsed.algorithm(), algorithm);
            assert!(parsed.verify(password.as_bytes()), "{hash}");
            assert!(!parsed.verify(b"wrong"), "{hash}");
            assert!(!parsed.verify(format!("{password} ").as_bytes()), "{hash}");
            assert_eq!(parsed.to_string(), hash, "written back as read");
        }
    }

    #[test]
    fn generated_hashes_have_mosquittos_shape_and_verify() {
        let pbkdf2 = PasswordHash::generate(b"s3cret", Algorithm::default()).unwrap();
        let text = pbkdf2.to_string();
        let fields: Vec<&str> = text.split('$').collect();
        assert_eq!((fields[1], fields[2], fields[3].len(), fields[4].len()), ("7", "101", 16, 88), "{text}");
        assert!(text.parse::<PasswordHash>().unwrap().verify(b"s3cret"));
        let sha512 = PasswordHash::generate(b"s3cret", Algorithm::Sha512).unwrap().to_string();
        let fields: Vec<&str> = sha512.split('$').collect();
        assert_eq!((fields[1], fields[2].len(), fields[3].len()), ("6", 16, 88), "{sha512}");
        assert!(sha512.parse::<PasswordHash>().unwrap().verify(b"s3cret"));
        let again = PasswordHash::generate(b"s3cret", Algorithm::default()).unwrap();
        assert_ne!(again.to_string(), text, "a new salt each time");
    }

    #[test]
    fn comments_blank_lines_and_blanks_are_skipped() {
        let text = format!("# users\n\n   \nalice:{ALICE_7}\r\n  # indented comment\n bob : {BOB_6} \n");
        let file = parse(&text).unwrap();
        assert_eq!(file.len(), 2);
        assert!(file.hash("alice").unwrap().verify(b"secret"));
        assert!(file.hash("bob").unwrap().verify(b"pw"));
        assert!(file.hash("carol").is_none());
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn malformed_lines_are_errors_naming_file_and_line_but_not_the_hash() {
        let cases: &[(&str, usize, &str)] = &[
            ("alice", 1, "expected USER:HASH"),
            ("# c\n:$6$abc$def", 2, "the user name is empty"),
            ("\n\nalice:", 3, "the password hash is empty"),
            ("alice:secret", 1, "plain-text password"),
            ("alice:$5$c2FsdA==$aGFzaA==", 1, "unknown hash type"),
            ("alice:$6$c2FsdA==", 1, "2 fields after $6$"),
            ("alice:$7$0$c2FsdA==$aGFzaA==", 1, "iteration count"),
            ("alice:$7$many$c2FsdA==$aGFzaA==", 1, "iteration count"),
            ("alice:$6$!!!$aGFzaA==", 1, "the salt is not base64"),
            ("alice:$6$$aGFzaA==", 1, "the salt is empty"),
            ("alice:$6$c2FsdA==$not*base64", 1, "the hash is not base64"),
            ("alice:$6$c2FsdA==$aGFzaA==", 1, "not 64 bytes"),
        ];
        for (text, line, problem) in cases {
            let err = parse(text).unwrap_err();
            let message = err.to_string();
            assert!(message.starts_with(&format!("invalid password file pw, line {line}: ")), "{text:?}: {message}");
            assert!(message.contains(problem), "{text:?}: {message}");
            assert!(!message.contains("aGFzaA") && !message.contains("secret"), "{text:?}: {message}");
        }
        let twice = format!("alice:{ALICE_7}\nbob:{BOB_6}\nalice:{BOB_6}\n");
        assert_eq!(
            parse(&twice).unwrap_err().to_string(),
            "invalid password file pw, line 3: user \"alice\" is already on line 1"
        );
    }

    #[test]
    fn an_unreadable_file_names_the_file() {
        let err = PasswordFile::load(Path::new("/nonexistent/pw")).unwrap_err();
        assert_eq!(err.to_string(), "cannot read password file /nonexistent/pw");
        assert!(matches!(err, PasswordFileError::Read { .. }));
    }

    #[test]
    fn debug_output_hides_salt_and_hash() {
        let hash: PasswordHash = ALICE_7.parse().unwrap();
        let text = format!("{hash:?}");
        assert!(!text.contains("njU0") && !text.contains("XN5+"), "{text}");
    }

    /// The compare is `subtle`'s: equal-length byte slices compared without an early exit.
    /// What can be checked here is that only a full match passes, whichever byte differs.
    #[test]
    fn only_a_full_match_verifies() {
        let hash = PasswordHash::with_salt(b"pw", b"salt".to_vec(), Algorithm::Sha512);
        for i in 0..HASH_LEN {
            let mut other = hash.clone();
            other.hash[i] ^= 1;
            assert!(!other.verify(b"pw"), "byte {i}");
        }
        assert!(hash.verify(b"pw"));
    }

    fn credentials<'a>(username: Option<&'a str>, password: Option<&'a [u8]>) -> Credentials<'a> {
        Credentials { client_id: "c1", username, password, peer: "127.0.0.1:1", certificate_subject: None }
    }

    async fn decide(authenticator: &PasswordFileAuthenticator, credentials: Credentials<'_>) -> Verdict {
        match authenticator.authenticate(&credentials) {
            Decision::Now(verdict) => verdict,
            Decision::Later(later) => later.await,
        }
    }

    #[tokio::test]
    async fn verdicts_for_users_passwords_and_anonymous_clients() {
        let file = parse(&format!("alice:{ALICE_7}\nbob:{BOB_6}\n")).unwrap();
        let strict = PasswordFileAuthenticator::new(file.clone(), false);
        let open = PasswordFileAuthenticator::new(file, true);
        let bad = bad_user_name_or_password();
        for authenticator in [&strict, &open] {
            assert_eq!(
                decide(authenticator, credentials(Some("alice"), Some(b"secret"))).await,
                Verdict::Allow(Identity { username: Some(Arc::from("alice")), grants: None })
            );
            assert_eq!(
                decide(authenticator, credentials(Some("bob"), Some(b"pw"))).await,
                Verdict::Allow(Identity { username: Some(Arc::from("bob")), grants: None })
            );
            assert_eq!(decide(authenticator, credentials(Some("alice"), Some(b"pw"))).await, bad);
            assert_eq!(decide(authenticator, credentials(Some("carol"), Some(b"secret"))).await, bad);
            assert_eq!(decide(authenticator, credentials(Some("alice"), None)).await, bad);
        }
        assert!(matches!(strict.authenticate(&credentials(Some("alice"), Some(b"secret"))), Decision::Later(_)));
        assert_eq!(
            decide(&strict, credentials(None, None)).await,
            Verdict::Deny {
                reason: ReasonCode::NOT_AUTHORIZED,
                detail: "anonymous clients are not allowed on this listener".into()
            }
        );
        assert_eq!(decide(&open, credentials(None, None)).await, Verdict::Allow(Identity::default()));
    }

    /// More verifications than permits all finish: the waiting ones get a permit as the
    /// running ones end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_verifications_at_once_all_finish() {
        let file = parse(&format!("alice:{ALICE_7}\n")).unwrap();
        let authenticator = Arc::new(PasswordFileAuthenticator::new(file, false));
        let mut tasks = Vec::new();
        for i in 0..(concurrent_verifications() * 8) {
            let authenticator = Arc::clone(&authenticator);
            tasks.push(tokio::spawn(async move {
                let password: &[u8] = if i % 2 == 0 { b"secret" } else { b"wrong" };
                (i, decide(&authenticator, credentials(Some("alice"), Some(password))).await)
            }));
        }
        for task in tasks {
            let (i, verdict) = tokio::time::timeout(std::time::Duration::from_secs(10), task).await.unwrap().unwrap();
            assert_eq!(matches!(verdict, Verdict::Allow(_)), i % 2 == 0, "{i}: {verdict:?}");
        }
    }
}
