import AVKit
import MobileVideoDiffusion
import SwiftUI
import UniformTypeIdentifiers

/// Prompt and seed in, video out: progress, cancel, playback, and what each stage cost on which units.
@MainActor
struct GenerateView: View {
    @Environment(DemoSession.self) private var session
    @State private var prompt = "a red circle moving right"
    @State private var seed: UInt64 = 7
    @State private var fraction = 0.0
    @State private var task: Task<Void, Never>?
    @State private var player: AVPlayer?
    @State private var result: GenerationResult?
    @State private var message = ""
    @State private var picking = false

    var body: some View {
        @Bindable var session = session
        NavigationStack {
            Form {
                Section("Package") {
                    Picker("Package", selection: $session.selected) {
                        Text("None").tag(URL?.none)
                        ForEach(session.packages, id: \.self) { Text($0.lastPathComponent).tag(URL?.some($0)) }
                    }
                    Button("Open a package from Files…") { picking = true }
                    Picker("Compute units", selection: $session.computeUnits) {
                        ForEach(ComputeUnits.allCases, id: \.self) { Text($0.rawValue).tag($0) }
                    }
                    Toggle("Reduce memory (one model at a time)", isOn: $session.reduceMemory)
                    Button("Load") { Task { await session.load() } }
                    Text(session.status).font(.footnote).foregroundStyle(.secondary)
                }
                Section("Prompt") {
                    TextField("Prompt", text: $prompt, axis: .vertical)
                    TextField("Seed", value: $seed, format: .number)
                        .keyboardType(.numberPad)
                    if task == nil {
                        Button("Generate", action: generate).disabled(session.pipeline == nil)
                    } else {
                        ProgressView(value: fraction)
                        Button("Cancel", role: .destructive) { task?.cancel() }
                    }
                    if !message.isEmpty { Text(message).font(.footnote) }
                }
                if let player {
                    Section("Video") {
                        VideoPlayer(player: player)
                            .aspectRatio(1, contentMode: .fit)
                            .onAppear { player.play() }
                    }
                }
                if let result {
                    Section("Timings") {
                        row("Text encoder", result.timings.textEncoderMs)
                        ForEach(Array(result.timings.stepsMs.enumerated()), id: \.offset) { row("Step \($0.offset + 1)", $0.element) }
                        row("VAE decoder (\(result.frames.count) frames)", result.timings.vaeDecoderMs)
                        row("Total", result.timings.totalMs)
                    }
                    Section("Compute units") {
                        ForEach(result.computeUnits.summary, id: \.self) { Text($0).font(.footnote.monospaced()) }
                    }
                }
            }
            .navigationTitle("Text to video")
            .fileImporter(isPresented: $picking, allowedContentTypes: [.folder]) { picked in
                if case let .success(url) = picked { session.add(picked: url) }
            }
        }
    }

    private func row(_ title: String, _ ms: Double) -> some View {
        LabeledContent(title, value: String(format: "%.1f ms", ms))
    }

    private func generate() {
        guard let pipeline = session.pipeline else { return }
        fraction = 0
        message = ""
        let (prompt, seed) = (prompt, seed)
        task = Task {
            defer { task = nil }
            do {
                let made = try await pipeline.generate(prompt: prompt, seed: seed) { progress in
                    Task { @MainActor in fraction = progress.fraction }
                    return !Task.isCancelled
                }
                let url = DemoSession.documents.appendingPathComponent("video-seed\(seed).mp4")
                try await VideoWriter.write(made.frames, fps: made.fps, to: url)
                result = made
                player = AVPlayer(url: url)
                message = "Saved \(url.lastPathComponent) to Documents"
            } catch is CancellationError {
                message = "Cancelled"
            } catch let cancelled as GenerationCancelled {
                message = cancelled.localizedDescription
            } catch {
                message = error.localizedDescription
            }
        }
    }
}
