import Foundation
#if canImport(UIKit)
import UIKit
#endif

/// What the results formats record about the machine, from public APIs only.
enum DeviceInfo {
    /// Hardware identifier, e.g. "iPhone17,2" ("arm64" in the Simulator, which reports the Mac's CPU).
    static var machine: String {
        var info = utsname()
        uname(&info)
        return withUnsafeBytes(of: &info.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    static var model: String {
        #if canImport(UIKit)
        return UIDevice.current.model
        #else
        return sysctlString("hw.model") ?? "Mac"
        #endif
    }

    /// "Apple A18 Pro" where the kernel says; "unknown" otherwise.
    static var soc: String { sysctlString("machdep.cpu.brand_string") ?? "unknown" }

    static var os: String {
        let v = ProcessInfo.processInfo.operatingSystemVersion
        #if os(iOS)
        let name = "iOS"
        #else
        let name = "macOS"
        #endif
        return "\(name) \(v.majorVersion).\(v.minorVersion)" + (v.patchVersion > 0 ? ".\(v.patchVersion)" : "")
    }

    static var abi: String {
        #if arch(arm64)
        return "arm64"
        #else
        return "x86_64"
        #endif
    }

    static var isSimulator: Bool {
        #if targetEnvironment(simulator)
        return true
        #else
        return false
        #endif
    }

    private static func sysctlString(_ name: String) -> String? {
        var size = 0
        guard sysctlbyname(name, nil, &size, nil, 0) == 0, size > 0 else { return nil }
        var bytes = [CChar](repeating: 0, count: size)
        guard sysctlbyname(name, &bytes, &size, nil, 0) == 0 else { return nil }
        return String(cString: bytes)
    }
}

/// Memory figures of this process.
enum ProcessMemory {
    /// The footprint iOS enforces its memory limit on (phys_footprint), in bytes.
    static func footprintBytes() -> Int? {
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<natural_t>.size)
        let result = withUnsafeMutablePointer(to: &info) {
            $0.withMemoryRebound(to: integer_t.self, capacity: Int(count)) {
                task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), $0, &count)
            }
        }
        return result == KERN_SUCCESS ? Int(info.phys_footprint) : nil
    }

    /// Peak resident set of the process in MiB (Darwin's ru_maxrss is in bytes).
    static func peakRSSMB() -> Double? {
        var usage = rusage()
        guard getrusage(RUSAGE_SELF, &usage) == 0 else { return nil }
        return Double(usage.ru_maxrss) / 1_048_576
    }
}
