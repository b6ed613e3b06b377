package com.mobilesdk.demo.engine

/** Thrown by the native engine (bad package, failed program, cancelled generation); the message is for the user. */
class EngineException(message: String) : RuntimeException(message)

/**
 * Called from the generating thread after each denoising step with that step's 0-based index (the engine's
 * convention, mobile_sdk/engine/include/mvd/engine.h) and the number of steps; return false to cancel.
 */
fun interface ProgressListener {
    fun onStep(step: Int, totalSteps: Int): Boolean
}

/**
 * The JNI interface of the C++ engine (mobile_sdk/engine, bridge in src/main/cpp). A handle is one opened
 * package; every call but [cancel] must come from one thread at a time ([VideoEngine] guarantees it).
 */
object NativeEngine {
    init {
        System.loadLibrary("mvd_jni")
    }

    /** Opens [packageDir] at one of its sizes; 0 for [frames], [height] or [width] takes the default size's. */
    @JvmStatic external fun open(packageDir: String, verifyChecksums: Boolean, threads: Int, frames: Int, height: Int, width: Int): Long

    @JvmStatic external fun close(handle: Long)

    @JvmStatic external fun videoInfo(handle: Long): String

    @JvmStatic external fun generate(handle: Long, prompt: String, seed: Long, listener: ProgressListener?): ByteArray

    @JvmStatic external fun cancel(handle: Long)

    @JvmStatic external fun lastTimings(handle: Long): String

    @JvmStatic external fun benchmark(handle: Long, prompt: String, seed: Long, warmup: Int, runs: Int): String
}
