import Foundation

/// Another process's CPU time and memory, read from /proc.
public enum ProcessStats {
    /// utime + stime in clock ticks from the text of /proc/PID/stat (fields 14 and 15, counted
    /// after the parenthesised command name, which may itself contain spaces or parentheses).
    public static func cpuTicks(statText: String) -> UInt64? {
        cpuTickSplit(statText: statText).map { $0.user + $0.system }
    }

    /// utime and stime apart (user space, kernel), in clock ticks, from the text of /proc/PID/stat.
    public static func cpuTickSplit(statText: String) -> (user: UInt64, system: UInt64)? {
        guard let close = statText.lastIndex(of: ")") else { return nil }
        let rest = statText[statText.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        // rest[0] is field 3 (state); utime is field 14, stime field 15.
        guard rest.count > 12, let u = UInt64(rest[11]), let s = UInt64(rest[12]) else { return nil }
        return (u, s)
    }

    /// `cpuTickSplit` of `pid` (all its threads), nil if unreadable.
    public static func cpuTickSplit(pid: Int32) -> (user: UInt64, system: UInt64)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return nil }
        return cpuTickSplit(statText: text)
    }

    /// VmRSS in KiB from the text of /proc/PID/status.
    public static func residentKiB(statusText: String) -> UInt64? {
        for line in statusText.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2 else { return nil }
            return UInt64(parts[1].trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// CPU seconds (user + system, all threads) of `pid`, nil if unreadable.
    public static func cpuSeconds(pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let ticks = cpuTicks(statText: text) else { return nil }
        return Double(ticks) / ticksPerSecond
    }

    /// Run time in nanoseconds from the text of /proc/PID/task/TID/schedstat (its first field,
    /// the scheduler's sum_exec_runtime).
    public static func runNanoseconds(schedstatText: String) -> UInt64? {
        guard let first = schedstatText.split(separator: " ").first else { return nil }
        return UInt64(first.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Times the thread was put on a CPU, from the text of /proc/PID/task/TID/schedstat (its third
    /// field, the scheduler's pcount): for a thread that sleeps when idle, its wake-ups.
    public static func timesScheduled(schedstatText: String) -> UInt64? {
        let fields = schedstatText.split(separator: " ")
        guard fields.count >= 3 else { return nil }
        return UInt64(fields[2].trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The sum of `timesScheduled` over all of `pid`'s threads, nil if unreadable.
    public static func timesScheduled(pid: Int32) -> UInt64? {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return nil }
        return sumOfSchedstat(pid: pid, tasks: tasks, timesScheduled(schedstatText:))
    }

    /// CPU seconds of all of `pid`'s threads to the nanosecond (schedstat), where /proc/PID/stat
    /// counts in clock ticks (10 ms); falls back to `cpuSeconds` when schedstat is missing.
    public static func preciseCPUSeconds(pid: Int32) -> Double? {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return nil }
        guard let total = sumOfSchedstat(pid: pid, tasks: tasks, runNanoseconds) else { return cpuSeconds(pid: pid) }
        return Double(total) / 1e9
    }

    /// One field of /proc/PID/task/TID/schedstat (read by `field`) summed over `tasks`; nil when
    /// one cannot be read.
    static func sumOfSchedstat(pid: Int32, tasks: [String], _ field: (String) -> UInt64?) -> UInt64? {
        var total: UInt64 = 0
        for t in tasks {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(t)/schedstat", encoding: .utf8),
                  let n = field(text) else { return nil }
            total &+= n
        }
        return total
    }

    public static func residentBytes(pid: Int32) -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let kib = residentKiB(statusText: text) else { return nil }
        return kib * 1024
    }

    /// Open file descriptors of `pid` (entries of /proc/PID/fd), nil if unreadable.
    public static func openFileDescriptors(pid: Int32) -> Int? {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count
    }
}
