import CURing
import Glibc

/// Whether this process can use io_uring the way the relay needs, and if not, why and what to do.
public enum IOUringProbe {
    public enum Outcome: Sendable, Equatable {
        case available
        /// A message naming the cause and the fix.
        case unavailable(String)
    }

    public static func run() -> Outcome {
        var stage: Int32 = 0, opcode: Int32 = 0
        let rc = cu_probe(&stage, &opcode)
        if rc == 0 { return .available }
        return .unavailable(explain(errno: -rc, stage: stage, opcode: opcode, disabledSetting: readDisabledSetting()))
    }

    /// The value of sysctl kernel.io_uring_disabled (nil where the kernel has no such setting).
    static func readDisabledSetting() -> Int? {
        let fd = Glibc.open("/proc/sys/kernel/io_uring_disabled", O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var bytes = [UInt8](repeating: 0, count: 16)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, 15) }
        guard n > 0 else { return nil }
        let text = String(decoding: bytes[0..<n], as: UTF8.self).filter { $0.isNumber }
        return Int(text)
    }

    static func explain(errno e: Int32, stage: Int32, opcode: Int32, disabledSetting: Int?) -> String {
        let prefix = "io_uring is unavailable: "
        switch stage {
        case 1 where e == EPERM:
            if let d = disabledSetting, d != 0 {
                let detail = d == 2 ? "disables io_uring for every process"
                    : "restricts io_uring to members of the group in kernel.io_uring_group"
                return prefix + "sysctl kernel.io_uring_disabled=\(d) \(detail). Fix: run "
                    + "`sysctl -w kernel.io_uring_disabled=0` (or add the relay's user to that group)."
            }
            return prefix + "io_uring_setup was refused with EPERM, most likely by a seccomp profile "
                + "(Docker's and Kubernetes' default profiles block io_uring). Fix: run the container with "
                + "a seccomp profile that allows io_uring_setup, io_uring_enter and io_uring_register "
                + "(e.g. --security-opt seccomp=unconfined for a test)."
        case 1 where e == ENOSYS:
            return prefix + "the kernel has no io_uring (built without CONFIG_IO_URING) or a seccomp "
                + "profile answers ENOSYS. Fix: use Linux ≥ 6.0 with io_uring enabled, or allow the "
                + "io_uring syscalls in the seccomp profile."
        case 1 where e == ENOMEM:
            return prefix + "not enough locked memory for the ring (ENOMEM). Fix: raise RLIMIT_MEMLOCK "
                + "(ulimit -l) or use a kernel ≥ 5.12, which accounts ring memory differently."
        case 2:
            return prefix + "the kernel lacks io_uring opcode \(opcode) (RECVMSG/SENDMSG/POLL/CANCEL). "
                + "Fix: use Linux ≥ 6.0."
        case 3:
            return prefix + "registering a provided buffer ring failed (\(RelayIOError.text(e))); it needs "
                + "Linux ≥ 5.19. Fix: use Linux ≥ 6.0."
        case 4:
            return prefix + "multishot recvmsg failed (\(RelayIOError.text(e))); it needs Linux ≥ 6.0. "
                + "Fix: use Linux ≥ 6.0."
        default:
            return prefix + "\(RelayIOError.text(e)). Fix: use Linux ≥ 6.0 with io_uring enabled and "
                + "allowed by any seccomp profile."
        }
    }
}
