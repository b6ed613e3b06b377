package com.mobilesdk.demo.video

import java.nio.ByteBuffer

/** One plane of a YUV 4:2:0 picture, laid out as MediaCodec's input Image describes it. */
internal class YuvPlane(val buffer: ByteBuffer, val rowStride: Int, val pixelStride: Int) {
    fun put(x: Int, y: Int, value: Int) {
        buffer.put(y * rowStride + x * pixelStride, value.toByte())
    }
}

/** RGB -> YUV 4:2:0, BT.601 limited range (what players assume for H.264 without colour information). */
internal object Yuv {
    fun y(r: Int, g: Int, b: Int): Int = ((66 * r + 129 * g + 25 * b + 128) shr 8) + 16
    fun u(r: Int, g: Int, b: Int): Int = ((-38 * r - 74 * g + 112 * b + 128) shr 8) + 128
    fun v(r: Int, g: Int, b: Int): Int = ((112 * r - 94 * g - 18 * b + 128) shr 8) + 128

    /**
     * Writes the RGB8 frame at [offset] of [rgb] ([height] x [width] x 3), enlarged [scale] times by
     * repeating pixels, into the planes; chroma is that of each 2x2 block's mean colour.
     */
    fun fill420(yPlane: YuvPlane, uPlane: YuvPlane, vPlane: YuvPlane, rgb: ByteArray, offset: Int, height: Int, width: Int, scale: Int) {
        val w = width * scale
        val h = height * scale
        fun channel(x: Int, y: Int, c: Int): Int = rgb[offset + ((y / scale) * width + x / scale) * 3 + c].toInt() and 0xFF

        for (row in 0 until h) {
            for (col in 0 until w) yPlane.put(col, row, y(channel(col, row, 0), channel(col, row, 1), channel(col, row, 2)))
        }
        for (cy in 0 until h / 2) {
            for (cx in 0 until w / 2) {
                var r = 0
                var g = 0
                var b = 0
                for (dy in 0..1) for (dx in 0..1) {
                    r += channel(2 * cx + dx, 2 * cy + dy, 0)
                    g += channel(2 * cx + dx, 2 * cy + dy, 1)
                    b += channel(2 * cx + dx, 2 * cy + dy, 2)
                }
                r = (r + 2) / 4
                g = (g + 2) / 4
                b = (b + 2) / 4
                uPlane.put(cx, cy, u(r, g, b))
                vPlane.put(cx, cy, v(r, g, b))
            }
        }
    }
}
