/// The denoising schedule exactly as the package fixes it: the app computes nothing but
/// `latents += dt * velocity` (rectified flow, Euler), with the function, timestep and dt per step
/// taken from the manifest, so a distilled model's non-uniform steps need no code here. An imported
/// model's DDIM needs none either: its package has the same scheduler type (`scheduler.source` says
/// DDIM), its steps' timesteps are tau / 1000, and its UNet functions return DDIM's update over dt.
public struct RectifiedFlowSteps {
    public struct Entry {
        public let index: Int
        public let timestep: Double
        public let dt: Double
        /// The UNet's Core ML function for this step (step-aware plans differ per step).
        public let function: String
    }

    public let entries: [Entry]
    /// 1.0: one UNet call per step. Otherwise the empty prompt's velocity is mixed in (classifier-free guidance).
    public let guidanceScale: Double

    /// The steps of `size` (one of `package.sizes`; nil: the default size).
    public init(package: MobilePackage, size: PackageSize? = nil) throws {
        let manifest = package.manifest
        let declared = (size ?? package.sizes[0]).steps
        guard manifest.scheduler.type == ContractNames.schedulerType else {
            throw PackageError(package.root.appendingPathComponent(ContractNames.manifestFile),
                               "scheduler type \"\(manifest.scheduler.type)\" is not supported "
                               + "(this reader implements \"\(ContractNames.schedulerType)\": latents += dt * velocity)")
        }
        let steps = declared.sorted { $0.index < $1.index }
        guard !steps.isEmpty, steps.map(\.index) == Array(0..<steps.count) else {
            throw PackageError(package.root.appendingPathComponent(ContractNames.manifestFile),
                               "steps must be numbered 0..<n, got \(declared.map(\.index))")
        }
        self.entries = try steps.map {
            Entry(index: $0.index, timestep: $0.timestep, dt: $0.dt,
                  function: try package.coreMLFunction(component: Component.unet, entry: $0.unetMethod))
        }
        self.guidanceScale = manifest.scheduler.guidanceScale ?? 1.0
    }

    public var usesGuidance: Bool { guidanceScale != 1.0 }

    /// `latents += Float(dt) * velocity`, in float32 without fused multiply-adds, as PyTorch computes it.
    public static func apply(dt: Double, velocity: [Float], to latents: inout [Float]) {
        precondition(velocity.count == latents.count, "velocity has \(velocity.count) values, latents \(latents.count)")
        let step = Float(dt)
        for i in latents.indices {
            latents[i] = latents[i] + step * velocity[i]
        }
    }

    /// `v_uncond + scale * (v_cond - v_uncond)` in float32 (names.json rules.guidance).
    public static func guided(conditional: [Float], unconditional: [Float], scale: Double) -> [Float] {
        let s = Float(scale)
        return zip(conditional, unconditional).map { c, u in u + s * (c - u) }
    }
}
