import AVFoundation
import CoreVideo
import Foundation

/// RGB frames -> H.264 MP4 with AVAssetWriter.
public enum VideoWriter {
    /// Writes `frames` to `url` (replacing it only once the new file is complete). Frames are scaled up
    /// by a whole factor, nearest neighbour, until the shorter side is at least `minimumSide`: the
    /// hardware H.264 encoder rejects frames as small as the models make (64x64), and a blocky
    /// enlargement shows what the model produced without inventing detail.
    public static func write(_ frames: [RGBFrame], fps: Int, to url: URL, minimumSide: Int = 256) async throws {
        guard let first = frames.first else { throw PackageError(url, "no frames to write") }
        let scale = max(1, (minimumSide + min(first.width, first.height) - 1) / min(first.width, first.height))
        // 4:2:0 video needs even sizes.
        let width = (first.width * scale + 1) / 2 * 2
        let height = (first.height * scale + 1) / 2 * 2
        let partial = url.deletingLastPathComponent().appendingPathComponent(".\(UUID().uuidString).mp4")
        defer { try? FileManager.default.removeItem(at: partial) }

        let writer = try AVAssetWriter(outputURL: partial, fileType: .mp4)
        let input = AVAssetWriterInput(mediaType: .video, outputSettings: [
            AVVideoCodecKey: AVVideoCodecType.h264, AVVideoWidthKey: width, AVVideoHeightKey: height,
        ])
        input.expectsMediaDataInRealTime = false
        let adaptor = AVAssetWriterInputPixelBufferAdaptor(assetWriterInput: input, sourcePixelBufferAttributes: [
            kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA,
            kCVPixelBufferWidthKey as String: width, kCVPixelBufferHeightKey as String: height,
        ])
        guard writer.canAdd(input) else { throw PackageError(url, "AVAssetWriter cannot take H.264 at \(width)x\(height)") }
        writer.add(input)
        guard writer.startWriting() else { throw PackageError(url, "cannot start writing: \(writer.error?.localizedDescription ?? "unknown error")") }
        writer.startSession(atSourceTime: .zero)
        for (index, frame) in frames.enumerated() {
            while !input.isReadyForMoreMediaData {
                try await Task.sleep(nanoseconds: 2_000_000)
            }
            let buffer = try pixelBuffer(frame, width: width, height: height, scale: scale, url: url)
            guard adaptor.append(buffer, withPresentationTime: CMTime(value: CMTimeValue(index), timescale: CMTimeScale(fps))) else {
                throw PackageError(url, "cannot append frame \(index): \(writer.error?.localizedDescription ?? "unknown error")")
            }
        }
        input.markAsFinished()
        // End at the last frame's end, not its start, so it is shown for 1/fps like the others.
        writer.endSession(atSourceTime: CMTime(value: CMTimeValue(frames.count), timescale: CMTimeScale(fps)))
        await writer.finishWriting()
        guard writer.status == .completed else {
            throw PackageError(url, "writing failed: \(writer.error?.localizedDescription ?? "status \(writer.status.rawValue)")")
        }
        if FileManager.default.fileExists(atPath: url.path) {
            _ = try FileManager.default.replaceItemAt(url, withItemAt: partial)
        } else {
            try FileManager.default.moveItem(at: partial, to: url)
        }
    }

    /// BGRA buffer of `frame` enlarged `scale` times (edge pixels repeat into the padding to even sizes).
    private static func pixelBuffer(_ frame: RGBFrame, width: Int, height: Int, scale: Int, url: URL) throws -> CVPixelBuffer {
        var made: CVPixelBuffer?
        let status = CVPixelBufferCreate(kCFAllocatorDefault, width, height, kCVPixelFormatType_32BGRA, nil, &made)
        guard status == kCVReturnSuccess, let buffer = made else { throw PackageError(url, "cannot allocate a pixel buffer (\(status))") }
        CVPixelBufferLockBaseAddress(buffer, [])
        defer { CVPixelBufferUnlockBaseAddress(buffer, []) }
        let rowBytes = CVPixelBufferGetBytesPerRow(buffer)
        let base = CVPixelBufferGetBaseAddress(buffer)!.assumingMemoryBound(to: UInt8.self)
        for y in 0..<height {
            let sy = min(y / scale, frame.height - 1)
            for x in 0..<width {
                let sx = min(x / scale, frame.width - 1)
                let source = (sy * frame.width + sx) * 3
                let target = y * rowBytes + x * 4
                base[target] = frame.pixels[source + 2]
                base[target + 1] = frame.pixels[source + 1]
                base[target + 2] = frame.pixels[source]
                base[target + 3] = 255
            }
        }
        return buffer
    }
}
