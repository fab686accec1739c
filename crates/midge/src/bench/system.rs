//! What the bench reads from the operating system: its own CPU time (getrusage), another
//! process's CPU time and resident memory (/proc/PID/stat and /proc/PID/status), and the open
//! files limit it raises for itself.

use std::io;

/// CPU seconds (user + system) this process has used so far, all threads together.
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given, which is zero-initialised plain data.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// CPU seconds (user + system: fields 14 and 15 of /proc/PID/stat) process `pid` has used.
pub fn process_cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_cpu_ticks(&stat)
        .map(|ticks| ticks as f64 / clock_ticks_per_second())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("unexpected /proc/{pid}/stat")))
}

/// Resident memory of process `pid` in KiB (`VmRSS` of /proc/PID/status).
pub fn process_rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_rss_kib(&status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no VmRSS in /proc/{pid}/status")))
}

/// The open files limit after raising the soft limit to the hard one: how many sockets the
/// bench may hold.
pub use midge_server::gate::raise_open_files_limit;

/// Lets the calling thread's sleeps end within microseconds of their deadline instead of the
/// default 50 µs slack; the paced publisher of `latency` sleeps between messages.
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer and affects only the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// utime + stime from the text of /proc/PID/stat. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted after the
/// last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parse_status_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn rss_is_read_from_status() {
        let status = "Name:\tmidge\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t3\n";
        assert_eq!(parse_status_rss_kib(status), Some(5120));
        assert_eq!(parse_status_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn own_process_is_measurable() {
        let pid = std::process::id();
        assert!(process_rss_kib(pid).unwrap() > 0);
        assert!(process_cpu_seconds(pid).unwrap() >= 0.0);
        assert!(own_cpu_seconds() >= 0.0);
        assert!(raise_open_files_limit() >= 64);
    }
}
