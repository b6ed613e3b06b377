import SwiftUI

@main
struct MobileVideoDiffusionApp: App {
    @State private var session = DemoSession()

    var body: some Scene {
        WindowGroup {
            TabView {
                GenerateView()
                    .tabItem { Label("Generate", systemImage: "film") }
                BenchmarkView()
                    .tabItem { Label("Benchmark", systemImage: "stopwatch") }
            }
            .environment(session)
        }
    }
}
