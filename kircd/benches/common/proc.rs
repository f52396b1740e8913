//! What the benchmarks read of a process from `/proc`: memory, threads, CPU
//! time and wake-ups per thread.

/// A numeric field of `/proc/<pid>/<file>` (`VmRSS:` of `status`, say).
pub fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap()
}

/// utime + stime of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    ticks_of_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap())
}

/// utime + stime in the text of a `stat` file of /proc, in clock ticks.
fn ticks_of_stat(stat: &str) -> u64 {
    // The command name may hold spaces; fields count from after its ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// What each thread of `pid` has done so far, summed by thread name.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadActivity {
    pub threads: usize,
    /// Context switches, voluntary and not: each is a wake-up or a
    /// preemption.
    pub switches: u64,
    pub ticks: u64,
    /// Time on a CPU, in nanoseconds (from `schedstat`): at an idle
    /// daemon's per mille, clock ticks come a handful per minute.
    pub cpu_ns: u64,
}

/// [`ThreadActivity`] of `pid`'s threads by name.
pub fn thread_activity(pid: u32) -> std::collections::BTreeMap<String, ThreadActivity> {
    let mut by_name = std::collections::BTreeMap::<String, ThreadActivity>::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let path = task.path();
        // A thread may end between the listing and the reads.
        let (Ok(name), Ok(status), Ok(stat), Ok(schedstat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("status")),
            std::fs::read_to_string(path.join("stat")),
            std::fs::read_to_string(path.join("schedstat")),
        ) else {
            continue;
        };
        let field = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.trim().parse().ok())
                .unwrap_or_default()
        };
        let entry = by_name.entry(name.trim().to_owned()).or_default();
        entry.threads += 1;
        entry.switches += field("voluntary_ctxt_switches:") + field("nonvoluntary_ctxt_switches:");
        entry.ticks += ticks_of_stat(&stat);
        entry.cpu_ns += schedstat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or_default();
    }
    by_name
}
