import AVFoundation
import CoreML
import Foundation
import XCTest
@testable import MobileVideoDiffusion

/// Replays the package's own test vectors (MOBILEPKG): what the Swift side computes itself must match
/// the SDK exactly; what Core ML computes must match the recorded eager outputs.
final class TestVectorTests: XCTestCase {
    func testTokenizerReproducesTheRecordedIds() throws {
        let package = try packageFromEnvironment()
        let vector = try package.testVector(Component.textEncoder)
        let prompt = try XCTUnwrap(vector.prompt, "the text_encoder vector records its prompt")
        let recorded = try package.tensor(try XCTUnwrap(vector.inputs[IO.inputIds])).int64s()
        XCTAssertEqual(try package.tokenizer().encode(prompt).map { Int64($0) }, recorded)
    }

    /// A clip_bpe tokenizer.json records the ids of the SDK's example prompts (case, white space,
    /// contractions, accents, CJK, emoji, numbers, the special tokens' texts, truncation); the byte
    /// tokenizer records none.
    func testTokenizerReproducesItsExamples() throws {
        let package = try packageFromEnvironment()
        let url = try package.url(for: package.manifest.tokenizer.file)
        guard let examples = try TokenizerExamples(contentsOf: url).examples, !examples.isEmpty else {
            throw XCTSkip("\(url.lastPathComponent) records no examples (the byte tokenizer has none)")
        }
        assertReproduces(try package.tokenizer(), examples)
    }

    func testPortableNoiseReproducesTheNoiseVector() throws {
        let package = try packageFromEnvironment()
        guard package.manifest.schemaVersion >= 2 else {
            throw XCTSkip("schema version 1 packages have no portable noise vector")
        }
        XCTAssertEqual(package.manifest.noise?.generator, ContractNames.noiseGenerator)
        let vector = try package.testVector(ContractNames.noiseTestVector)
        let seed = try XCTUnwrap(vector.seed, "the noise vector records its seed")
        let recorded = try XCTUnwrap(vector.outputs.values.first, "the noise vector has one output")
        XCTAssertEqual(recorded.shape, package.sizes[0].latentShape)
        let noise = PortableNoise.normal(seed: seed, count: recorded.shape.reduce(1, *))
        XCTAssertEqual(noise.map(\.bitPattern), try package.tensor(recorded).float32Bits(), "seed \(seed) differs from mobile_sdk.noise")
    }

    func testPipelineVectorStartsFromTheSeedsNoise() throws {
        let package = try packageFromEnvironment()
        guard package.manifest.schemaVersion >= 2 else {
            throw XCTSkip("schema version 1 recorded torch.randn latents, not the portable noise")
        }
        let vector = try package.testVector("pipeline")
        let seed = try XCTUnwrap(vector.seed, "the pipeline vector records its seed")
        let initial = try package.tensor(try XCTUnwrap(vector.inputs["initial_latents"]))
        XCTAssertEqual(PortableNoise.normal(seed: seed, count: initial.count).map(\.bitPattern), initial.float32Bits())
    }

    /// The manifest's steps are a rectified-flow schedule: t decreases from the first timestep by each
    /// dt and ends at 0, each step's function exists, and the guidance scale is the scheduler's.
    func testStepsFormTheSchedule() throws {
        let package = try packageFromEnvironment()
        let steps = try RectifiedFlowSteps(package: package)
        XCTAssertEqual(steps.entries.count, package.manifest.steps.count)
        var t = try XCTUnwrap(steps.entries.first).timestep
        XCTAssertLessThanOrEqual(t, 1)
        for (i, entry) in steps.entries.enumerated() {
            XCTAssertEqual(entry.index, i)
            XCTAssertEqual(entry.timestep, t, accuracy: 1e-12, "step \(i) does not start where step \(i - 1) ended")
            XCTAssertLessThan(entry.dt, 0)
            XCTAssertNotNil(try package.coreMLComponent(Component.unet).functions[entry.function])
            t += entry.dt
        }
        XCTAssertEqual(t, 0, accuracy: 1e-12, "the steps end at t = \(t), not 0")
        XCTAssertEqual(steps.guidanceScale, package.manifest.scheduler.guidanceScale ?? 1)
    }
}

/// Core ML against the recorded eager PyTorch outputs; needs a Core ML runtime (macOS or a device).
final class CoreMLReplayTests: XCTestCase {
    /// The recorded min_psnr_db is the fp32 ExecuTorch gate (60 dB per component). Core ML runs these
    /// models in float16, for which the SDK's own macOS test (tests/test_coreml.py) gates at 35 dB.
    static let float16GateDB = 35.0

    static func gate(_ vector: TestVector) -> Double {
        min(vector.minPSNRdB ?? float16GateDB, float16GateDB)
    }

    private let cache = CompiledModelCache(directory: FileManager.default.temporaryDirectory.appendingPathComponent("mvd-test-cache"))

    private func pipeline(_ package: MobilePackage) async throws -> VideoPipeline {
        try await VideoPipeline.make(package: package, configuration: PipelineConfiguration(computeUnits: .cpuOnly, cache: cache))
    }

    func testEachComponentMatchesItsRecordedOutputs() async throws {
        let package = try packageFromEnvironment()
        var replayed = 0
        for (name, vector) in package.manifest.testVectors.sorted(by: { $0.key < $1.key }) where ContractNames.components.contains(vector.component) {
            let function = try package.coreMLFunction(component: vector.component, entry: vector.method ?? ContractNames.entrySingle)
            let compiled = try await cache.compiledModels(for: package, component: vector.component)
            let model = try CoreMLModelRunner(component: vector.component, function: function, compiled: compiled,
                                              computeUnits: .cpuOnly, multifunction: try package.coreMLComponent(vector.component).functions.count > 1)
            var inputs: [String: MLMultiArray] = [:]
            for (input, spec) in vector.inputs {
                let tensor = try package.tensor(spec)
                inputs[input] = tensor.dtype.hasPrefix("int")
                    ? MLMultiArray.int32(tensor.int64s().map { Int($0) }, shape: tensor.shape)
                    : MLMultiArray.float32(tensor.floats(), shape: tensor.shape)
            }
            for (output, spec) in vector.outputs {
                let actual = try await model.predictFloats(inputs, output: output)
                let db = psnr(reference: try package.tensor(spec).floats(), actual: actual)
                XCTAssertGreaterThanOrEqual(db, Self.gate(vector), "\(name).\(output): \(db) dB")
            }
            replayed += 1
        }
        XCTAssertGreaterThanOrEqual(replayed, 3, "the package has a vector for every component")
    }

    func testPipelineMatchesTheRecordedGeneration() async throws {
        let package = try packageFromEnvironment()
        let vector = try package.testVector("pipeline")
        let initial = try package.tensor(try XCTUnwrap(vector.inputs["initial_latents"])).floats()
        let result = try await pipeline(package).generate(prompt: try XCTUnwrap(vector.prompt), initialLatents: initial)
        let latents = try package.tensor(try XCTUnwrap(vector.outputs["final_latents"])).floats()
        XCTAssertGreaterThanOrEqual(psnr(reference: latents, actual: result.latents), Self.gate(vector))
        if let frames = vector.outputs["frames"] {
            let recorded = try package.tensor(frames).floats()
            let actual = result.frames.flatMap(\.pixels).map(Float.init)
            XCTAssertGreaterThanOrEqual(psnr(reference: recorded, actual: actual, peak: 255), Self.gate(vector))
        }
        XCTAssertEqual(result.timings.stepsMs.count, package.manifest.steps.count)
    }

    func testProgressHandlerReturningFalseCancels() async throws {
        let package = try packageFromEnvironment()
        let made = try await pipeline(package)
        var calls = 0
        do {
            _ = try await made.generate(prompt: "a red circle moving right", seed: 1) { progress in
                calls += 1
                return progress.stage == .textEncoder
            }
            XCTFail("generation ran to the end although the handler returned false")
        } catch let cancelled as GenerationCancelled {
            XCTAssertEqual(cancelled.afterStep, 1)
            XCTAssertEqual(calls, 2)
        }
    }
}

/// AVAssetWriter with frames as small as the models make.
final class VideoWriterTests: XCTestCase {
    func testWritesAnH264MP4() async throws {
        let frames = (0..<4).map { i in RGBFrame(width: 32, height: 32, pixels: [UInt8](repeating: UInt8(i * 60), count: 32 * 32 * 3)) }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("mvd-\(UUID().uuidString).mp4")
        try await VideoWriter.write(frames, fps: 4, to: url)
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int)
        XCTAssertGreaterThan(size, 0)
        let tracks = try await AVURLAsset(url: url).loadTracks(withMediaType: .video)
        XCTAssertEqual(tracks.count, 1)
        let duration = try await AVURLAsset(url: url).load(.duration)
        XCTAssertEqual(duration.seconds, 1.0, accuracy: 0.01, "4 frames at 4 fps")
    }
}
