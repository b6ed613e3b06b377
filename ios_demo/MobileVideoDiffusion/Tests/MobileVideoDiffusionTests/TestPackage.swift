import Foundation
import XCTest
@testable import MobileVideoDiffusion

/// The package the replay tests read: MOBILEPKG=/path/NAME.mobilepkg, made by
/// `mobile-sdk export --target coreml --out NAME.mobilepkg`. Without it those tests skip, saying so.
func packageFromEnvironment() throws -> MobilePackage {
    guard let path = ProcessInfo.processInfo.environment["MOBILEPKG"], !path.isEmpty else {
        throw XCTSkip("set MOBILEPKG to a .mobilepkg folder exported with --target coreml to replay its test vectors")
    }
    return try MobilePackage(at: URL(fileURLWithPath: path))
}

/// A scratch package folder holding `manifest` (and a byte tokenizer), for reader tests that need no model.
func scratchPackage(manifest: [String: Any], extraFiles: [String: Data] = [:]) throws -> URL {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("scratch-\(UUID().uuidString).mobilepkg")
    try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    try JSONSerialization.data(withJSONObject: manifest).write(to: root.appendingPathComponent(ContractNames.manifestFile))
    for (path, data) in extraFiles {
        let url = root.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: url)
    }
    return root
}

/// The smallest manifest the reader accepts, with one Core ML UNet whose functions are `functions`.
func minimalManifest(version: Int, stepMethod: String, functions: [String], files: [String: [String: Any]] = [:]) -> [String: Any] {
    let component: [String: Any] = ["file": "coreml/unet.mlpackage", "functions": Dictionary(uniqueKeysWithValues: functions.map { ($0, [String: Any]()) }),
                                    "inputs": [Any](), "outputs": [Any](), "bytes": 0, "chain": NSNull()]
    return [
        "schema": ContractNames.packageSchema, "schema_version": version, "sdk_version": "0.1.0",
        "model": ["name": "scratch", "preset": NSNull()], "video": ["height": 8, "width": 8, "num_frames": 2, "fps": 4],
        "latent": ["channels": 1, "height": 1, "width": 1], "tokenizer": ["file": ContractNames.tokenizerFile],
        "scheduler": ["type": ContractNames.schedulerType, "guidance_scale": 1.0],
        "steps": [["index": 0, "timestep": 1.0, "dt": -1.0, "unet_method": stepMethod]],
        "targets": ["coreml": ["components": ["unet": component]]], "files": files, "test_vectors": [String: Any](),
    ]
}
