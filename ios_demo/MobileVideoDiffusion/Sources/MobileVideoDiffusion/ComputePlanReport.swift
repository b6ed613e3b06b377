import CoreML
import Foundation

/// Which compute units were asked for, and where Core ML plans to run each component's operations.
/// Asking for cpuAndNeuralEngine does not mean the Neural Engine runs everything: ops it cannot run
/// fall back to the CPU, and that is what makes a model slow; MLComputePlan (iOS 17.4) tells which.
public struct ComputeUnitsReport {
    public let requested: ComputeUnits
    /// "component.function" -> preferred device ("cpu", "gpu", "neuralEngine") -> operation count;
    /// nil before iOS 17.4 / macOS 14.4, where Core ML does not say, or when not asked for.
    public let plannedOperations: [String: [String: Int]]?

    /// "unet.main: neuralEngine 120, cpu 3" lines for display.
    public var summary: [String] {
        guard let plannedOperations else { return ["requested \(requested.rawValue) (no device plan: iOS 17.4+, inspectComputePlan)"] }
        return ["requested \(requested.rawValue)"] + plannedOperations.keys.sorted().map { key in
            let devices = plannedOperations[key]!.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }
            return "\(key): \(devices.joined(separator: ", "))"
        }
    }
}

enum ComputePlanReader {
    /// Preferred device per operation of `function` in each compiled model, counted by device.
    @available(iOS 17.4, macOS 14.4, *)
    static func plannedOperations(compiled: [URL], function: String, configuration: MLModelConfiguration) async throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for url in compiled {
            let plan = try await MLComputePlan.load(contentsOf: url, configuration: configuration)
            guard case let .program(program) = plan.modelStructure else { continue }
            guard let body = program.functions[function] else {
                throw PackageError(url, "compute plan has no function \"\(function)\"")
            }
            count(body.block.operations, plan: plan, into: &counts)
        }
        return counts
    }

    @available(iOS 17.4, macOS 14.4, *)
    private static func count(_ operations: [MLModelStructure.Program.Operation], plan: MLComputePlan, into counts: inout [String: Int]) {
        for operation in operations {
            if let usage = plan.deviceUsage(for: operation) {
                counts[deviceName(usage.preferred), default: 0] += 1
            }
            for block in operation.blocks {
                count(block.operations, plan: plan, into: &counts)
            }
        }
    }

    @available(iOS 17.4, macOS 14.4, *)
    private static func deviceName(_ device: MLComputeDevice) -> String {
        switch device {
        case .cpu: return "cpu"
        case .gpu: return "gpu"
        case .neuralEngine: return "neuralEngine"
        @unknown default: return "other"
        }
    }
}
