//! The process's own figures, read from `/proc` as Prometheus' client libraries read them (the
//! standard `process_*` metrics): CPU time, memory, file descriptors and start time. Linux only;
//! elsewhere, or when `/proc` cannot be read, the figures are left out.

use std::fs;

/// The process's figures at one moment; each `None` when it could not be read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessSample {
    /// User and system CPU time, in seconds (`process_cpu_seconds_total`).
    pub cpu_seconds: Option<f64>,
    /// Resident set size, in bytes (`process_resident_memory_bytes`).
    pub resident_bytes: Option<u64>,
    /// Virtual memory size, in bytes (`process_virtual_memory_bytes`).
    pub virtual_bytes: Option<u64>,
    /// When the process started, in seconds since the Unix epoch (`process_start_time_seconds`).
    pub start_time_seconds: Option<f64>,
    /// Open file descriptors (`process_open_fds`).
    pub open_fds: Option<u64>,
    /// The soft limit on them (`process_max_fds`); `None` when unlimited.
    pub max_fds: Option<u64>,
}

/// Reads the figures now. Blocking: `/proc/self/fd` has an entry per open socket.
pub fn sample() -> ProcessSample {
    let (ticks, page) = system_units();
    let stat = fs::read_to_string("/proc/self/stat").ok();
    let stat = stat.as_deref().and_then(Stat::parse);
    let boot = fs::read_to_string("/proc/stat").ok().and_then(|text| boot_time(&text));
    ProcessSample {
        cpu_seconds: stat.map(|s| (s.utime + s.stime) as f64 / ticks),
        resident_bytes: stat.map(|s| s.rss_pages.saturating_mul(page)),
        virtual_bytes: stat.map(|s| s.vsize),
        start_time_seconds: stat.zip(boot).map(|(s, boot)| boot as f64 + s.starttime as f64 / ticks),
        open_fds: fs::read_dir("/proc/self/fd").ok().map(|dir| dir.count() as u64),
        max_fds: fs::read_to_string("/proc/self/limits").ok().and_then(|text| max_open_files(&text)),
    }
}

/// Clock ticks per second (the unit of CPU and start times in `/proc`) and the page size.
fn system_units() -> (f64, u64) {
    // SAFETY: sysconf only reads the configuration value asked for.
    let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    let page = if page > 0 { page as u64 } else { 4096 };
    (ticks, page)
}

/// The fields of `/proc/self/stat` used here (proc(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// Field 14, in clock ticks.
    utime: u64,
    /// Field 15, in clock ticks.
    stime: u64,
    /// Field 22: ticks after boot at which the process started.
    starttime: u64,
    /// Field 23, in bytes.
    vsize: u64,
    /// Field 24, in pages.
    rss_pages: u64,
}

impl Stat {
    /// From the file's one line. The command name (field 2) is in parentheses and may hold
    /// spaces and parentheses itself, so the fields are counted from after its last `)`.
    fn parse(text: &str) -> Option<Self> {
        let rest = &text[text.rfind(')')? + 1..];
        // `rest`'s first field is field 3.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            utime: field(14)?,
            stime: field(15)?,
            starttime: field(22)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

/// The boot time, in seconds since the epoch: `/proc/stat`'s `btime` line.
fn boot_time(text: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

/// The soft limit of `/proc/self/limits`' `Max open files` line.
fn max_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 \
                    123456 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 17991 0 0 0 17 1 0 0";
        let stat = Stat::parse(line).unwrap();
        assert_eq!(stat, Stat { utime: 250, stime: 50, starttime: 123456, vsize: 104857600, rss_pages: 2560 });
    }

    #[test]
    fn boot_time_and_the_open_files_limit_are_found_on_their_lines() {
        assert_eq!(boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"), Some(1_700_000_000));
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 1048576              files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(max_open_files("Max open files            unlimited            unlimited            files\n"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let sample = sample();
        assert!(sample.cpu_seconds.is_some() && sample.resident_bytes.unwrap() > 0);
        assert!(sample.open_fds.unwrap() > 0 && sample.start_time_seconds.unwrap() > 1.0e9);
    }
}
