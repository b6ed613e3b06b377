import CoreML
import Foundation

/// Something that holds model memory and can give it back: the pipeline loads, prewarms and unloads
/// its components through this, and in reduceMemory mode holds only one at a time.
public protocol ResourceManaging {
    func loadResources() throws
    func unloadResources()
    func prewarmResources() throws
}

extension ResourceManaging {
    /// Load and unload: Core ML's first load of a model on a device specializes it for the Neural
    /// Engine (seconds to minutes) and caches that; later loads are fast. Memory is given back after.
    public func prewarmResources() throws {
        try loadResources()
        unloadResources()
    }
}

/// One compiled Core ML model (one function of it, for multifunction models), loaded on first use and
/// unloadable at any time; a prediction in flight keeps its own reference, so unloading is always safe.
public final class ManagedMLModel: ResourceManaging {
    public let compiledURL: URL
    public let configuration: MLModelConfiguration
    private var model: MLModel?
    private let lock = NSLock()

    public init(compiledURL: URL, configuration: MLModelConfiguration) {
        self.compiledURL = compiledURL
        self.configuration = configuration
    }

    public func loadResources() throws {
        _ = try loaded()
    }

    public func unloadResources() {
        lock.withLock { model = nil }
    }

    public var isLoaded: Bool { lock.withLock { model != nil } }

    /// The model, loading it if needed.
    public func loaded() throws -> MLModel {
        try lock.withLock {
            if let model { return model }
            do {
                let fresh = try MLModel(contentsOf: compiledURL, configuration: configuration)
                model = fresh
                return fresh
            } catch {
                throw PackageError(compiledURL, "Core ML could not load the model: \(error.localizedDescription)")
            }
        }
    }
}

/// MLComputeUnits by the case names the results formats use ("cpuAndNeuralEngine", ...).
public enum ComputeUnits: String, CaseIterable, Codable {
    case all, cpuOnly, cpuAndGPU, cpuAndNeuralEngine

    public var mlComputeUnits: MLComputeUnits {
        switch self {
        case .all: return .all
        case .cpuOnly: return .cpuOnly
        case .cpuAndGPU: return .cpuAndGPU
        case .cpuAndNeuralEngine: return .cpuAndNeuralEngine
        }
    }
}
