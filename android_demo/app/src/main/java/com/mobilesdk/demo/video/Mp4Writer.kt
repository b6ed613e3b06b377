package com.mobilesdk.demo.video

import android.media.MediaCodec
import android.media.MediaCodecInfo
import android.media.MediaCodecList
import android.media.MediaFormat
import android.media.MediaMuxer
import com.mobilesdk.demo.io.replaceAtomically
import java.io.File
import kotlin.math.ceil
import kotlin.math.roundToInt

/** Writes RGB8 frames as an H.264 MP4 with the platform encoder (MediaCodec) and MediaMuxer. */
object Mp4Writer {
    private const val MIME = MediaFormat.MIMETYPE_VIDEO_AVC
    private const val TIMEOUT_US = 10_000L

    // Encoders commonly refuse tiny frames (the demo model makes 64x64), and a player's smoothing blurs
    // them; frames are enlarged by a whole factor (nearest neighbour) to at least this short side.
    private const val MIN_SIDE = 256

    /** [rgb] is uint8 [frames, height, width, 3]; the file appears at [out] only when complete. */
    fun write(rgb: ByteArray, frames: Int, height: Int, width: Int, fps: Double, out: File) {
        require(frames > 0 && rgb.size == frames * height * width * 3) {
            "got ${rgb.size} bytes of frames, expected $frames x $height x $width x 3"
        }
        val (codecName, format, scale) = encoderFor(height, width, fps)
        out.replaceAtomically { tmp -> encode(codecName, format, scale, rgb, frames, height, width, fps, tmp) }
    }

    private fun encoderFor(height: Int, width: Int, fps: Double): Triple<String, MediaFormat, Int> {
        val codecs = MediaCodecList(MediaCodecList.REGULAR_CODECS)
        val first = maxOf(1, ceil(MIN_SIDE.toDouble() / minOf(height, width)).toInt())
        for (scale in first until first + 8) {
            val w = width * scale
            val h = height * scale
            val format = MediaFormat.createVideoFormat(MIME, w, h).apply {
                setInteger(MediaFormat.KEY_COLOR_FORMAT, MediaCodecInfo.CodecCapabilities.COLOR_FormatYUV420Flexible)
                setInteger(MediaFormat.KEY_BIT_RATE, maxOf(1_000_000, (w * h * fps * 0.5).toInt()))
                setInteger(MediaFormat.KEY_FRAME_RATE, maxOf(1, fps.roundToInt()))
                setInteger(MediaFormat.KEY_I_FRAME_INTERVAL, 1)
            }
            codecs.findEncoderForFormat(format)?.let { return Triple(it, format, scale) }
        }
        throw IllegalStateException("no H.264 encoder on this device accepts ${width}x$height frames (or whole multiples)")
    }

    private fun encode(
        codecName: String, format: MediaFormat, scale: Int,
        rgb: ByteArray, frames: Int, height: Int, width: Int, fps: Double, file: File,
    ) {
        val codec = MediaCodec.createByCodecName(codecName)
        val muxer = MediaMuxer(file.path, MediaMuxer.OutputFormat.MUXER_OUTPUT_MPEG_4)
        try {
            codec.configure(format, null, null, MediaCodec.CONFIGURE_FLAG_ENCODE)
            codec.start()
            val info = MediaCodec.BufferInfo()
            val yuvBytes = width * scale * height * scale * 3 / 2
            var track = -1
            var queued = 0
            var inputDone = false
            var idlePolls = 0
            while (true) {
                if (!inputDone) {
                    val index = codec.dequeueInputBuffer(TIMEOUT_US)
                    if (index >= 0) {
                        val ptsUs = (queued * 1_000_000.0 / fps).toLong()
                        if (queued < frames) {
                            val image = codec.getInputImage(index) ?: error("encoder $codecName gave no input image")
                            val (y, u, v) = image.planes.map { YuvPlane(it.buffer, it.rowStride, it.pixelStride) }
                            Yuv.fill420(y, u, v, rgb, queued * height * width * 3, height, width, scale)
                            codec.queueInputBuffer(index, 0, yuvBytes, ptsUs, 0)
                            queued++
                        } else {
                            codec.queueInputBuffer(index, 0, 0, ptsUs, MediaCodec.BUFFER_FLAG_END_OF_STREAM)
                            inputDone = true
                        }
                    }
                }
                val out = codec.dequeueOutputBuffer(info, TIMEOUT_US)
                if (out == MediaCodec.INFO_OUTPUT_FORMAT_CHANGED) {
                    track = muxer.addTrack(codec.outputFormat)
                    muxer.start()
                } else if (out >= 0) {
                    idlePolls = 0
                    val isConfig = info.flags and MediaCodec.BUFFER_FLAG_CODEC_CONFIG != 0
                    if (!isConfig && info.size > 0) {
                        check(track >= 0) { "encoder $codecName sent data before its format" }
                        val buffer = codec.getOutputBuffer(out) ?: error("encoder $codecName lost an output buffer")
                        buffer.position(info.offset).limit(info.offset + info.size)
                        muxer.writeSampleData(track, buffer, info)
                    }
                    codec.releaseOutputBuffer(out, false)
                    if (info.flags and MediaCodec.BUFFER_FLAG_END_OF_STREAM != 0) break
                } else if (inputDone && ++idlePolls > 1000) {
                    error("encoder $codecName stopped producing output (10 s without a buffer)")
                }
            }
            muxer.stop()
            codec.stop()
        } finally {
            codec.release()
            muxer.release()
        }
    }
}
