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

/// CPU time of every process on the machine, by pid with its command name,
/// and the machine's own busy and total time, at one moment (clock ticks).
pub struct CpuSnapshot {
    processes: std::collections::HashMap<u32, (String, u64)>,
    machine_busy: u64,
    machine_total: u64,
}

/// Takes a [`CpuSnapshot`].
pub fn cpu_snapshot() -> CpuSnapshot {
    let mut processes = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        // A process may end between the listing and the reads.
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(entry.path().join("comm")),
            std::fs::read_to_string(entry.path().join("stat")),
        ) else {
            continue;
        };
        processes.insert(pid, (comm.trim().to_owned(), ticks_of_stat(&stat)));
    }
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    // user nice system idle iowait irq softirq steal (guest time is
    // already counted in user).
    let times: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|field| field.parse().unwrap())
        .collect();
    let machine_total: u64 = times.iter().sum();
    CpuSnapshot {
        processes,
        machine_busy: machine_total - times[3] - times[4],
        machine_total,
    }
}

/// CPU time used between two snapshots: per label, and the machine's.
pub struct CpuUse {
    /// Clock ticks per label, largest first.
    pub by_label: Vec<(String, u64)>,
    pub machine_busy: u64,
    pub machine_total: u64,
}

impl CpuSnapshot {
    /// What was used since `earlier`, by label: a pid in `labels` under its
    /// label, any other process under its command name. A process started
    /// in between counts from zero; one that ended in between is not seen.
    /// Clock ticks are charged to a process at each tick, so the sum over
    /// processes and the machine's busy time differ by a few ticks.
    pub fn since(&self, earlier: &Self, labels: &[(u32, &str)]) -> CpuUse {
        let mut by_label = std::collections::BTreeMap::<String, u64>::new();
        for (pid, (comm, ticks)) in &self.processes {
            // By pid alone: a kernel worker's name changes with its work.
            let before = earlier.processes.get(pid).map_or(0, |(_, ticks)| *ticks);
            let used = ticks.saturating_sub(before);
            if used == 0 {
                continue;
            }
            let label = labels
                .iter()
                .find(|(labelled, _)| labelled == pid)
                .map_or_else(
                    || {
                        // Kernel workers, whatever they work on, as one.
                        if comm.starts_with("kworker/") {
                            String::from("kworker")
                        } else {
                            comm.clone()
                        }
                    },
                    |(_, label)| (*label).to_owned(),
                );
            *by_label.entry(label).or_default() += used;
        }
        let mut by_label: Vec<(String, u64)> = by_label.into_iter().collect();
        by_label.sort_by_key(|(_, ticks)| std::cmp::Reverse(*ticks));
        CpuUse {
            by_label,
            machine_busy: self.machine_busy - earlier.machine_busy,
            machine_total: self.machine_total - earlier.machine_total,
        }
    }
}
