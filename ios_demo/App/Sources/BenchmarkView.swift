import MobileVideoDiffusion
import SwiftUI
import UniformTypeIdentifiers

/// Writes benchmark results JSON to Documents (visible in the Files app): whole generations of the
/// loaded package (pipeline-benchmark.v1), or the Core ML micro-models of
/// `mobile-sdk profile coreml-programs` for `mobile-sdk profile ingest`.
@MainActor
struct BenchmarkView: View {
    enum Mode: String, CaseIterable { case pipeline = "Package", microModels = "Micro-models" }

    @Environment(DemoSession.self) private var session
    @State private var mode = Mode.pipeline
    @State private var prompt = "a red circle moving right"
    @State private var seed: UInt64 = 7
    @State private var warmup = 2
    @State private var runs = 10
    @State private var programs: URL?
    @State private var picking = false
    @State private var running: Task<Void, Never>?
    @State private var message = ""

    var body: some View {
        @Bindable var session = session
        NavigationStack {
            Form {
                Picker("Benchmark", selection: $mode) {
                    ForEach(Mode.allCases, id: \.self) { Text($0.rawValue).tag($0) }
                }
                .pickerStyle(.segmented)
                Picker("Compute units", selection: $session.computeUnits) {
                    ForEach(ComputeUnits.allCases, id: \.self) { Text($0.rawValue).tag($0) }
                }
                Stepper("Warm-up: \(warmup)", value: $warmup, in: 0...20)
                Stepper("Timed runs: \(runs)", value: $runs, in: 1...200)
                switch mode {
                case .pipeline:
                    Text(session.selected?.lastPathComponent ?? "Choose a package on the Generate tab")
                    TextField("Prompt", text: $prompt)
                    TextField("Seed", value: $seed, format: .number).keyboardType(.numberPad)
                case .microModels:
                    Button(programs?.lastPathComponent ?? "Choose the coreml-programs folder…") { picking = true }
                }
                if running == nil {
                    Button("Run", action: run).disabled(mode == .pipeline ? session.selected == nil : programs == nil)
                } else {
                    ProgressView()
                    Button("Stop", role: .destructive) { running?.cancel() }
                }
                if !message.isEmpty { Text(message).font(.footnote) }
            }
            .navigationTitle("Benchmark")
            .fileImporter(isPresented: $picking, allowedContentTypes: [.folder]) { picked in
                if case let .success(url) = picked, url.startAccessingSecurityScopedResource() { programs = url }
            }
        }
    }

    private func run() {
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "-")
        let folder = DemoSession.documents.appendingPathComponent("benchmarks")
        let units = session.computeUnits
        let (mode, prompt, seed, warmup, runs, programs, selected) = (mode, prompt, seed, warmup, runs, programs, session.selected)
        let reduceMemory = session.reduceMemory
        message = "Running…"
        running = Task {
            defer { running = nil }
            do {
                let written: URL
                switch mode {
                case .pipeline:
                    let configuration = PipelineConfiguration(computeUnits: units, reduceMemory: reduceMemory,
                                                              cache: try CompiledModelCache.applicationSupport())
                    let result = try await BenchmarkRunner.pipeline(packageAt: selected!, prompt: prompt, seed: seed,
                                                                    warmup: warmup, runs: runs, configuration: configuration)
                    written = try BenchmarkRunner.write(result, to: folder, name: "pipeline-\(units.rawValue)-\(stamp).json")
                case .microModels:
                    let result = try await BenchmarkRunner.coreMLPrograms(folder: programs!, computeUnits: units, warmup: warmup, runs: runs) { done, total in
                        Task { @MainActor in message = "Model \(done) of \(total)" }
                    }
                    written = try BenchmarkRunner.write(result, to: folder, name: "coreml-\(units.rawValue)-\(stamp).json")
                }
                message = "Wrote Documents/benchmarks/\(written.lastPathComponent)"
            } catch is CancellationError {
                message = "Stopped"
            } catch {
                message = error.localizedDescription
            }
        }
    }
}
