/**
 * The default seccomp profile of a linux sandbox: allow by default, deny (EPERM) what an unprivileged
 * container must never do — the syscalls Docker's default profile withholds from a container without
 * CAP_SYS_ADMIN & co. A deny list (not Docker's allow list) keeps new, harmless syscalls working; the
 * dangerous families are the ones listed, plus new namespaces, which would hand the sandbox a fresh full
 * capability set in a nested user namespace.
 */

export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: "SCMP_CMP_EQ" | "SCMP_CMP_MASKED_EQ" | "SCMP_CMP_NE";
}

export interface SeccompSyscallRule {
  names: string[];
  action: "SCMP_ACT_ERRNO" | "SCMP_ACT_ALLOW";
  errnoRet?: number;
  args?: SeccompArg[];
}

export interface SeccompProfile {
  defaultAction: "SCMP_ACT_ALLOW";
  architectures: string[];
  syscalls: SeccompSyscallRule[];
}

const EPERM = 1;
const ENOSYS = 38;

/** Denied outright with EPERM. Unknown names on a kernel/libseccomp are skipped by runc. */
export const deniedSyscalls: readonly string[] = [
  // mounts and root changes
  "mount", "umount", "umount2", "pivot_root", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
  // namespaces
  "unshare", "setns",
  // kernel modules and kexec
  "init_module", "finit_module", "delete_module", "create_module", "get_kernel_syms", "query_module", "kexec_load", "kexec_file_load",
  // kernel attack surface
  "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "fanotify_init", "lookup_dcookie",
  // keyrings are not namespaced
  "keyctl", "add_key", "request_key",
  // file handles bypass path checks
  "open_by_handle_at", "name_to_handle_at",
  // host-wide state
  "reboot", "swapon", "swapoff", "acct", "syslog", "quotactl", "quotactl_fd", "vhangup", "nfsservctl", "_sysctl", "sysfs", "ustat", "uselib",
  // clocks
  "settimeofday", "stime", "clock_settime", "clock_settime64", "clock_adjtime", "clock_adjtime64", "adjtimex",
  // raw hardware access
  "iopl", "ioperm", "modify_ldt", "vm86", "vm86old",
  // other processes' memory
  "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp", "pidfd_getfd",
  // NUMA page moves across processes (Docker: CAP_SYS_NICE only)
  "move_pages", "migrate_pages",
];

/**
 * clone flags that create namespaces: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET.
 * (CLONE_NEWTIME shares its bit with the exit signal in clone(); it is reachable only via unshare/clone3.)
 */
const namespaceCloneFlags: readonly number[] = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000];

const AF_VSOCK = 40;

/** The profile as it goes into the OCI spec (linux.seccomp), for x86_64 hosts (with the i386 and x32 ABIs). */
export function defaultSeccompProfile(arch: string = process.arch): SeccompProfile {
  const architectures =
    arch === "arm64" ? ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"] : ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];
  // seccomp cannot test "any of these bits set" in one comparison: one rule per flag, rules are OR'd
  const cloneRules: SeccompSyscallRule[] = namespaceCloneFlags.map((flag) => ({
    names: ["clone"],
    action: "SCMP_ACT_ERRNO",
    errnoRet: EPERM,
    args: [{ index: 0, value: flag, valueTwo: flag, op: "SCMP_CMP_MASKED_EQ" }],
  }));
  return {
    defaultAction: "SCMP_ACT_ALLOW",
    architectures,
    syscalls: [
      { names: [...deniedSyscalls], action: "SCMP_ACT_ERRNO", errnoRet: EPERM },
      ...cloneRules,
      // clone3 passes its flags in memory seccomp cannot read: ENOSYS makes libc fall back to clone
      { names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: ENOSYS },
      {
        names: ["socket"],
        action: "SCMP_ACT_ERRNO",
        errnoRet: EPERM,
        args: [{ index: 0, value: AF_VSOCK, op: "SCMP_CMP_EQ" }],
      },
    ],
  };
}
