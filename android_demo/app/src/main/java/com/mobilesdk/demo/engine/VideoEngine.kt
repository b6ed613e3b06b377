package com.mobilesdk.demo.engine

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.ensureActive
import kotlinx.coroutines.isActive
import kotlinx.coroutines.withContext
import org.json.JSONArray
import org.json.JSONObject
import org.json.JSONTokener
import java.io.Closeable
import java.io.File

/** A size a package generates at (pixels); 0 in a field asks for the default size's value. */
data class VideoSize(val frames: Int, val height: Int, val width: Int) {
    companion object {
        val DEFAULT = VideoSize(0, 0, 0)
    }
}

/** What the opened package generates (at the size it was opened at) and every size it has, from the engine's videoInfo JSON. */
data class VideoInfo(
    val frames: Int,
    val height: Int,
    val width: Int,
    val fps: Double,
    val steps: Int,
    val model: String,
    val sizes: List<VideoSize>,
) {
    companion object {
        fun parse(json: String): VideoInfo = JSONObject(json).run {
            val sizes = getJSONArray("sizes").let { list ->
                (0 until list.length()).map { i -> list.getJSONArray(i).let { VideoSize(it.getInt(0), it.getInt(1), it.getInt(2)) } }
            }
            VideoInfo(getInt("frames"), getInt("height"), getInt("width"), getDouble("fps"), getInt("steps"), getString("model"), sizes)
        }
    }
}

/** One generation: RGB8 frames [frames, height, width, 3] and the engine's timings as (label, ms) rows. */
class Generation(val rgb: ByteArray, val timings: List<Pair<String, Double>>)

class GenerationCancelledException : Exception("Generation cancelled")

/**
 * One opened package. Generation runs on [Dispatchers.Default]; [cancel] and [close] may be called from the
 * main thread while it runs (close waits for the running call to stop at its next step).
 */
class VideoEngine private constructor(handle: Long, val info: VideoInfo) : Closeable {
    @Volatile private var handle: Long = handle
    @Volatile private var cancelRequested = false

    // The native engine runs one call per handle at a time; cancel() is the exception, by design.
    private val runLock = Any()

    /** [onProgress] gets the number of finished denoising steps and the total, from the generating thread. */
    suspend fun generate(prompt: String, seed: Long, onProgress: (done: Int, total: Int) -> Unit): Generation =
        withContext(Dispatchers.Default) {
            synchronized(runLock) {
                val h = liveHandle()
                cancelRequested = false
                val rgb = try {
                    NativeEngine.generate(h, prompt, seed) { step, total ->
                        onProgress(step + 1, total)
                        isActive && !cancelRequested // a cancelled coroutine stops the engine at the next step
                    }
                } catch (e: EngineException) {
                    ensureActive() // stopped because the coroutine was cancelled: propagate that
                    if (cancelRequested) throw GenerationCancelledException()
                    throw e
                }
                val expected = info.frames.toLong() * info.height * info.width * 3
                if (rgb.size.toLong() != expected) {
                    throw EngineException("engine returned ${rgb.size} bytes of frames, expected $expected")
                }
                Generation(rgb, timingRows(NativeEngine.lastTimings(h)))
            }
        }

    /** The engine's pipeline-benchmark JSON (warm-up and timed generations, all inside the engine). */
    suspend fun benchmark(prompt: String, seed: Long, warmup: Int, runs: Int): String =
        withContext(Dispatchers.Default) {
            synchronized(runLock) { NativeEngine.benchmark(liveHandle(), prompt, seed, warmup, runs) }
        }

    fun cancel() {
        cancelRequested = true
        val h = handle
        if (h != 0L) NativeEngine.cancel(h)
    }

    override fun close() {
        val h = handle
        if (h == 0L) return
        cancel()
        synchronized(runLock) {
            handle = 0L
            NativeEngine.close(h)
        }
    }

    private fun liveHandle(): Long = handle.also { if (it == 0L) throw EngineException("the engine was closed") }

    companion object {
        /**
         * Opens a package folder at [size] (one of [VideoInfo.sizes]; a size it lacks is an [EngineException]
         * naming the sizes it has); the engine checks its schema and (with [verifyChecksums]) every file's sha256.
         */
        suspend fun open(packageDir: File, verifyChecksums: Boolean = true, threads: Int = 0,
                         size: VideoSize = VideoSize.DEFAULT): VideoEngine =
            withContext(Dispatchers.Default) {
                val h = NativeEngine.open(packageDir.path, verifyChecksums, threads, size.frames, size.height, size.width)
                try {
                    VideoEngine(h, VideoInfo.parse(NativeEngine.videoInfo(h)))
                } catch (e: Exception) {
                    NativeEngine.close(h)
                    throw e
                }
            }

        // Pipeline order for the rows (the engine writes its keys sorted by name); others follow.
        private val STAGE_ORDER = listOf("text_encoder", "denoise", "steps", "vae_decoder", "total")

        /**
         * Flattens the engine's timing JSON ({"text_encoder_ms": .., "steps_ms": [..], ...}) into (label, ms)
         * rows: "_ms" dropped from keys, nested keys joined with '.', array items numbered from 1, non-numbers
         * left out. Kept generic so the screen shows whatever stages the engine reports.
         */
        internal fun timingRows(json: String): List<Pair<String, Double>> {
            val rows = mutableListOf<Pair<String, Double>>()
            fun visit(label: String, value: Any?) {
                when (value) {
                    is JSONObject -> value.keys().forEach { key ->
                        val name = key.removeSuffix("_ms")
                        visit(if (label.isEmpty()) name else "$label.$name", value.get(key))
                    }
                    is JSONArray -> for (i in 0 until value.length()) visit("$label ${i + 1}", value.get(i))
                    is Number -> rows += label to value.toDouble()
                }
            }
            visit("", JSONTokener(json).nextValue())
            return rows.sortedBy { (label, _) ->
                STAGE_ORDER.indexOf(label.substringBefore(' ').substringBefore('.')).let { if (it < 0) STAGE_ORDER.size else it }
            }
        }
    }
}
