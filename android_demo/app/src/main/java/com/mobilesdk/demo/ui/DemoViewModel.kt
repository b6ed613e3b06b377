package com.mobilesdk.demo.ui

import android.app.Application
import android.net.Uri
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import com.mobilesdk.demo.engine.GenerationCancelledException
import com.mobilesdk.demo.engine.VideoEngine
import com.mobilesdk.demo.engine.VideoInfo
import com.mobilesdk.demo.pkg.PackageInstaller
import com.mobilesdk.demo.video.Mp4Writer
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import java.io.File
import kotlin.concurrent.thread

data class UiState(
    val packages: List<String> = emptyList(),
    val selected: String? = null,
    val info: VideoInfo? = null,
    /** What is running (installing, loading, encoding); null when idle. */
    val busy: String? = null,
    /** (finished steps, total) while generating. */
    val progress: Pair<Int, Int>? = null,
    val video: File? = null,
    val timings: List<Pair<String, Double>> = emptyList(),
    val notice: String? = null,
    val error: String? = null,
)

class DemoViewModel(app: Application) : AndroidViewModel(app) {
    private val installer = PackageInstaller(app)
    private val _state = MutableStateFlow(UiState())
    val state: StateFlow<UiState> = _state.asStateFlow()
    private var engine: VideoEngine? = null

    init {
        // Videos of earlier runs; each generation replaces its predecessor's file.
        app.cacheDir.listFiles { f -> f.name.startsWith(VIDEO_PREFIX) }?.forEach { it.delete() }
        launchAction("Loading packages…") {
            withContext(Dispatchers.IO) {
                if (installer.installed().isEmpty()) installer.bundled().forEach { installer.installFromAssets(it) }
            }
            refreshPackages()
            _state.value.packages.firstOrNull()?.let { openPackage(it) }
        }
    }

    fun select(name: String) = launchAction("Loading $name…") { openPackage(name) }

    fun installFolder(tree: Uri) = launchAction("Copying the package…") {
        openPackage(withContext(Dispatchers.IO) { installer.installFromTree(tree) }.name)
    }

    fun installZip(zip: Uri) = launchAction("Unpacking the package…") {
        openPackage(withContext(Dispatchers.IO) { installer.installFromZip(zip) }.name)
    }

    fun generate(prompt: String, seedText: String) {
        val current = engine ?: return fail("Install and select a package first")
        if (prompt.isBlank()) return fail("Enter a prompt")
        val seed = seedText.trim().toLongOrNull()?.takeIf { it >= 0 } ?: return fail("The seed must be a whole number ≥ 0")
        viewModelScope.launch {
            _state.update { it.copy(progress = 0 to current.info.steps, error = null, notice = null) }
            try {
                val result = current.generate(prompt.trim(), seed) { done, total ->
                    _state.update { it.copy(progress = done to total) }
                }
                _state.update { it.copy(progress = null, busy = "Encoding the video…") }
                val info = current.info
                val video = File(getApplication<Application>().cacheDir, "$VIDEO_PREFIX${System.currentTimeMillis()}.mp4")
                withContext(Dispatchers.Default) {
                    Mp4Writer.write(result.rgb, info.frames, info.height, info.width, info.fps, video)
                }
                val previous = _state.value.video
                _state.update { it.copy(video = video, timings = result.timings) }
                previous?.delete()
            } catch (e: GenerationCancelledException) {
                _state.update { it.copy(notice = "Cancelled") }
            } catch (e: CancellationException) {
                throw e
            } catch (e: Exception) {
                fail(e.message ?: e.toString())
            } finally {
                _state.update { it.copy(progress = null, busy = null) }
            }
        }
    }

    fun cancel() {
        engine?.cancel()
    }

    override fun onCleared() {
        // close() waits for a running step to stop, which must not hold up the main thread.
        engine?.let { thread(name = "engine-close") { it.close() } }
        engine = null
    }

    private suspend fun openPackage(name: String) {
        refreshPackages()
        engine?.close()
        engine = null
        _state.value.video?.delete()
        _state.update { it.copy(selected = name, info = null, video = null, timings = emptyList()) }
        val opened = VideoEngine.open(File(installer.root, name))
        engine = opened
        _state.update { it.copy(info = opened.info) }
    }

    private suspend fun refreshPackages() {
        val names = withContext(Dispatchers.IO) { installer.installed().map { it.name } }
        _state.update { it.copy(packages = names) }
    }

    /** Runs [block] showing [label]; any failure (a bad package included) becomes the screen's error line. */
    private fun launchAction(label: String, block: suspend () -> Unit) {
        viewModelScope.launch {
            _state.update { it.copy(busy = label, error = null, notice = null) }
            try {
                block()
            } catch (e: CancellationException) {
                throw e
            } catch (e: Exception) {
                fail(e.message ?: e.toString())
            } catch (e: LinkageError) {
                fail("The native engine (libmvd_jni.so) could not be loaded: ${e.message}")
            } finally {
                _state.update { it.copy(busy = null) }
            }
        }
    }

    private fun fail(message: String) {
        _state.update { it.copy(error = message) }
    }

    private companion object {
        const val VIDEO_PREFIX = "video-"
    }
}
