import com.mobilesdk.demo.engine.EngineException;
import com.mobilesdk.demo.engine.NativeEngine;

import java.nio.file.Files;
import java.nio.file.Paths;

/**
 * Drives the JNI bridge the way the app does, for tests/test_engine_jni.py:
 *   generate PKG PROMPT SEED OUT [FRAMES HEIGHT WIDTH]   frames -> OUT (raw RGB8) at the package's size (default:
 *                                  its first), then videoInfo, lastTimings and the steps seen
 *   open PKG                       open with checksums; an EngineException prints "EngineException: ..." (exit 3)
 *   cancel PKG PROMPT SEED         a listener that stops after the first step must end in EngineException
 *   cancel-flag PKG PROMPT SEED    the same through NativeEngine.cancel (the flag checked before each program call)
 *   benchmark PKG PROMPT SEED      the pipeline-benchmark JSON (1 warm-up, 2 runs)
 * SEED is the unsigned 64-bit seed; its bits travel in a signed long.
 */
public final class Harness {
    public static void main(String[] args) throws Exception {
        try {
            run(args);
        } catch (EngineException e) {
            System.out.println("EngineException: " + e.getMessage());
            System.exit(3);
        }
    }

    private static void run(String[] args) throws Exception {
        String mode = args[0];
        boolean sized = mode.equals("generate") && args.length == 8;
        long handle = NativeEngine.open(args[1], true, 2, sized ? Integer.parseInt(args[5]) : 0,
                                        sized ? Integer.parseInt(args[6]) : 0, sized ? Integer.parseInt(args[7]) : 0);
        try {
            if (mode.equals("open")) {
                System.out.println("opened " + NativeEngine.videoInfo(handle));
            } else if (mode.equals("generate")) {
                int[] seen = {0};
                byte[] rgb = NativeEngine.generate(handle, args[2], Long.parseUnsignedLong(args[3]), (step, total) -> {
                    seen[0]++;
                    return true;
                });
                Files.write(Paths.get(args[4]), rgb);
                System.out.println("info " + NativeEngine.videoInfo(handle));
                System.out.println("timings " + NativeEngine.lastTimings(handle));
                System.out.println("steps_seen " + seen[0]);
            } else if (mode.equals("cancel")) {
                NativeEngine.generate(handle, args[2], Long.parseUnsignedLong(args[3]), (step, total) -> false);
                System.out.println("not cancelled");
            } else if (mode.equals("cancel-flag")) {
                NativeEngine.generate(handle, args[2], Long.parseUnsignedLong(args[3]), (step, total) -> {
                    NativeEngine.cancel(handle);
                    return true;
                });
                System.out.println("not cancelled");
            } else if (mode.equals("benchmark")) {
                System.out.println(NativeEngine.benchmark(handle, args[2], Long.parseUnsignedLong(args[3]), 1, 2));
            } else {
                throw new IllegalArgumentException("unknown mode " + mode);
            }
        } finally {
            NativeEngine.close(handle);
        }
    }
}
