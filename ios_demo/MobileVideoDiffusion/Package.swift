// swift-tools-version: 5.9
// The Swift side of the mobile-video-sdk package contract: reads NAME.mobilepkg (Core ML target) and
// runs text -> video on device. Swift 5 language mode: Core ML's types are not Sendable yet.

import PackageDescription

let package = Package(
    name: "MobileVideoDiffusion",
    platforms: [
        .iOS(.v17),
        .macOS(.v14),
    ],
    products: [
        .library(name: "MobileVideoDiffusion", targets: ["MobileVideoDiffusion"]),
    ],
    targets: [
        .target(name: "MobileVideoDiffusion"),
        // Fixtures/: a tokenizer.json written by the Python SDK (tests/test_ios_demo.py keeps it current).
        .testTarget(name: "MobileVideoDiffusionTests", dependencies: ["MobileVideoDiffusion"], resources: [.copy("Fixtures")]),
    ]
)
