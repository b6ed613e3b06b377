package com.mobilesdk.demo.engine;

/** Same name and constructor as the app's Kotlin EngineException, which the bridge throws. */
public class EngineException extends RuntimeException {
    public EngineException(String message) {
        super(message);
    }
}
