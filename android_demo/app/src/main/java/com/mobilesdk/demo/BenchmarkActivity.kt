package com.mobilesdk.demo

import android.content.Intent
import android.os.Bundle
import android.util.Log
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.compose.material3.Text
import androidx.lifecycle.lifecycleScope
import com.mobilesdk.demo.engine.VideoEngine
import com.mobilesdk.demo.engine.VideoSize
import com.mobilesdk.demo.io.replaceAtomically
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import java.io.File

/**
 * Benchmarks a package end to end and writes the engine's pipeline-benchmark JSON, for adb:
 *
 *   adb shell am start -W -n com.mobilesdk.demo/.BenchmarkActivity --es package /data/local/tmp/small.mobilepkg \
 *       --es prompt "'a red circle moving right'" --el seed 7 --ei warmup 1 --ei runs 5 \
 *       --es out /sdcard/Android/data/com.mobilesdk.demo/files/results.json
 *
 * Optional: --ei threads N (0: the engine's default), --ez verify false (skip the sha256 check), --ei frames F
 * --ei height H --ei width W (one of the package's sizes; 0 or absent: the default size's). The output
 * must lie in the app's own folders (the activity is exported); the result is logged under the tag below.
 */
class BenchmarkActivity : ComponentActivity() {
    private class Request(
        val packageDir: File, val prompt: String, val seed: Long, val warmup: Int, val runs: Int,
        val threads: Int, val verify: Boolean, val size: VideoSize, val out: File,
    )

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val request = try {
            parse(intent)
        } catch (e: IllegalArgumentException) {
            Log.e(TAG, "bad arguments: ${e.message}")
            setResult(RESULT_CANCELED)
            finish()
            return
        }
        setContent { Text("Benchmarking ${request.packageDir.name}: ${request.warmup} warm-up, ${request.runs} timed runs…") }
        lifecycleScope.launch {
            val ok = try {
                benchmark(request)
                true
            } catch (e: CancellationException) {
                throw e
            } catch (e: Exception) {
                Log.e(TAG, "benchmark failed: ${e.message}", e)
                false
            } catch (e: LinkageError) {
                Log.e(TAG, "the native engine (libmvd_jni.so) could not be loaded: ${e.message}", e)
                false
            }
            setResult(if (ok) RESULT_OK else RESULT_CANCELED)
            finish()
        }
    }

    private suspend fun benchmark(r: Request) {
        Log.i(TAG, "benchmarking ${r.packageDir}: warmup ${r.warmup}, runs ${r.runs}, seed ${r.seed}, threads ${r.threads}")
        val json = VideoEngine.open(r.packageDir, r.verify, r.threads, r.size).use { it.benchmark(r.prompt, r.seed, r.warmup, r.runs) }
        val summary = BenchmarkResults.summarize(json)
        withContext(Dispatchers.IO) { r.out.replaceAtomically { it.writeText(json) } }
        Log.i(TAG, "results written to ${r.out.path}: $summary")
    }

    private fun parse(intent: Intent): Request {
        val extras = intent.extras ?: Bundle()
        val packagePath = requireNotNull(extras.getString("package")) { "--es package PATH is required" }
        val out = extras.getString("out")?.let(::File) ?: File(getExternalFilesDir(null) ?: filesDir, "results.json")
        val allowed = listOfNotNull(getExternalFilesDir(null), filesDir).map { it.canonicalPath + File.separator }
        // /sdcard is a link to /storage/emulated/0: compare resolved paths.
        require(allowed.any { out.canonicalPath.startsWith(it) }) { "out must lie in one of $allowed, not ${out.path}" }
        val runs = number(extras, "runs", 5).toInt()
        val warmup = number(extras, "warmup", 1).toInt()
        val seed = number(extras, "seed", 0)
        require(runs >= 1 && warmup >= 0 && seed >= 0) { "runs must be >= 1, warmup and seed >= 0" }
        return Request(
            packageDir = File(packagePath),
            prompt = extras.getString("prompt") ?: DEFAULT_PROMPT,
            seed = seed,
            warmup = warmup,
            runs = runs,
            threads = number(extras, "threads", 0).toInt(),
            verify = extras.getBoolean("verify", true),
            size = VideoSize(number(extras, "frames", 0).toInt(), number(extras, "height", 0).toInt(), number(extras, "width", 0).toInt()),
            out = out,
        )
    }

    private companion object {
        const val TAG = "MobileVideoBenchmark"
        const val DEFAULT_PROMPT = "a red circle moving right"

        /** Accepts --ei, --el or --es for a number, so a wrong adb type flag is not silently replaced by the default. */
        @Suppress("DEPRECATION")
        fun number(extras: Bundle, key: String, default: Long): Long = when (val v = extras.get(key)) {
            null -> default
            is Number -> v.toLong()
            is String -> requireNotNull(v.trim().toLongOrNull()) { "$key must be a whole number, not '$v'" }
            else -> throw IllegalArgumentException("$key must be a whole number, not $v")
        }
    }
}
