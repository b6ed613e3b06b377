import Foundation

// The two results documents the app writes. Keys are the formats' own: pipeline-benchmark.v1
// (mobile_sdk/contract/schemas/pipeline-benchmark.v1.schema.json, also written by the C++ engine and
// the Android app) and coreml-benchmark.v1 (read by `mobile-sdk profile ingest`, profiling/ingest.py).
// tests/test_ios_demo.py checks that each type below writes exactly the keys of its `- Contract:` path.

/// - Contract: pipeline-benchmark $
public struct PipelineBenchmarkResult: Encodable {
    public let format = ContractNames.pipelineBenchmarkFormat
    public let version = 1
    public let tool: String
    public let device: PipelineBenchmarkDevice
    public let runtime: PipelineBenchmarkRuntime
    /// Core ML chooses its own threads: 0 says "not set", as the schema allows.
    public let threads: Int
    public let date: String
    public let package: PackageIdentity
    public let prompt: String
    public let seed: UInt64
    public let warmup: Int
    public let runs: Int
    public let metrics: PipelineMetrics
    public let stagesMs: StageStats
    public let stepsMs: [Stat]

    enum CodingKeys: String, CodingKey {
        case format, version, tool, device, runtime, threads, date, package, prompt, seed, warmup, runs, metrics
        case stagesMs = "stages_ms"
        case stepsMs = "steps_ms"
    }
}

/// - Contract: pipeline-benchmark $.device
public struct PipelineBenchmarkDevice: Encodable {
    public let model: String
    public let soc: String
    public let os: String
    public let abi: String
    /// true in the Simulator (its timings are the Mac's, not a phone's); left out on devices.
    public let emulated: Bool?
}

/// - Contract: pipeline-benchmark $.runtime
public struct PipelineBenchmarkRuntime: Encodable {
    public let name: String
    public let version: String
    public let computeUnits: String

    enum CodingKeys: String, CodingKey {
        case name, version
        case computeUnits = "compute_units"
    }
}

/// - Contract: pipeline-benchmark $.package
public struct PackageIdentity: Encodable {
    public let name: String
    public let model: String
    public let schemaVersion: Int
    public let manifestSHA256: String

    enum CodingKeys: String, CodingKey {
        case name, model
        case schemaVersion = "schema_version"
        case manifestSHA256 = "manifest_sha256"
    }
}

/// The metrics of ExecuTorch's benchmark apps. Their names are the contract's (ContractNames.metrics,
/// in names.json order: load, average, trimmed mean, PSS, peak RSS), not literals here.
public struct PipelineMetrics: Encodable {
    public let modelLoadMs: Double
    public let averageMs: Double
    public let trimmedMeanMs: Double
    /// iOS reports no proportional set size: always null.
    public let pssMB: Double?
    public let peakRSSMB: Double?

    struct Key: CodingKey {
        let stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        let values = [modelLoadMs, averageMs, trimmedMeanMs, pssMB, peakRSSMB]
        for (name, value) in zip(ContractNames.metrics, values) {
            if let value {
                try container.encode(value, forKey: Key(stringValue: name))
            } else {
                try container.encodeNil(forKey: Key(stringValue: name))
            }
        }
    }
}

/// - Contract: pipeline-benchmark $.stages_ms
public struct StageStats: Encodable {
    public let textEncoder: Stat
    public let denoise: Stat
    public let vaeDecoder: Stat
    public let total: Stat

    enum CodingKeys: String, CodingKey {
        case denoise, total
        case textEncoder = "text_encoder"
        case vaeDecoder = "vae_decoder"
    }
}

/// Mean, trimmed mean (10 % cut at each end, as profiling/runner.py and the C++ engine) and every run.
/// - Contract: pipeline-benchmark $.steps_ms[*]
/// - Contract: pipeline-benchmark $.stages_ms.*
public struct Stat: Encodable {
    public let mean: Double
    public let trimmean: Double
    public let runs: [Double]

    public init(_ runs: [Double]) {
        precondition(!runs.isEmpty, "a statistic of no runs")
        self.runs = runs
        self.mean = runs.reduce(0, +) / Double(runs.count)
        self.trimmean = trimmedMean(runs)
    }
}

/// The mean after dropping 10 % of the sorted runs at each end (none when that would drop everything).
public func trimmedMean(_ runs: [Double]) -> Double {
    let sorted = runs.sorted()
    let k = Int(Double(sorted.count) * 0.1)
    let kept = sorted.count > 2 * k ? sorted[k..<(sorted.count - k)] : sorted[...]
    return kept.reduce(0, +) / Double(kept.count)
}

/// - Contract: coreml-benchmark $
public struct CoreMLBenchmarkResult: Encodable {
    public let format = ContractNames.coremlBenchmarkFormat
    public let version = 1
    public let tool: String
    public let device: CoreMLBenchmarkDevice
    public let runtime: CoreMLBenchmarkRuntime
    public let computeUnits: String
    public let date: String
    public let preset: String
    public let quantize: String
    public let resolution: Resolution
    public let warmup: Int
    public let results: [MicroModelResult]

    enum CodingKeys: String, CodingKey {
        case format, version, tool, device, runtime, date, preset, quantize, resolution, warmup, results
        case computeUnits = "compute_units"
    }
}

/// - Contract: coreml-benchmark $.device
public struct CoreMLBenchmarkDevice: Encodable {
    public let model: String
    public let machine: String
    public let soc: String
    public let os: String
}

/// - Contract: coreml-benchmark $.runtime
public struct CoreMLBenchmarkRuntime: Encodable {
    public let name: String
    public let version: String
}

/// - Contract: coreml-benchmark $.resolution
/// - Contract: coreml-programs-index $.resolution
public struct Resolution: Codable {
    public let height: Int
    public let width: Int
    public let numFrames: Int

    enum CodingKeys: String, CodingKey {
        case height, width
        case numFrames = "num_frames"
    }
}

/// - Contract: coreml-benchmark $.results[*]
public struct MicroModelResult: Encodable {
    public let signature: String
    public let timesMs: [Double]
    /// Growth of the app's memory footprint from before loading the model to its largest after a run.
    public let peakMemoryBytes: Int
    public let weightBytes: Int

    enum CodingKeys: String, CodingKey {
        case signature
        case timesMs = "times_ms"
        case peakMemoryBytes = "peak_memory_bytes"
        case weightBytes = "weight_bytes"
    }
}

/// index.json of `mobile-sdk profile coreml-programs`: which signature each micro-model measures.
/// - Contract: coreml-programs-index $
public struct MicroModelIndex: Decodable {
    public let preset: String
    public let quantize: String
    public let resolution: Resolution
    public let models: [String: Entry]

    /// - Contract: coreml-programs-index $.models.*
    public struct Entry: Decodable {
        public let signature: String
        public let bytes: Int
    }
}
