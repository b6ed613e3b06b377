package com.mobilesdk.demo.engine;

/** The app's `fun interface ProgressListener`, as Java. */
public interface ProgressListener {
    boolean onStep(int step, int totalSteps);
}
