import Foundation

/// A raw little-endian tensor from the package (test vectors), read without assuming the host's byte
/// order or Float16 support (Intel Macs have no Swift Float16).
public struct Tensor {
    public let shape: [Int]
    public let dtype: String
    let data: Data

    public var count: Int { shape.reduce(1, *) }

    init(contentsOf url: URL, spec: TensorSpec) throws {
        guard let width = Self.byteWidth[spec.dtype] else {
            throw PackageError(url, "dtype \(spec.dtype) is not one of \(Self.byteWidth.keys.sorted().joined(separator: ", "))")
        }
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw PackageError(url, "cannot read the tensor: \(error.localizedDescription)")
        }
        let expected = spec.shape.reduce(1, *)
        guard data.count == expected * width else {
            throw PackageError(url, "holds \(data.count / width) values, manifest says shape \(spec.shape)")
        }
        self.shape = spec.shape
        self.dtype = spec.dtype
        self.data = data
    }

    /// Bytes per element of each dtype the contract allows (names.json "dtypes").
    static let byteWidth = ["float32": 4, "float16": 2, "int64": 8, "int32": 4, "uint8": 1]

    private func word<T: FixedWidthInteger>(_ index: Int, as type: T.Type) -> T {
        data.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: index * MemoryLayout<T>.size, as: T.self)) }
    }

    /// The values as Float (integers converted; float16 widened exactly).
    public func floats() -> [Float] {
        (0..<count).map { i in
            switch dtype {
            case "float32": return Float(bitPattern: word(i, as: UInt32.self))
            case "float16": return halfToFloat(word(i, as: UInt16.self))
            case "int64": return Float(word(i, as: Int64.self))
            case "int32": return Float(word(i, as: Int32.self))
            default: return Float(word(i, as: UInt8.self))
            }
        }
    }

    /// Integer tensors exactly (token ids).
    public func int64s() -> [Int64] {
        precondition(["int64", "int32", "uint8"].contains(dtype), "int64s of a \(dtype) tensor")
        return (0..<count).map { i in
            switch dtype {
            case "int64": return word(i, as: Int64.self)
            case "int32": return Int64(word(i, as: Int32.self))
            default: return Int64(word(i, as: UInt8.self))
            }
        }
    }

    /// float32 bit patterns, for comparisons that must be exact (the portable noise).
    public func float32Bits() -> [UInt32] {
        precondition(dtype == "float32", "float32Bits of a \(dtype) tensor")
        return (0..<count).map { word($0, as: UInt32.self) }
    }
}

/// IEEE binary16 -> binary32, exact (every half is a float).
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h >> 15) << 31
    let exponent = Int((h >> 10) & 0x1F)
    let mantissa = UInt32(h & 0x3FF)
    if exponent == 0x1F {
        return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    }
    if exponent == 0 {
        let magnitude = Float(mantissa) * 0x1p-24
        return sign == 0 ? magnitude : -magnitude
    }
    return Float(bitPattern: sign | (UInt32(exponent + 112) << 23) | (mantissa << 13))
}

/// Peak signal-to-noise ratio in dB as export/lowering/parity.py computes it: peak = the reference's
/// largest magnitude unless given; identical values give infinity.
public func psnr(reference: [Float], actual: [Float], peak: Double? = nil) -> Double {
    precondition(reference.count == actual.count, "psnr of \(reference.count) and \(actual.count) values")
    var squared = 0.0
    for (r, a) in zip(reference, actual) {
        let d = Double(r) - Double(a)
        squared += d * d
    }
    if squared == 0 { return .infinity }
    let top = peak ?? reference.map { abs(Double($0)) }.max() ?? 0
    guard top > 0 else { return -.infinity }
    return 10 * log10(top * top / (squared / Double(reference.count)))
}
