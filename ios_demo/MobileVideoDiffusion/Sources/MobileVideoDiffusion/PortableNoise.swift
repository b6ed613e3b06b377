/// The package's seeded noise, generator "splitmix64-boxmuller-v1" (ContractNames.noiseGenerator), bit for
/// bit as mobile_sdk/noise.py specifies it: a seed gives the same float32 latents in Python, C++ and here.
///
/// ln and cos are evaluated with + - * / and sqrt in a fixed order instead of a math library, whose last
/// bits differ between platforms; Swift never fuses a multiply-add unless asked, which keeps the order exact.
public enum PortableNoise {
    static let gamma: UInt64 = 0x9E37_79B9_7F4A_7C15
    static let mix1: UInt64 = 0xBF58_476D_1CE4_E5B9
    static let mix2: UInt64 = 0x94D0_49BB_1331_11EB
    static let sqrtHalf = 0.7071067811865476
    static let ln2 = 0.6931471805599453
    static let halfPi = 1.5707963267948966

    /// 1 / (2k + 1), k = 0...11.
    static let lnCoefficients: [Double] = (0..<12).map { 1.0 / Double(2 * $0 + 1) }
    /// (-1)^k / (2k)!, k = 0...9 (the factorials are exact in Double).
    static let cosCoefficients: [Double] = (0..<10).map { k in (k % 2 == 1 ? -1.0 : 1.0) / Double(factorial(2 * k)) }
    /// (-1)^k / (2k + 1)!, k = 0...9.
    static let sinCoefficients: [Double] = (0..<10).map { k in (k % 2 == 1 ? -1.0 : 1.0) / Double(factorial(2 * k + 1)) }

    static func factorial(_ n: Int) -> UInt64 {
        (0..<n).reduce(UInt64(1)) { $0 * UInt64($1 + 1) }
    }

    /// splitmix64 output `counter` of `seed` (counter 0 is the first output).
    static func draw(seed: UInt64, counter: UInt64) -> UInt64 {
        var z = seed &+ (counter &+ 1) &* gamma
        z = (z ^ (z >> 30)) &* mix1
        z = (z ^ (z >> 27)) &* mix2
        return z ^ (z >> 31)
    }

    /// Natural log for x in (0, 1]: frexp, then the atanh series in s = (m - 1) / (m + 1).
    static func ln(_ x: Double) -> Double {
        // frexp: x = m * 2^e with m in [0.5, 1); Swift's significand is in [1, 2), so halve it (exact).
        var m = x.significand / 2
        var e = Double(Int(x.exponent) + 1)
        if m < sqrtHalf {
            m = m * 2
            e = e - 1
        }
        let s = (m - 1) / (m + 1)
        let s2 = s * s
        var p = lnCoefficients[11]
        for k in stride(from: 10, through: 0, by: -1) {
            p = p * s2 + lnCoefficients[k]
        }
        return e * ln2 + 2 * s * p
    }

    /// cos(2 pi u) for u in [0, 1): reduce to a quarter turn, then Taylor polynomials for cos and sin.
    static func cosTurns(_ u: Double) -> Double {
        let t = u * 4
        let n = (t + 0.5).rounded(.down)
        let a = (t - n) * halfPi
        let a2 = a * a
        var c = cosCoefficients[9]
        var s = sinCoefficients[9]
        for k in stride(from: 8, through: 0, by: -1) {
            c = c * a2 + cosCoefficients[k]
            s = s * a2 + sinCoefficients[k]
        }
        s = a * s
        switch Int(n) % 4 {
        case 0: return c
        case 1: return -s
        case 2: return -c
        default: return s
        }
    }

    /// Value `index` (C order over the latent shape) of the stream for `seed`.
    static func value(seed: UInt64, index: UInt64) -> Float {
        let a = draw(seed: seed, counter: index &* 2)
        let b = draw(seed: seed, counter: index &* 2 &+ 1)
        let u1 = Double((a >> 11) + 1) * 0x1p-53
        let u2 = Double(b >> 11) * 0x1p-53
        let z = (-2 * ln(u1)).squareRoot() * cosTurns(u2)
        return Float(z)
    }

    /// `count` standard-normal float32 values for `seed`, skipping the first `offset`.
    public static func normal(seed: UInt64, count: Int, offset: UInt64 = 0) -> [Float] {
        (0..<count).map { value(seed: seed, index: offset &+ UInt64($0)) }
    }
}
