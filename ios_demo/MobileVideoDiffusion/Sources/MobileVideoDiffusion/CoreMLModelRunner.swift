import CoreML
import Foundation

/// One function of one component: a single compiled model, or the chain of models an oversized
/// component was split into (each part takes what it needs from the inputs and earlier outputs).
public final class CoreMLModelRunner: ResourceManaging {
    public let component: String
    public let function: String
    let parts: [ManagedMLModel]

    /// - Parameter multifunction: the component has several functions, so Core ML must be told which
    ///   to load (MLModelConfiguration.functionName, iOS 18 / macOS 15).
    init(component: String, function: String, compiled: [URL], computeUnits: ComputeUnits, multifunction: Bool) throws {
        let configuration = MLModelConfiguration()
        configuration.computeUnits = computeUnits.mlComputeUnits
        configuration.modelDisplayName = "\(component).\(function)"
        if multifunction {
            guard #available(iOS 18.0, macOS 15.0, *) else {
                throw PackageError(compiled[0], "\(component) is a multifunction model (several plans or sizes); "
                    + "loading function \"\(function)\" needs iOS 18 or macOS 15")
            }
            configuration.functionName = function
        }
        self.component = component
        self.function = function
        self.parts = compiled.map { ManagedMLModel(compiledURL: $0, configuration: configuration) }
    }

    public func loadResources() throws {
        for part in parts { try part.loadResources() }
    }

    public func unloadResources() {
        for part in parts { part.unloadResources() }
    }

    /// Runs the model(s); returns every input and output by name. Inputs are converted to the dtype
    /// each model declares (the package's models take float16 and int32).
    func predict(_ inputs: [String: MLMultiArray]) async throws -> [String: MLMultiArray] {
        var features = inputs
        for part in parts {
            let model = try part.loaded()
            var feed: [String: MLFeatureValue] = [:]
            for (name, description) in model.modelDescription.inputDescriptionsByName {
                guard let value = features[name] else {
                    throw PackageError(part.compiledURL, "needs input \"\(name)\", which the pipeline does not have")
                }
                let wanted = description.multiArrayConstraint?.dataType ?? value.dataType
                feed[name] = MLFeatureValue(multiArray: value.dataType == wanted
                    ? value : MLMultiArray(concatenating: [value], axis: 0, dataType: wanted))
            }
            let output: MLFeatureProvider
            do {
                output = try await model.prediction(from: MLDictionaryFeatureProvider(dictionary: feed))
            } catch {
                throw PackageError(part.compiledURL, "prediction of \(component).\(function) failed: \(error.localizedDescription)")
            }
            for name in output.featureNames {
                if let array = output.featureValue(for: name)?.multiArrayValue { features[name] = array }
            }
        }
        return features
    }

    /// One named output as float32 values in C order (strides and float16 handled by Core ML).
    func predictFloats(_ inputs: [String: MLMultiArray], output: String) async throws -> [Float] {
        guard let array = try await predict(inputs)[output] else {
            throw PackageError(parts[parts.count - 1].compiledURL, "has no output \"\(output)\"")
        }
        return MLShapedArray<Float>(converting: array).scalars
    }
}

extension MLMultiArray {
    /// A float32 array of `shape` (converted to the model's dtype when it is fed).
    static func float32(_ values: [Float], shape: [Int]) -> MLMultiArray {
        MLMultiArray(MLShapedArray<Float>(scalars: values, shape: shape))
    }

    static func int32(_ values: [Int], shape: [Int]) -> MLMultiArray {
        MLMultiArray(MLShapedArray<Int32>(scalars: values.map { Int32($0) }, shape: shape))
    }
}
