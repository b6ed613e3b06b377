package com.mobilesdk.demo.ui

import android.widget.VideoView
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.result.contract.ActivityResultContracts
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Box
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.aspectRatio
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.layout.safeDrawingPadding
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.text.KeyboardOptions
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Button
import androidx.compose.material3.DropdownMenu
import androidx.compose.material3.DropdownMenuItem
import androidx.compose.material3.LinearProgressIndicator
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.collectAsState
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.text.input.KeyboardType
import androidx.compose.ui.unit.dp
import androidx.compose.ui.viewinterop.AndroidView
import java.io.File

@Composable
fun DemoScreen(vm: DemoViewModel) {
    val state by vm.state.collectAsState()
    var prompt by rememberSaveable { mutableStateOf("a red circle moving right") }
    var seed by rememberSaveable { mutableStateOf("0") }
    val pickFolder = rememberLauncherForActivityResult(ActivityResultContracts.OpenDocumentTree()) { uri ->
        uri?.let(vm::installFolder)
    }
    val pickZip = rememberLauncherForActivityResult(ActivityResultContracts.OpenDocument()) { uri ->
        uri?.let(vm::installZip)
    }
    val generating = state.progress != null
    val idle = state.busy == null && !generating

    Column(
        Modifier.fillMaxSize().safeDrawingPadding().verticalScroll(rememberScrollState()).padding(16.dp),
        verticalArrangement = Arrangement.spacedBy(12.dp),
    ) {
        Text("Text to video on device", style = MaterialTheme.typography.titleLarge)

        PackagePicker(state.packages, state.selected, enabled = idle, onSelect = vm::select)
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            OutlinedButton(onClick = { pickFolder.launch(null) }, enabled = idle) { Text("Install folder…") }
            OutlinedButton(onClick = { pickZip.launch(ZIP_TYPES) }, enabled = idle) { Text("Install zip…") }
        }
        state.info?.let {
            Text("${it.model}: ${it.frames} frames, ${it.width}×${it.height} at ${it.fps} fps, ${it.steps} steps")
        }

        OutlinedTextField(prompt, { prompt = it }, Modifier.fillMaxWidth(), label = { Text("Prompt") }, enabled = !generating)
        OutlinedTextField(
            seed, { seed = it }, Modifier.fillMaxWidth(), label = { Text("Seed") }, enabled = !generating,
            keyboardOptions = KeyboardOptions(keyboardType = KeyboardType.Number), singleLine = true,
        )
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            Button(onClick = { vm.generate(prompt, seed) }, enabled = idle && state.info != null) { Text("Generate") }
            OutlinedButton(onClick = vm::cancel, enabled = generating) { Text("Cancel") }
        }

        state.progress?.let { (done, total) ->
            LinearProgressIndicator(progress = { if (total > 0) done.toFloat() / total else 0f }, Modifier.fillMaxWidth())
            Text("Step $done/$total")
        }
        state.busy?.let { Text(it) }
        state.notice?.let { Text(it) }
        state.error?.let { Text(it, color = MaterialTheme.colorScheme.error) }

        state.video?.let { video ->
            state.info?.let { Player(video, it.width.toFloat() / it.height) }
        }
        if (state.timings.isNotEmpty()) {
            Text("Timings of the last generation", style = MaterialTheme.typography.titleMedium)
            state.timings.forEach { (label, ms) -> Text("$label: ${"%.1f".format(ms)} ms") }
        }
    }
}

@Composable
private fun PackagePicker(packages: List<String>, selected: String?, enabled: Boolean, onSelect: (String) -> Unit) {
    var expanded by rememberSaveable { mutableStateOf(false) }
    Box {
        OutlinedButton(onClick = { expanded = true }, enabled = enabled && packages.isNotEmpty()) {
            Text(selected ?: if (packages.isEmpty()) "No package installed" else "Choose a package")
        }
        DropdownMenu(expanded = expanded, onDismissRequest = { expanded = false }) {
            packages.forEach { name ->
                DropdownMenuItem(text = { Text(name) }, onClick = {
                    expanded = false
                    onSelect(name)
                })
            }
        }
    }
}

/** Plays the MP4 in a loop; a new file (a new generation) restarts the player. */
@Composable
private fun Player(video: File, aspect: Float) {
    AndroidView(
        factory = { context ->
            VideoView(context).apply {
                setOnPreparedListener { player ->
                    player.isLooping = true
                    start()
                }
            }
        },
        update = { view ->
            if (view.tag != video.path) {
                view.tag = video.path
                view.setVideoPath(video.path)
            }
        },
        modifier = Modifier.fillMaxWidth().aspectRatio(aspect),
    )
}

// Document providers label zips differently; the installer rejects anything that is not a package zip.
private val ZIP_TYPES = arrayOf("application/zip", "application/x-zip-compressed", "application/octet-stream")
