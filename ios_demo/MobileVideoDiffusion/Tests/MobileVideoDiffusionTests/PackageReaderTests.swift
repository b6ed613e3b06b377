import Foundation
import XCTest
@testable import MobileVideoDiffusion

/// The reader's rules on scratch packages: no model and no exported package needed.
final class PackageReaderTests: XCTestCase {
    func testVersion1SingleFunctionMapsForwardToMain() throws {
        let root = try scratchPackage(manifest: minimalManifest(version: 1, stepMethod: "forward", functions: [ContractNames.entrySingle]))
        let package = try MobilePackage(at: root)
        XCTAssertEqual(try RectifiedFlowSteps(package: package).entries.map(\.function), [ContractNames.entrySingle])
    }

    func testVersion2UsesTheStepNameAsTheFunction() throws {
        let root = try scratchPackage(manifest: minimalManifest(version: 2, stepMethod: "plan_1", functions: ["plan_0", "plan_1"]))
        let package = try MobilePackage(at: root)
        XCTAssertEqual(try RectifiedFlowSteps(package: package).entries.map(\.function), ["plan_1"])
        // Version 2 has no "forward": a step naming it is an error that names the manifest.
        let bad = try MobilePackage(at: try scratchPackage(manifest: minimalManifest(version: 2, stepMethod: "forward", functions: ["main"])))
        XCTAssertThrowsError(try RectifiedFlowSteps(package: bad)) { error in
            XCTAssertTrue("\(error)".contains(ContractNames.manifestFile), "\(error)")
        }
    }

    /// An imported model's DDIM package has the one scheduler type (its UNet returns DDIM's update over dt);
    /// a manifest asking for another update is refused rather than sampled wrongly.
    func testOnlyTheEulerUpdateIsAccepted() throws {
        var manifest = minimalManifest(version: 2, stepMethod: "main", functions: ["main"])
        manifest["scheduler"] = ["type": ContractNames.schedulerType, "guidance_scale": 7.5, "source": ["type": "ddim"]] as [String: Any]
        XCTAssertEqual(try RectifiedFlowSteps(package: MobilePackage(at: scratchPackage(manifest: manifest))).guidanceScale, 7.5)
        manifest["scheduler"] = ["type": "ddim", "guidance_scale": 1.0] as [String: Any]
        let package = try MobilePackage(at: try scratchPackage(manifest: manifest))
        XCTAssertThrowsError(try RectifiedFlowSteps(package: package)) { error in
            XCTAssertTrue("\(error)".contains("\"ddim\"") && "\(error)".contains(ContractNames.manifestFile), "\(error)")
        }
    }

    func testUnsupportedSchemaVersionIsRefusedNamingTheFile() throws {
        let root = try scratchPackage(manifest: minimalManifest(version: 99, stepMethod: "main", functions: ["main"]))
        XCTAssertThrowsError(try MobilePackage(at: root)) { error in
            XCTAssertTrue("\(error)".contains("schema_version 99"), "\(error)")
            XCTAssertTrue("\(error)".contains(ContractNames.manifestFile), "\(error)")
        }
    }

    func testPathsMustStayInsideThePackage() throws {
        let package = try MobilePackage(at: try scratchPackage(manifest: minimalManifest(version: 2, stepMethod: "main", functions: ["main"])))
        for bad in ["/etc/passwd", "../outside", "coreml/../../outside", "a//b", "./tokenizer.json", "a\\b", ""] {
            XCTAssertThrowsError(try package.url(for: bad), "accepted \(bad)")
        }
        XCTAssertEqual(try package.url(for: "coreml/unet.mlpackage").lastPathComponent, "unet.mlpackage")
    }

    func testUnlistedAndWrongSizedFilesAreRefused() throws {
        let manifest = minimalManifest(version: 2, stepMethod: "main", functions: ["main"],
                                       files: ["tokenizer.json": ["sha256": String(repeating: "0", count: 64), "bytes": 3]])
        let unlisted = try scratchPackage(manifest: manifest, extraFiles: ["tokenizer.json": Data("abc".utf8), "extra.bin": Data([1])])
        XCTAssertThrowsError(try MobilePackage(at: unlisted, verifyChecksums: false)) { error in
            XCTAssertTrue("\(error)".contains("extra.bin"), "\(error)")
        }
        let truncated = try scratchPackage(manifest: manifest, extraFiles: ["tokenizer.json": Data("ab".utf8)])
        XCTAssertThrowsError(try MobilePackage(at: truncated, verifyChecksums: false)) { error in
            XCTAssertTrue("\(error)".contains("tokenizer.json"), "\(error)")
        }
        let corrupted = try scratchPackage(manifest: manifest, extraFiles: ["tokenizer.json": Data("abc".utf8)])
        XCTAssertNoThrow(try MobilePackage(at: corrupted, verifyChecksums: false))
        XCTAssertThrowsError(try MobilePackage(at: corrupted, verifyChecksums: true)) { error in
            XCTAssertTrue("\(error)".contains("sha256"), "\(error)")
        }
    }
}

/// Arithmetic that must agree with the Python SDK to the bit, checked without a package.
final class ArithmeticTests: XCTestCase {
    /// (seed, offset, float32 bit patterns) of mobile_sdk.noise.portable_normal(seed, (4,), offset);
    /// tests/test_ios_demo.py recomputes them, so they cannot drift from the Python generator.
    static let noiseReference: [(seed: UInt64, offset: UInt64, bits: [UInt32])] = [
        (7, 0, [0x3faeb811, 0xbecb0531, 0x3b93685f, 0xbf14a30f]),
        (0, 0, [0xbee7cfdd, 0x4029a387, 0xbf7d1529, 0x3e8142cb]),
        (18446744073709551615, 1000, [0x3ecd19d0, 0xbf894fd6, 0x3f719b91, 0x3fb24c67]),
    ]

    func testPortableNoiseMatchesPythonBitForBit() {
        for reference in Self.noiseReference {
            let values = PortableNoise.normal(seed: reference.seed, count: reference.bits.count, offset: reference.offset)
            XCTAssertEqual(values.map(\.bitPattern), reference.bits, "seed \(reference.seed) offset \(reference.offset)")
        }
    }

    func testLnAndCosAreAccurate() {
        // The series are exact enough that the float32 noise never depends on their last bits' rounding.
        for x in [1e-16, 0.001, 0.3, 0.7071, 0.9999, 1.0] {
            XCTAssertEqual(PortableNoise.ln(x), log(x), accuracy: 1e-14 * max(1, abs(log(x))))
        }
        for u in stride(from: 0.0, to: 1.0, by: 0.0625) {
            XCTAssertEqual(PortableNoise.cosTurns(u), cos(2 * Double.pi * u), accuracy: 1e-14)
        }
    }

    func testTrimmedMeanCutsTenPercentAtEachEnd() {
        XCTAssertEqual(trimmedMean([100, 1, 2, 3, 4, 5, 6, 7, 8, -50]), 4.5)
        XCTAssertEqual(trimmedMean([3, 1]), 2)  // too few runs to cut any
    }

    func testMetricsUseTheContractNames() throws {
        let metrics = PipelineMetrics(modelLoadMs: 1, averageMs: 2, trimmedMeanMs: 3, pssMB: nil, peakRSSMB: 5)
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(metrics)) as! [String: Any]
        XCTAssertEqual(Set(json.keys), Set(ContractNames.metrics))
        XCTAssertTrue(json[ContractNames.metrics[3]] is NSNull, "PSS is null on iOS")
        XCTAssertEqual(json[ContractNames.metrics[0]] as? Double, 1)
    }

    func testStepIsFloat32MultiplyThenAdd() {
        var latents: [Float] = [1, -2, 0.5]
        RectifiedFlowSteps.apply(dt: -0.25, velocity: [4, 8, 0.1], to: &latents)
        XCTAssertEqual(latents, [0, -4, Float(0.5) + Float(-0.25) * Float(0.1)])
        XCTAssertEqual(RectifiedFlowSteps.guided(conditional: [3], unconditional: [1], scale: 2.5), [6])
    }
}
