import Foundation
import MobileVideoDiffusion
import Observation

/// The app's state shared by both tabs: which package is open and the pipeline made from it.
@Observable
@MainActor
final class DemoSession {
    var packages: [URL] = DemoSession.bundledPackages()
    var selected: URL?
    var computeUnits: ComputeUnits = .cpuAndNeuralEngine
    /// On for phones with 4-6 GB: one model in memory at a time.
    var reduceMemory = ProcessInfo.processInfo.physicalMemory < 7 * 1 << 30
    var status = "Choose a package"
    private(set) var pipeline: VideoPipeline?
    /// A package picked in Files stays readable only while its security scope is held.
    private var scoped: URL?

    /// NAME.mobilepkg folders bundled in the app (folder reference "Packages").
    nonisolated static func bundledPackages() -> [URL] {
        guard let folder = Bundle.main.resourceURL?.appendingPathComponent("Packages"),
              let items = try? FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil) else { return [] }
        return items.filter { $0.lastPathComponent.hasSuffix(ContractNames.packageSuffix) }.sorted { $0.path < $1.path }
    }

    func add(picked url: URL) {
        if let scoped { scoped.stopAccessingSecurityScopedResource() }
        scoped = url.startAccessingSecurityScopedResource() ? url : nil
        if !packages.contains(url) { packages.append(url) }
        selected = url
    }

    /// Opens the selected package and makes its pipeline (the first launch compiles the models, which
    /// the cache keeps), then prewarms it so the first generation is not slowed by specialization.
    func load() async {
        guard let url = selected else { status = "Choose a package"; return }
        pipeline = nil
        status = "Opening \(url.lastPathComponent)…"
        do {
            let package = try MobilePackage(at: url, verifyChecksums: false)
            status = "Compiling (first launch only) and loading…"
            let configuration = PipelineConfiguration(computeUnits: computeUnits, reduceMemory: reduceMemory,
                                                      cache: try CompiledModelCache.applicationSupport())
            let made = try await VideoPipeline.make(package: package, configuration: configuration)
            try made.loadResources()
            pipeline = made
            status = "Ready: \(package.manifest.model.name), \(package.manifest.video.numFrames) frames at "
                + "\(package.manifest.video.width)x\(package.manifest.video.height)"
        } catch {
            status = "\(error.localizedDescription)"
        }
    }

    nonisolated static var documents: URL {
        FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
    }
}
