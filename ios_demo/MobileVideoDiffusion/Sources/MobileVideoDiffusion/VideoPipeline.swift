import CoreML
import Foundation

/// How the pipeline loads its models.
public struct PipelineConfiguration {
    public var computeUnits: ComputeUnits
    /// Hold one component in memory at a time (load before use, unload after), as
    /// apple/ml-stable-diffusion's reduceMemory: slower, but fits 4-6 GB phones.
    public var reduceMemory: Bool
    public var cache: CompiledModelCache
    /// Ask Core ML where it plans each operation (MLComputePlan, iOS 17.4): useful to see CPU fallbacks,
    /// but it analyses every model once more, so benchmarks leave it off to keep it out of the load time.
    public var inspectComputePlan: Bool

    public init(computeUnits: ComputeUnits = .cpuAndNeuralEngine, reduceMemory: Bool = false, cache: CompiledModelCache,
                inspectComputePlan: Bool = true) {
        self.computeUnits = computeUnits
        self.reduceMemory = reduceMemory
        self.cache = cache
        self.inspectComputePlan = inspectComputePlan
    }
}

/// Where a generation is; the progress handler sees one after every model call and stops the
/// generation by returning false.
public struct PipelineProgress {
    public enum Stage: Equatable {
        case textEncoder
        case denoising(step: Int, of: Int)
        case decoding(frame: Int, of: Int)
    }

    public let stage: Stage
    /// 0...1 over the whole generation (text encoder, steps, frames).
    public let fraction: Double
}

/// One RGB frame, 8 bits per channel, rows top to bottom, pixels as r, g, b.
public struct RGBFrame {
    public let width: Int
    public let height: Int
    public let pixels: [UInt8]
}

/// Milliseconds per stage of one generation (pipeline-benchmark's stages_ms and steps_ms).
public struct StageTimings {
    public var textEncoderMs = 0.0
    public var stepsMs: [Double] = []
    public var denoiseMs = 0.0
    public var vaeDecoderMs = 0.0
    public var totalMs = 0.0
}

public struct GenerationResult {
    public let frames: [RGBFrame]
    /// Final latents [1, C, T, h, w] in C order.
    public let latents: [Float]
    public let timings: StageTimings
    public let computeUnits: ComputeUnitsReport
    public let fps: Int
}

/// Prompt -> text encoder -> the manifest's rectified-flow steps of the UNet -> the VAE decoder once per
/// frame -> RGB frames, on Core ML. Modelled on apple/ml-stable-diffusion's StableDiffusionPipeline
/// (resources that load lazily and unload, prewarm, reduceMemory, a progress handler that can stop it),
/// extended to video: a UNet function per temporal plan and step, per-frame decoding.
public final class VideoPipeline: ResourceManaging {
    public let package: MobilePackage
    /// The size this pipeline generates at (one of package.sizes).
    public let size: PackageSize
    public let steps: RectifiedFlowSteps
    public let tokenizer: any Tokenizer
    public let configuration: PipelineConfiguration
    public let computeUnits: ComputeUnitsReport
    let textEncoder: CoreMLModelRunner
    /// One runner per UNet function the steps use.
    let unets: [String: CoreMLModelRunner]
    let vaeDecoder: CoreMLModelRunner

    /// Opens nothing heavy: compiles what the cache lacks (first launch only) and prepares the runners;
    /// models load on first use, or all at once with loadResources(). `frames`, `height`, `width` pick one of
    /// the package's sizes (nil: the default size's; a size it lacks throws, naming those it has).
    public static func make(package: MobilePackage, configuration: PipelineConfiguration, frames: Int? = nil,
                            height: Int? = nil, width: Int? = nil) async throws -> VideoPipeline {
        let size = try package.size(frames: frames, height: height, width: width)
        let steps = try RectifiedFlowSteps(package: package, size: size)
        if let noise = package.manifest.noise, noise.generator != ContractNames.noiseGenerator {
            throw PackageError(package.root.appendingPathComponent(ContractNames.manifestFile),
                               "noise generator \"\(noise.generator)\" is not supported (this reader implements \(ContractNames.noiseGenerator))")
        }
        func runner(_ component: String, _ entry: String) async throws -> CoreMLModelRunner {
            let compiled = try await configuration.cache.compiledModels(for: package, component: component)
            let function = try package.coreMLFunction(component: component, entry: entry)
            return try CoreMLModelRunner(component: component, function: function, compiled: compiled,
                                         computeUnits: configuration.computeUnits,
                                         multifunction: try package.coreMLComponent(component).functions.count > 1)
        }
        let textEncoder = try await runner(Component.textEncoder, ContractNames.entrySingle)
        var unets: [String: CoreMLModelRunner] = [:]
        for function in Set(steps.entries.map(\.function)) {
            unets[function] = try await runner(Component.unet, function)
        }
        let vaeDecoder = try await runner(Component.vaeDecoder, size.vaeDecoderMethod)
        var planned: [String: [String: Int]]?
        if #available(iOS 17.4, macOS 14.4, *), configuration.inspectComputePlan {
            var counts: [String: [String: Int]] = [:]
            for r in [textEncoder, vaeDecoder] + unets.values.sorted(by: { $0.function < $1.function }) {
                counts["\(r.component).\(r.function)"] = try await ComputePlanReader.plannedOperations(
                    compiled: r.parts.map(\.compiledURL), function: r.function, configuration: r.parts[0].configuration)
            }
            planned = counts
        }
        return VideoPipeline(package: package, size: size, steps: steps, tokenizer: try package.tokenizer(), configuration: configuration,
                             computeUnits: ComputeUnitsReport(requested: configuration.computeUnits, plannedOperations: planned),
                             textEncoder: textEncoder, unets: unets, vaeDecoder: vaeDecoder)
    }

    private init(package: MobilePackage, size: PackageSize, steps: RectifiedFlowSteps, tokenizer: any Tokenizer,
                 configuration: PipelineConfiguration, computeUnits: ComputeUnitsReport, textEncoder: CoreMLModelRunner,
                 unets: [String: CoreMLModelRunner], vaeDecoder: CoreMLModelRunner) {
        self.package = package
        self.size = size
        self.steps = steps
        self.tokenizer = tokenizer
        self.configuration = configuration
        self.computeUnits = computeUnits
        self.textEncoder = textEncoder
        self.unets = unets
        self.vaeDecoder = vaeDecoder
    }

    var runners: [CoreMLModelRunner] { [textEncoder] + unets.keys.sorted().map { unets[$0]! } + [vaeDecoder] }

    /// Loads every model; in reduceMemory mode only prewarms them (each loads when its stage runs).
    public func loadResources() throws {
        if configuration.reduceMemory {
            try prewarmResources()
        } else {
            for runner in runners { try runner.loadResources() }
        }
    }

    public func unloadResources() {
        for runner in runners { runner.unloadResources() }
    }

    /// Load and unload each model in turn: the first load specializes it for this device, which Core ML
    /// caches, so the first generation is not slowed by it. Peak memory stays one model.
    public func prewarmResources() throws {
        for runner in runners { try runner.prewarmResources() }
    }

    /// A video for `prompt` from the package's portable noise for `seed` (the same seed gives the same
    /// initial latents as `mobile-sdk generate --package P --seed S`).
    /// - Parameter progress: called after every model call; return false to stop (throws GenerationCancelled).
    ///   Cancelling the Task stops it too (throws CancellationError); both take effect between model calls.
    public func generate(prompt: String, seed: UInt64, progress: (PipelineProgress) -> Bool = { _ in true }) async throws -> GenerationResult {
        let latents = PortableNoise.normal(seed: seed, count: size.latentShape.reduce(1, *))
        return try await generate(prompt: prompt, initialLatents: latents, progress: progress)
    }

    /// The same from given initial latents [1, C, T, h, w] (the tests replay the package's recorded ones).
    public func generate(prompt: String, initialLatents: [Float], progress: (PipelineProgress) -> Bool = { _ in true }) async throws -> GenerationResult {
        let shape = size.latentShape
        precondition(initialLatents.count == shape.reduce(1, *), "initial latents must have shape \(shape)")
        let clock = ContinuousClock()
        let start = clock.now
        var timings = StageTimings()
        let frameCount = shape[2]
        let calls = Double(1 + steps.entries.count + frameCount)

        // Text encoder (twice with guidance: the empty prompt gives the unconditional velocity).
        var stageStart = clock.now
        let hidden = try await encode(prompt)
        var uncondHidden: MLMultiArray?
        if steps.usesGuidance { uncondHidden = try await encode("") }
        if configuration.reduceMemory { textEncoder.unloadResources() }
        timings.textEncoderMs = milliseconds(clock.now - stageStart)
        try check(progress, .textEncoder, done: 1 / calls, step: 0)

        // Denoising: latents += dt * velocity, with the step's UNet function.
        var latents = initialLatents
        let denoiseStart = clock.now
        for (i, entry) in steps.entries.enumerated() {
            stageStart = clock.now
            let unet = unets[entry.function]!
            var velocity = try await unet.predictFloats(unetInputs(latents, entry.timestep, hidden, shape), output: IO.velocity)
            if let uncondHidden {
                let unconditional = try await unet.predictFloats(unetInputs(latents, entry.timestep, uncondHidden, shape), output: IO.velocity)
                velocity = RectifiedFlowSteps.guided(conditional: velocity, unconditional: unconditional, scale: steps.guidanceScale)
            }
            RectifiedFlowSteps.apply(dt: entry.dt, velocity: velocity, to: &latents)
            let isLastUse = !steps.entries[(i + 1)...].contains { $0.function == entry.function }
            if configuration.reduceMemory && isLastUse { unet.unloadResources() }
            timings.stepsMs.append(milliseconds(clock.now - stageStart))
            try check(progress, .denoising(step: i + 1, of: steps.entries.count), done: Double(2 + i) / calls, step: i + 1)
        }
        timings.denoiseMs = milliseconds(clock.now - denoiseStart)

        // VAE decoder, one latent frame [1, C, h, w] per call.
        stageStart = clock.now
        var frames: [RGBFrame] = []
        for t in 0..<frameCount {
            let rgb = try await vaeDecoder.predictFloats([IO.latents: .float32(frame(t, of: latents, shape: shape), shape: [1, shape[1], shape[3], shape[4]])],
                                                         output: IO.rgb)
            frames.append(try toFrame(rgb))
            try check(progress, .decoding(frame: t + 1, of: frameCount), done: Double(2 + steps.entries.count + t) / calls,
                      step: steps.entries.count)
        }
        if configuration.reduceMemory { vaeDecoder.unloadResources() }
        timings.vaeDecoderMs = milliseconds(clock.now - stageStart)
        timings.totalMs = milliseconds(clock.now - start)
        return GenerationResult(frames: frames, latents: latents, timings: timings, computeUnits: computeUnits, fps: package.manifest.video.fps)
    }

    /// Stops the generation when the Task is cancelled or the handler returns false.
    private func check(_ progress: (PipelineProgress) -> Bool, _ stage: PipelineProgress.Stage, done: Double, step: Int) throws {
        try Task.checkCancellation()
        if !progress(PipelineProgress(stage: stage, fraction: done)) {
            throw GenerationCancelled(afterStep: step, of: steps.entries.count)
        }
    }

    /// The prompt's hidden states, copied out of Core ML's output (which the model may reuse, and which
    /// must outlive the text encoder in reduceMemory mode).
    private func encode(_ text: String) async throws -> MLMultiArray {
        let ids = tokenizer.encode(text)
        let hidden = try await textEncoder.predictFloats([IO.inputIds: .int32(ids, shape: [1, ids.count])], output: IO.hiddenStates)
        return .float32(hidden, shape: [1, ids.count, hidden.count / ids.count])  // [1, L, D]
    }

    private func unetInputs(_ latents: [Float], _ timestep: Double, _ hidden: MLMultiArray, _ shape: [Int]) -> [String: MLMultiArray] {
        [IO.sample: .float32(latents, shape: shape), IO.timestep: .float32([Float(timestep)], shape: [1]), IO.encoderHiddenStates: hidden]
    }

    /// Latent frame t of [1, C, T, h, w] as [1, C, h, w].
    private func frame(_ t: Int, of latents: [Float], shape: [Int]) -> [Float] {
        let (channels, frames, plane) = (shape[1], shape[2], shape[3] * shape[4])
        var out: [Float] = []
        out.reserveCapacity(channels * plane)
        for c in 0..<channels {
            let offset = (c * frames + t) * plane
            out.append(contentsOf: latents[offset..<(offset + plane)])
        }
        return out
    }

    /// rgb [1, 3, H, W] in [0, 1] -> 8-bit pixels: round(clamp(x, 0, 1) * 255), half to even (names.json rules.decode).
    private func toFrame(_ rgb: [Float]) throws -> RGBFrame {
        let (height, width) = (size.video.height, size.video.width)
        guard rgb.count == 3 * height * width else {
            throw PackageError(vaeDecoder.parts[0].compiledURL, "decoded \(rgb.count) values, expected 3x\(height)x\(width)")
        }
        let plane = height * width
        var pixels = [UInt8](repeating: 0, count: 3 * plane)
        for p in 0..<plane {
            for c in 0..<3 {
                pixels[p * 3 + c] = UInt8((min(max(rgb[c * plane + p], 0), 1) * 255).rounded(.toNearestOrEven))
            }
        }
        return RGBFrame(width: width, height: height, pixels: pixels)
    }
}

func milliseconds(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return Double(seconds) * 1e3 + Double(attoseconds) * 1e-15
}
