package com.mobilesdk.demo.engine;

/** The app's `object NativeEngine` with @JvmStatic externals: the same class, names and signatures. */
public final class NativeEngine {
    static {
        System.loadLibrary("mvd_jni");
    }

    private NativeEngine() {}

    public static native long open(String packageDir, boolean verifyChecksums, int threads, int frames, int height, int width);

    public static native void close(long handle);

    public static native String videoInfo(long handle);

    public static native byte[] generate(long handle, String prompt, long seed, ProgressListener listener);

    public static native void cancel(long handle);

    public static native String lastTimings(long handle);

    public static native String benchmark(long handle, String prompt, long seed, int warmup, int runs);
}
