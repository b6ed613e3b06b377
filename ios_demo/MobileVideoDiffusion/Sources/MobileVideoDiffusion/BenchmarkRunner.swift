import CoreML
import Foundation

/// The app's benchmark mode: (a) whole generations from a package, written as pipeline-benchmark.v1;
/// (b) the Core ML micro-models of `mobile-sdk profile coreml-programs`, written as the
/// coreml-benchmark results that `mobile-sdk profile ingest` turns into a measured latency table.
public enum BenchmarkRunner {
    public static let tool = "ios-demo \(LibraryInfo.version)"

    /// Opens the package and loads every model (timed: model_load_time), runs `warmup` generations
    /// untimed, then `runs` timed ones.
    public static func pipeline(packageAt url: URL, prompt: String, seed: UInt64, warmup: Int, runs: Int,
                                configuration: PipelineConfiguration) async throws -> PipelineBenchmarkResult {
        precondition(runs >= 1 && warmup >= 0, "benchmark needs runs >= 1 and warmup >= 0")
        let clock = ContinuousClock()
        let loadStart = clock.now
        let package = try MobilePackage(at: url, verifyChecksums: false)
        var configuration = configuration
        configuration.inspectComputePlan = false
        let pipeline = try await VideoPipeline.make(package: package, configuration: configuration)
        try pipeline.loadResources()
        let loadMs = milliseconds(clock.now - loadStart)
        for _ in 0..<warmup {
            _ = try await pipeline.generate(prompt: prompt, seed: seed)
        }
        var timings: [StageTimings] = []
        for _ in 0..<runs {
            timings.append(try await pipeline.generate(prompt: prompt, seed: seed).timings)
        }
        let totals = timings.map(\.totalMs)
        return PipelineBenchmarkResult(
            tool: tool,
            device: PipelineBenchmarkDevice(model: DeviceInfo.model, soc: DeviceInfo.soc, os: DeviceInfo.os, abi: DeviceInfo.abi,
                                            emulated: DeviceInfo.isSimulator ? true : nil),
            runtime: PipelineBenchmarkRuntime(name: "coreml", version: DeviceInfo.os, computeUnits: configuration.computeUnits.rawValue),
            threads: 0,
            date: isoNow(),
            package: PackageIdentity(name: url.lastPathComponent, model: package.manifest.model.name,
                                     schemaVersion: package.manifest.schemaVersion, manifestSHA256: package.manifestSHA256),
            prompt: prompt, seed: seed, warmup: warmup, runs: runs,
            metrics: PipelineMetrics(modelLoadMs: loadMs, averageMs: Stat(totals).mean, trimmedMeanMs: trimmedMean(totals),
                                     pssMB: nil, peakRSSMB: ProcessMemory.peakRSSMB()),
            stagesMs: StageStats(textEncoder: Stat(timings.map(\.textEncoderMs)), denoise: Stat(timings.map(\.denoiseMs)),
                                 vaeDecoder: Stat(timings.map(\.vaeDecoderMs)), total: Stat(totals)),
            stepsMs: (0..<timings[0].stepsMs.count).map { step in Stat(timings.map { $0.stepsMs[step] }) })
    }

    /// Times every micro-model listed in `folder`/index.json: compile, load with `computeUnits`,
    /// `warmup` untimed predictions, `runs` timed ones (MLModel.prediction wall time) on random inputs.
    public static func coreMLPrograms(folder: URL, computeUnits: ComputeUnits, warmup: Int, runs: Int,
                                      progress: (Int, Int) -> Void = { _, _ in }) async throws -> CoreMLBenchmarkResult {
        let indexURL = folder.appendingPathComponent("index.json")
        let index: MicroModelIndex
        do {
            index = try JSONDecoder().decode(MicroModelIndex.self, from: Data(contentsOf: indexURL))
        } catch {
            throw PackageError(indexURL, "not the index.json of `mobile-sdk profile coreml-programs`: \(error.localizedDescription)")
        }
        let configuration = MLModelConfiguration()
        configuration.computeUnits = computeUnits.mlComputeUnits
        var results: [MicroModelResult] = []
        let files = index.models.keys.sorted()
        for (done, file) in files.enumerated() {
            try Task.checkCancellation()
            guard !file.contains("/"), !file.hasPrefix(".") else {
                throw PackageError(indexURL, "model file \"\(file)\" is not a plain name inside the folder; refusing it")
            }
            let source = folder.appendingPathComponent(file)
            let before = ProcessMemory.footprintBytes() ?? 0
            let compiled = try await MLModel.compileModel(at: source)
            defer { try? FileManager.default.removeItem(at: compiled) }
            let model = try MLModel(contentsOf: compiled, configuration: configuration)
            let feed = try randomInputs(for: model)
            for _ in 0..<warmup {
                _ = try await model.prediction(from: feed)
            }
            var peak = ProcessMemory.footprintBytes() ?? 0
            let clock = ContinuousClock()
            var times: [Double] = []
            for _ in 0..<runs {
                let start = clock.now
                _ = try await model.prediction(from: feed)
                times.append(milliseconds(clock.now - start))
                peak = max(peak, ProcessMemory.footprintBytes() ?? 0)
            }
            results.append(MicroModelResult(signature: index.models[file]!.signature, timesMs: times,
                                            peakMemoryBytes: max(0, peak - before), weightBytes: index.models[file]!.bytes))
            progress(done + 1, files.count)
        }
        return CoreMLBenchmarkResult(
            tool: tool,
            device: CoreMLBenchmarkDevice(model: DeviceInfo.model, machine: DeviceInfo.machine, soc: DeviceInfo.soc, os: DeviceInfo.os),
            runtime: CoreMLBenchmarkRuntime(name: "coreml", version: DeviceInfo.os),
            computeUnits: computeUnits.rawValue, date: isoNow(), preset: index.preset, quantize: index.quantize,
            resolution: index.resolution, warmup: warmup, results: results)
    }

    /// Uniform [0, 1) for float inputs, zeros (the pad token) for integer ones, as profile coreml feeds them.
    private static func randomInputs(for model: MLModel) throws -> MLDictionaryFeatureProvider {
        var feed: [String: MLFeatureValue] = [:]
        for (name, description) in model.modelDescription.inputDescriptionsByName {
            guard let constraint = description.multiArrayConstraint else {
                throw PackageError(path: name, "micro-model input is not a tensor")
            }
            let shape = constraint.shape.map(\.intValue)
            let count = shape.reduce(1, *)
            let array: MLMultiArray = constraint.dataType == .int32
                ? .int32(Array(repeating: 0, count: count), shape: shape)
                : .float32((0..<count).map { _ in Float.random(in: 0..<1) }, shape: shape)
            feed[name] = MLFeatureValue(multiArray: array.dataType == constraint.dataType
                ? array : MLMultiArray(concatenating: [array], axis: 0, dataType: constraint.dataType))
        }
        return try MLDictionaryFeatureProvider(dictionary: feed)
    }

    /// Writes `result` as pretty JSON to `directory`/`name`, atomically.
    @discardableResult
    public static func write<T: Encodable>(_ result: T, to directory: URL, name: String) throws -> URL {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let url = directory.appendingPathComponent(name)
        try encoder.encode(result).write(to: url, options: .atomic)
        return url
    }

    static func isoNow() -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: Date())
    }
}

/// The library's version, written into results as the measuring tool's. (Not named after the module:
/// a type with the module's name hides the module's other types from qualified lookup.)
public enum LibraryInfo {
    public static let version = "0.1.0"
}
