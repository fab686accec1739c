//! `midge passwd`: mosquitto_passwd 2.0's flags, messages and exit codes, writing the password
//! files that `password_file` (and mosquitto) read.
//!
//! ```text
//! midge passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c | -D] passwordfile username
//! midge passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c] -b passwordfile username password
//! midge passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] -U passwordfile
//! ```
//!
//! The arguments are read as mosquitto_passwd reads them (flags first, in any order, up to the
//! first word that is not one), not with clap, so that the same command lines work and fail
//! the same way. Exit status: 0 on success, 1 on any error, 2 when the two passwords typed
//! differ, as mosquitto_passwd.
//!
//! Where it differs from mosquitto_passwd, it is safer, never incompatible:
//! - The file is replaced atomically (a temporary file beside it, fsynced, then renamed), so a
//!   crash leaves the old file or the new one. An existing file keeps its permissions and, where
//!   allowed (as root), its owner, so a broker that reads it as another user still can; a new
//!   one gets 0666 less the umask, as mosquitto_passwd 2.0 creates it (a broker that drops
//!   privileges, as Debian's mosquitto does, must be able to read it: tighten it with chmod and
//!   chown for that user).
//! - Comments and blank lines are kept (mosquitto_passwd calls a file with them corrupt).
//! - `-U` leaves lines that already hold a `$6$`/`$7$` hash alone instead of hashing the hash,
//!   and honours `-H` and `-I`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::Args;
use midge_server::auth::password_file::{split_line, Algorithm, PasswordHash, DEFAULT_ITERATIONS};

/// Arguments of `midge passwd`: everything after the subcommand, parsed as mosquitto_passwd
/// parses its own.
#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    about = "Manage password files for password_file (like mosquitto_passwd)",
    override_usage = "midge passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c | -D] passwordfile username\n       \
                      midge passwd [-H ...] [-I iterations] [-c] -b passwordfile username password\n       \
                      midge passwd -U passwordfile"
)]
pub struct PasswdArgs {
    /// Flags and operands, as mosquitto_passwd takes them (run `midge passwd` alone for usage).
    #[arg(num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true, value_name = "ARGS")]
    args: Vec<String>,
}

/// mosquitto_passwd's exit status for every error.
const FAILURE: u8 = 1;
/// mosquitto_passwd's exit status when the two passwords typed differ.
const MISMATCH: u8 = 2;
/// The longest user name and password mosquitto_passwd accepts (an MQTT string's limit).
const MAX_LEN: usize = 65535;

/// What to do to the file.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// Write a new file with one user (`-c`).
    Create { username: String, password: Option<String> },
    /// Add the user or change its password.
    Update { username: String, password: Option<String> },
    /// Remove the user (`-D`).
    Delete { username: String },
    /// Hash every plain-text password (`-U`).
    HashPlainText,
}

/// A checked command line.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    file: PathBuf,
    action: Action,
    algorithm: Algorithm,
}

/// Why the command line cannot be used: a message for stderr, or the usage for stdout.
#[derive(Debug, PartialEq, Eq)]
enum ArgsError {
    Message(String),
    Usage,
}

/// Runs `midge passwd`; returns the exit code.
pub fn run(args: PasswdArgs) -> u8 {
    let plan = match plan(&args.args) {
        Ok(plan) => plan,
        Err(ArgsError::Usage) => {
            print_usage();
            return FAILURE;
        }
        Err(ArgsError::Message(message)) => {
            eprintln!("{message}");
            return FAILURE;
        }
    };
    match execute(plan) {
        Ok(()) => 0,
        Err((message, code)) => {
            eprintln!("{message}");
            code
        }
    }
}

fn print_usage() {
    println!(
        "midge passwd is a tool for managing password files for Midge (and mosquitto).\n\n\
         Usage: midge passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c | -D] passwordfile username\n       \
         midge passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c] -b passwordfile username password\n       \
         midge passwd -U passwordfile\n \
         -b : run in batch mode to allow passing passwords on the command line.\n \
         -c : create a new password file. This will overwrite existing files.\n \
         -D : delete the username rather than adding/updating its password.\n \
         -H : specify the hashing algorithm. Defaults to sha512-pbkdf2, which is recommended.\n      \
         Mosquitto 1.6 and earlier defaulted to sha512.\n \
         -I : the number of PBKDF2 iterations (default {DEFAULT_ITERATIONS}).\n \
         -U : update a plain text password file to use hashed passwords.\n\n\
         See docs/security.md for more information.\n"
    );
}

/// Reads the command line as mosquitto_passwd does.
fn plan(args: &[String]) -> Result<Plan, ArgsError> {
    let message = |text: &str| ArgsError::Message(text.to_owned());
    if args.is_empty() {
        return Err(ArgsError::Usage);
    }
    let (mut batch, mut create, mut delete, mut update_file) = (false, false, false, false);
    let mut sha512 = false;
    let mut iterations = DEFAULT_ITERATIONS;
    let mut index = 0;
    while index < args.len() {
        match args[index].as_str() {
            "-H" => {
                let Some(name) = args.get(index + 1) else {
                    return Err(message("Error: -H argument given but not enough other arguments."));
                };
                sha512 = match name.as_str() {
                    "sha512" => true,
                    "sha512-pbkdf2" => false,
                    other => return Err(ArgsError::Message(format!("Error: Unknown hash type '{other}'"))),
                };
                index += 1;
            }
            "-I" => {
                let Some(count) = args.get(index + 1) else {
                    return Err(message("Error: -I argument given but not enough other arguments."));
                };
                iterations = count.trim().parse().map_err(|_| message("Error: Number of iterations must be > 0."))?;
                index += 1;
            }
            "-b" => batch = true,
            "-c" => create = true,
            "-D" => delete = true,
            "-U" => update_file = true,
            _ => break,
        }
        index += 1;
    }
    for (a, b, both) in [
        (create, delete, "-c and -D"),
        (create, update_file, "-c and -U"),
        (delete, update_file, "-D and -U"),
        (delete, batch, "-b and -D"),
    ] {
        if a && b {
            return Err(ArgsError::Message(format!("Error: {both} cannot be used together.")));
        }
    }
    let rest = &args[index..];
    let algorithm = if sha512 { Algorithm::Sha512 } else { Algorithm::Sha512Pbkdf2 { iterations } };
    let plan = |file: &String, action| Plan { file: PathBuf::from(file), action, algorithm };
    let (file, action) = if create {
        match (batch, rest) {
            (true, [file, username, password, ..]) => {
                (file, Action::Create { username: username.clone(), password: Some(password.clone()) })
            }
            (true, _) => {
                return Err(message("Error: -c argument given but password file, username, or password missing."))
            }
            (false, [file, username, ..]) => (file, Action::Create { username: username.clone(), password: None }),
            (false, _) => return Err(message("Error: -c argument given but password file or username missing.")),
        }
    } else if delete {
        match rest {
            [file, username, ..] => (file, Action::Delete { username: username.clone() }),
            _ => return Err(message("Error: -D argument given but password file or username missing.")),
        }
    } else if update_file {
        match rest {
            [file] => (file, Action::HashPlainText),
            _ => return Err(message("Error: -U argument given but password file missing.")),
        }
    } else {
        match (batch, rest) {
            (true, [file, username, password]) => {
                (file, Action::Update { username: username.clone(), password: Some(password.clone()) })
            }
            (false, [file, username]) => (file, Action::Update { username: username.clone(), password: None }),
            _ => return Err(ArgsError::Usage),
        }
    };
    let plan = plan(file, action);
    match &plan.action {
        Action::Create { username, password } | Action::Update { username, password } => {
            check_username(username)?;
            if password.as_ref().is_some_and(|p| p.len() > MAX_LEN) {
                return Err(message("Error: Password must be less than 65536 characters long."));
            }
        }
        Action::Delete { username } => check_username(username)?,
        Action::HashPlainText => {}
    }
    Ok(plan)
}

/// mosquitto_passwd's rules for a user name.
fn check_username(username: &str) -> Result<(), ArgsError> {
    let problem = if username.len() > MAX_LEN {
        "Error: Username must be less than 65536 characters long."
    } else if username.chars().any(char::is_control) {
        "Error: Username must not contain control characters."
    } else if username.contains(':') {
        "Error: Username must not contain the ':' character."
    } else {
        return Ok(());
    };
    Err(ArgsError::Message(problem.to_owned()))
}

/// A failure: the message for stderr and the exit code.
type Failure = (String, u8);

/// Carries out a checked plan.
fn execute(plan: Plan) -> Result<(), Failure> {
    let fail = |message: String| (message, FAILURE);
    let path = resolve(&plan.file).map_err(|e| fail(format!("Error reading password file: {}", strerror(&e))))?;
    if let Action::Create { username, password } = &plan.action {
        let password = match password {
            Some(password) => password.clone(),
            None => ask_password()?,
        };
        let line = hash_line(username, &password, plan.algorithm)?;
        return replace(&path, &line, None).map_err(|e| {
            fail(format!("Error: Unable to open file {} for writing. {}.", path.display(), strerror(&e)))
        });
    }
    let old = fs::read_to_string(&path)
        .map_err(|e| fail(format!("Error: Unable to open password file {}. {}.", path.display(), strerror(&e))))?;
    let new = match &plan.action {
        Action::Create { .. } => unreachable!("handled above"),
        Action::Delete { username } => delete_user(&old, username)?,
        Action::HashPlainText => hash_plain_text(&old, plan.algorithm)?,
        Action::Update { username, password } => {
            check_lines(&old)?;
            let password = match password {
                Some(password) => password.clone(),
                None => ask_password()?,
            };
            update_user(&old, username, &password, plan.algorithm)?
        }
    };
    let metadata = fs::metadata(&path).ok();
    replace(&path, &new, metadata.as_ref())
        .map_err(|e| fail(format!("Error occurred updating password file {}: {}.", path.display(), strerror(&e))))
}

/// The file to write: a symbolic link's target (mosquitto_passwd writes through links too),
/// or the path as given when nothing is there yet.
fn resolve(path: &Path) -> io::Result<PathBuf> {
    match fs::canonicalize(path) {
        Ok(path) => Ok(path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(path.to_owned()),
        Err(error) => Err(error),
    }
}

/// `USER:HASH\n` for a new hash of `password`.
fn hash_line(username: &str, password: &str, algorithm: Algorithm) -> Result<String, Failure> {
    let hash = PasswordHash::generate(password.as_bytes(), algorithm)
        .map_err(|_| ("Error: Unable to hash password.".to_owned(), FAILURE))?;
    Ok(format!("{username}:{hash}\n"))
}

/// Each line of `text` with its number and its user name (`None` for a comment or a blank
/// line), or mosquitto_passwd's error for the first line that is neither.
fn user_lines(text: &str) -> Result<Vec<(&str, Option<&str>)>, Failure> {
    text.split_inclusive('\n')
        .enumerate()
        .map(|(index, line)| match split_line(line) {
            Ok(user) => Ok((line, user.map(|(user, _)| user))),
            Err(_) => Err((format!("Error: Corrupt password file at line {}.", index + 1), FAILURE)),
        })
        .collect()
}

/// Checks every line before asking for a password that could not be saved.
fn check_lines(text: &str) -> Result<(), Failure> {
    user_lines(text).map(drop)
}

/// `text` with every line of `username` replaced by a new hash of `password`, or one added at
/// the end.
fn update_user(text: &str, username: &str, password: &str, algorithm: Algorithm) -> Result<String, Failure> {
    let mut out = String::with_capacity(text.len() + 200);
    let mut found = false;
    for (line, user) in user_lines(text)? {
        if user == Some(username) {
            found = true;
            out.push_str(&hash_line(username, password, algorithm)?);
        } else {
            out.push_str(line);
        }
    }
    if !found {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&hash_line(username, password, algorithm)?);
    }
    Ok(out)
}

/// `text` without the lines of `username`; mosquitto_passwd's warning (and exit 1) if it has
/// none.
fn delete_user(text: &str, username: &str) -> Result<String, Failure> {
    let lines = user_lines(text)?;
    let found = lines.iter().any(|(_, user)| *user == Some(username));
    if !found {
        return Err((format!("Warning: User {username} not found in password file."), FAILURE));
    }
    Ok(lines.into_iter().filter(|(_, user)| *user != Some(username)).map(|(line, _)| line).collect())
}

/// `text` with every plain-text password hashed; hashes already there are kept.
fn hash_plain_text(text: &str, algorithm: Algorithm) -> Result<String, Failure> {
    let mut out = String::with_capacity(text.len() * 4);
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let corrupt = || (format!("Error: Corrupt password file at line {}.", index + 1), FAILURE);
        match split_line(line).map_err(|_| corrupt())? {
            Some((_, hash)) if hash.parse::<PasswordHash>().is_ok() => out.push_str(line),
            Some((user, password)) => out.push_str(&hash_line(user, password, algorithm)?),
            None => out.push_str(line),
        }
    }
    Ok(out)
}

/// Asks for the password twice, without echo when there is a terminal; refuses an empty one
/// and two that differ, with mosquitto_passwd's messages and exit codes.
fn ask_password() -> Result<String, Failure> {
    let first = prompt("Password: ")?;
    if first.is_empty() {
        return Err(("Error: Empty password.".to_owned(), FAILURE));
    }
    let second = prompt("Reenter password: ")?;
    if first != second {
        return Err(("Error: Passwords do not match.".to_owned(), MISMATCH));
    }
    Ok(first)
}

/// One password: from the terminal without echo (rpassword), or, with no terminal (a script,
/// a pipe), the next line of stdin, as mosquitto_passwd reads it.
fn prompt(text: &str) -> Result<String, Failure> {
    let failed = |e: io::Error| (format!("Error: cannot read the password: {}", strerror(&e)), FAILURE);
    if File::open("/dev/tty").is_ok() && io::stdin().is_terminal() {
        return rpassword::prompt_password(text).map_err(failed);
    }
    print!("{text}");
    let _ = io::stdout().flush();
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line).map_err(failed)?;
    println!();
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

/// Replaces `path` with `contents` atomically: a temporary file in the same directory,
/// written and fsynced, renamed over it, and the directory fsynced. `old` is the replaced
/// file's metadata: its permissions are kept, and its owner where the OS allows; without one
/// the file gets 0666 less the umask.
fn replace(path: &Path, contents: &str, old: Option<&fs::Metadata>) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.midge-passwd.{}", std::process::id()));
    let written = (|| {
        // 0600 until the contents are there; then the old file's mode, or the usual one.
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
        match old {
            Some(old) => {
                // Only root may give a file away; anyone else keeps it as theirs.
                let _ = std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()));
                file.set_permissions(fs::Permissions::from_mode(old.permissions().mode()))?;
            }
            None => file.set_permissions(fs::Permissions::from_mode(0o666 & !umask()))?,
        }
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    // The rename is durable once the directory is: best effort, it is done already.
    if let Ok(dir) = File::open(&dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The process's umask (read by setting it, then setting it back: there is no other way).
fn umask() -> u32 {
    // SAFETY: umask(2) cannot fail and touches only the process's file mode mask; it is set
    // back at once. Nothing else in `midge passwd` creates files meanwhile (one thread).
    let mask = unsafe { libc::umask(0o022) };
    unsafe { libc::umask(mask) };
    // mode_t is u32 on Linux, u16 on macOS.
    #[allow(clippy::useless_conversion)]
    u32::from(mask)
}

/// The OS's text for an error, without Rust's " (os error N)", as C's strerror prints it.
fn strerror(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn error(line: &str) -> String {
        match plan(&args(line)) {
            Err(ArgsError::Message(message)) => message,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn command_lines_read_as_mosquitto_passwd_reads_them() {
        let pbkdf2 = |n| Algorithm::Sha512Pbkdf2 { iterations: NonZeroU32::new(n).unwrap() };
        let update =
            |password: Option<&str>| Action::Update { username: "u".into(), password: password.map(Into::into) };
        let cases = [
            ("f u", update(None), pbkdf2(101)),
            ("-b f u p", update(Some("p")), pbkdf2(101)),
            ("-H sha512 -b f u p", update(Some("p")), Algorithm::Sha512),
            ("-b -I 1000 -H sha512-pbkdf2 f u p", update(Some("p")), pbkdf2(1000)),
            ("-c f u", Action::Create { username: "u".into(), password: None }, pbkdf2(101)),
            ("-b -c f u p", Action::Create { username: "u".into(), password: Some("p".into()) }, pbkdf2(101)),
            ("-D f u", Action::Delete { username: "u".into() }, pbkdf2(101)),
            ("-U f", Action::HashPlainText, pbkdf2(101)),
        ];
        for (line, action, algorithm) in cases {
            assert_eq!(plan(&args(line)), Ok(Plan { file: "f".into(), action, algorithm }), "{line}");
        }
    }

    #[test]
    fn bad_command_lines_get_mosquitto_passwds_messages() {
        for line in ["", "f", "f u p", "-b f u", "--help"] {
            assert_eq!(plan(&args(line)), Err(ArgsError::Usage), "{line:?}");
        }
        for (line, expected) in [
            ("-H", "Error: -H argument given but not enough other arguments."),
            ("-H md5 f u", "Error: Unknown hash type 'md5'"),
            ("-I", "Error: -I argument given but not enough other arguments."),
            ("-I 0 f u", "Error: Number of iterations must be > 0."),
            ("-I x f u", "Error: Number of iterations must be > 0."),
            ("-c -D f u", "Error: -c and -D cannot be used together."),
            ("-c -U f", "Error: -c and -U cannot be used together."),
            ("-D -U f", "Error: -D and -U cannot be used together."),
            ("-b -D f u", "Error: -b and -D cannot be used together."),
            ("-c -b f u", "Error: -c argument given but password file, username, or password missing."),
            ("-c f", "Error: -c argument given but password file or username missing."),
            ("-D f", "Error: -D argument given but password file or username missing."),
            ("-U", "Error: -U argument given but password file missing."),
            ("-U f g", "Error: -U argument given but password file missing."),
            ("-b f a:b p", "Error: Username must not contain the ':' character."),
        ] {
            assert_eq!(error(line), expected, "{line}");
        }
        assert_eq!(
            plan(&["-b".into(), "f".into(), "a\tb".into(), "p".into()]),
            Err(ArgsError::Message("Error: Username must not contain control characters.".into()))
        );
    }

    #[test]
    fn update_replaces_the_users_line_and_keeps_the_rest() {
        let old = "# users\nalice:$6$x$y\n\nbob:$6$x$y";
        let new = update_user(old, "alice", "pw", Algorithm::Sha512).unwrap();
        let lines: Vec<&str> = new.lines().collect();
        assert_eq!((lines[0], lines[2], lines[3]), ("# users", "", "bob:$6$x$y"));
        let (user, hash) = split_line(lines[1]).unwrap().unwrap();
        assert_eq!(user, "alice");
        assert!(hash.parse::<PasswordHash>().unwrap().verify(b"pw"));
        let added = update_user(old, "carol", "pw", Algorithm::default()).unwrap();
        assert!(added.starts_with(&format!("{old}\ncarol:$7$101$")), "{added}");
        assert_eq!(
            update_user("nonsense\n", "a", "p", Algorithm::Sha512).unwrap_err().0,
            "Error: Corrupt password file at line 1."
        );
    }

    #[test]
    fn delete_removes_the_user_or_warns() {
        assert_eq!(delete_user("a:1\nb:2\n#c\n", "a").unwrap(), "b:2\n#c\n");
        assert_eq!(delete_user("a:1\n", "b").unwrap_err(), ("Warning: User b not found in password file.".into(), 1));
    }

    #[test]
    fn hash_plain_text_hashes_passwords_and_keeps_hashes() {
        let hashed = PasswordHash::generate(b"x", Algorithm::Sha512).unwrap();
        let old = format!("# c\nalice:secret\nbob:{hashed}\ncarol:with:colons\n");
        let new = hash_plain_text(&old, Algorithm::default()).unwrap();
        let lines: Vec<&str> = new.lines().collect();
        assert_eq!(lines[0], "# c");
        assert_eq!(lines[2], format!("bob:{hashed}"));
        for (line, password) in [(lines[1], "secret"), (lines[3], "with:colons")] {
            let (_, hash) = split_line(line).unwrap().unwrap();
            assert!(hash.parse::<PasswordHash>().unwrap().verify(password.as_bytes()), "{line}");
        }
    }

    #[test]
    fn strerror_drops_the_os_error_number() {
        assert_eq!(strerror(&io::Error::from_raw_os_error(2)), "No such file or directory");
    }
}
